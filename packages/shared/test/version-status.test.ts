import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { keys } from '../src/keys.ts';
import { aggregateVersions, announceWorker, readAdmission, readLiveWorkers, setAdmission, withdrawWorker } from '../src/protocol/version-status.ts';

describe('aggregateVersions', () => {
  it('takes, per version, the most useful state over the live workers, counting AVAILABLE holders, with a failed load\'s error', () => {
    const versions = aggregateVersions([
      { consumer: 'a', backend: 'wasm', versions: { 1: { state: 'AVAILABLE' }, 2: { state: 'LOADING' }, 3: { state: 'END', error: 'bad shard' } } },
      { consumer: 'b', backend: 'wasm', versions: { 1: { state: 'UNLOADING' }, 2: { state: 'AVAILABLE' } } },
      { consumer: 'c', backend: 'wasm', versions: { 1: { state: 'AVAILABLE' } } },
    ]);
    assert.deepEqual(Object.fromEntries(versions), {
      1: { state: 'AVAILABLE', available: 2 },
      2: { state: 'AVAILABLE', available: 1 },
      3: { state: 'END', available: 0, error: 'bad shard' },
    });
  });
});

describe('worker heartbeats (heartbeat.lua) against a real Redis', () => {
  const db = useTestRedis();
  const PERIOD = 1_000;

  it('records live workers with their versions, prunes silent ones with their announcement, opens the versions served, and withdraws', async () => {
    const now = Date.now();
    await announceWorker(db.redis, 'm', { consumer: 'old', backend: 'cpu', versions: { 1: { state: 'AVAILABLE' } } }, [1], PERIOD, now - 20 * PERIOD);
    await announceWorker(db.redis, 'm', { consumer: 'quiet', backend: 'cpu', versions: { 1: { state: 'AVAILABLE' } } }, [], PERIOD, now - 5 * PERIOD);
    await announceWorker(db.redis, 'm', { consumer: 'w', backend: 'wasm', versions: { 2: { state: 'LOADING' } } }, [2], PERIOD, now);
    // "old" (20 periods ago) is pruned with its announcement; "quiet" (5 ago) is kept but not live (3).
    assert.deepEqual(await db.redis.zrange(keys.workers('m'), 0, -1), ['quiet', 'w']);
    assert.deepEqual(Object.keys(await db.redis.hgetall(keys.versionStatus('m'))).sort(), ['quiet', 'w']);
    const live = await readLiveWorkers(db.redis, 'm', PERIOD, now);
    assert.deepEqual(live, [{ consumer: 'w', backend: 'wasm', versions: { 2: { state: 'LOADING' } } }]);
    assert.deepEqual(Object.fromEntries(await readAdmission(db.redis, 'm')), { 1: 'open', 2: 'open' });

    await setAdmission(db.redis, 'm', 1, 'closed');
    assert.equal((await readAdmission(db.redis, 'm')).get(1), 'closed');
    await withdrawWorker(db.redis, 'm', 'w', PERIOD, now);
    assert.deepEqual(await readLiveWorkers(db.redis, 'm', PERIOD, now), []);
    assert.equal(await db.redis.hexists(keys.versionStatus('m'), 'w'), 0);
  });
});
