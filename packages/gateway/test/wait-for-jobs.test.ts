import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connectRedis, encode, enqueueJobs, keys, newJobId, setAdmission, type Redis } from '@inferline/shared';
import { startTestRedis, type TestRedis } from '../../../test/harness/redis.ts';
import { freePort } from '../../cli/src/redis-server.ts';
import { JobEvents } from '../src/job-events.ts';
import { waitForJobs } from '../src/wait-for-jobs.ts';
import { MODEL, silentLogger } from './fixture.ts';

describe('waitForJobs after a Redis outage', () => {
  let server: TestRedis;
  let redis: Redis;
  let events: JobEvents;
  before(async () => {
    server = await startTestRedis();
    redis = connectRedis(server.url, { name: 'test' });
    events = new JobEvents(connectRedis(server.url, { name: 'test-events' }), silentLogger);
    await events.ready();
  });
  after(async () => {
    await events.close();
    redis.disconnect();
    await server.stop();
  });

  it('a re-subscription that comes before the command connection is back waits for it, instead of failing the waiter with 503', async () => {
    await setAdmission(redis, MODEL, 1, 'open');
    const id = newJobId(MODEL);
    await enqueueJobs(redis, { model: MODEL, version: 1, max_queue_size: 10, created_at: Date.now(), jobs: [{ id, input: encode('x') }] });
    // The job finished while the gateway's event connection was away: its event was lost.
    await redis.hset(keys.job(id), 'status', 'succeeded', 'output', '{"embedding":[0.5]}', 'finished_at', Date.now());

    // The command connection reaches Redis through a port that opens only later: it is still
    // reconnecting (fail-fast: its commands fail at once, "Stream isn't writeable") when the
    // re-subscription wakes the waiter.
    const port = await freePort();
    const target = new URL(server.url);
    const proxy = createServer((socket) => {
      const upstream = connect(Number(target.port), target.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    const command = connectRedis(`redis://127.0.0.1:${port}`, { name: 'lagging-command', failFast: true });
    command.on('error', () => undefined);
    const watch = events.watch(id);
    try {
      const waiting = waitForJobs(command, watch, 10_000, undefined, [{ id, model: MODEL, version: 1, status: 'queued', created_at: Date.now() }]);
      watch.push({ resync: true }); // what JobEvents does once its subscriber is back
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.notEqual(command.status, 'ready');
      proxy.listen(port, '127.0.0.1');
      const [record] = await waiting;
      assert.equal(record?.status, 'succeeded');
    } finally {
      watch.close();
      command.disconnect();
      proxy.close();
    }
  });
});
