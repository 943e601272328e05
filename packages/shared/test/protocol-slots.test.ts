import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import type { Redis } from 'ioredis';
import { deadLetterMember, groupAdd, groupCancel, groupFinish, settleMember, startMembers } from '../src/protocol/group-scripts.ts';
import { cancelJob, deadLetterJob, enqueueJobs, settleJobs, startJobs } from '../src/protocol/job-scripts.ts';
import { idShard, idempotencyPartition, keys, modelShards, newGroupId, newJobId, jobIdModel, partitionLimit, shardModel, shardName } from '../src/keys.ts';
import { SCRIPT_NAMES } from '../src/scripts.ts';
import { announceWorker, withdrawWorker } from '../src/protocol/version-status.ts';

/**
 * A stand-in connection that records each script call (`il_<script>(numkeys, ...keys, ...args)`) and
 * answers what the script would, so the protocol functions can be called without a server. The slot
 * rule is about the keys a call passes, which this sees exactly.
 */
function recorder(replies: Record<string, unknown>): { redis: Redis; calls: { script: string; keys: string[] }[] } {
  const calls: { script: string; keys: string[] }[] = [];
  const redis = new Proxy({}, {
    get: (_target, property: string) => (numKeys: number, ...rest: unknown[]) => {
      calls.push({ script: property, keys: rest.slice(0, numKeys) as string[] });
      return Promise.resolve(replies[property]);
    },
  }) as unknown as Redis;
  return { redis, calls };
}

describe('protocol: every key of one job script call is in one Redis Cluster slot', () => {
  const models = ['glove-embed', 'coco-detect', 'a.b_c-1'];

  it('a job id carries its model, and its record lands in the slot of the model stream', () => {
    for (const model of models) {
      const id = newJobId(model);
      assert.equal(jobIdModel(id), model);
      assert.equal(calculateSlot(keys.job(id)), calculateSlot(keys.requests(model, 7)));
      assert.equal(calculateSlot(keys.deadLetter(model, 7)), calculateSlot(keys.requests(model, 1)));
    }
    assert.equal(jobIdModel('no-separator'), undefined);
  });

  it('enqueue, start, settle and dead-letter of a batch of 32 jobs each pass keys of a single slot', async () => {
    for (const model of models) {
      const ids = Array.from({ length: 32 }, () => newJobId(model));
      const { redis, calls } = recorder({ il_enqueue: ids.map((_, i) => `1-${i}`), il_start: ids.map(() => 'queued'), il_settle: ids.map(() => 1), il_dead_letter: 1 });
      await enqueueJobs(redis, { model, version: 3, max_queue_size: 100, created_at: 0, jobs: ids.map((id) => ({ id, input: Buffer.from('x') })) });
      await startJobs(redis, ids, 0);
      await settleJobs(redis, model, 3, { inference_ms: 1, batch_size: 32, batch_id: 'b', result_ttl_s: 60 }, ids.map((jobId, i) => ({ jobId, entryId: `1-${i}`, queue_ms: 0, result: { ok: true, output: Buffer.from('{}') } })));
      await deadLetterJob(redis, { model, version: 3, jobId: ids[0] ?? '', entryId: '1-0', deliveries: 6, result_ttl_s: 60, message: 'poison' });
      assert.deepEqual(calls.map((call) => call.script), ['il_enqueue', 'il_start', 'il_settle', 'il_dead_letter']);
      for (const call of calls) {
        assert.ok(call.keys.length > 0, call.script);
        const slots = new Set(call.keys.map((key) => calculateSlot(key)));
        assert.equal(slots.size, 1, `${call.script} of ${model} spans slots ${[...slots].join(', ')}`);
      }
    }
  });

  it('each partition of a model is a shard with its own slot; a job id of a partition names it, and its calls stay in its slot', async () => {
    const model = 'glove-embed';
    const shards = modelShards(model, 3);
    assert.deepEqual(shards, ['glove-embed', 'glove-embed~1', 'glove-embed~2']);
    assert.equal(shardName(model, 0), model, 'partition 0 keeps the keys of an unpartitioned model');
    assert.equal(new Set(shards.map((shard) => calculateSlot(keys.requests(shard, 1)))).size, 3);
    for (const shard of shards) {
      const ids = Array.from({ length: 8 }, () => newJobId(shard));
      for (const id of ids) {
        assert.equal(idShard(id), shard);
        assert.equal(jobIdModel(id), model);
        assert.equal(shardModel(shard), model);
      }
      const { redis, calls } = recorder({ il_enqueue: ids.map((_, i) => `1-${i}`), il_settle: ids.map(() => 1), il_dead_letter: 1 });
      await enqueueJobs(redis, { model, shard, version: 1, levels: 2, max_queue_size: 100, created_at: 0, jobs: ids.map((id) => ({ id, input: Buffer.from('x') })), idempotency: { key: 'k', fingerprint: 'f', ttl_s: 1 } });
      await settleJobs(redis, shard, 1, { inference_ms: 1, batch_size: 8, batch_id: 'b', result_ttl_s: 60 }, ids.map((jobId, i) => ({ jobId, entryId: `1-${i}`, queue_ms: 0, result: { ok: true, output: Buffer.from('{}') } })));
      await deadLetterJob(redis, { model: shard, version: 1, jobId: ids[0] ?? '', entryId: '1-0', deliveries: 6, result_ttl_s: 60, message: 'poison' });
      for (const call of calls) assert.deepEqual(new Set(call.keys.map((key) => calculateSlot(key))), new Set([calculateSlot(keys.requests(shard, 1))]), `${call.script} of ${shard}`);
    }
  });

  it('an Idempotency-Key always maps to the same partition; limits split as ceil(limit / partitions)', () => {
    for (const key of ['a', 'order-1234', 'ü']) {
      const partition = idempotencyPartition('acme', key, 5);
      assert.ok(partition >= 0 && partition < 5);
      assert.equal(idempotencyPartition('acme', key, 5), partition);
    }
    assert.equal(idempotencyPartition('acme', 'a', 1), 0);
    assert.equal(new Set(Array.from({ length: 64 }, (_, i) => idempotencyPartition('t', `key-${i}`, 3))).size, 3, 'keys spread over every partition');
    assert.equal(partitionLimit(100_000, 1), 100_000);
    assert.equal(partitionLimit(10, 3), 4);
  });

  it('a worker heartbeat (heartbeat.lua) passes keys of the model slot only, as enqueue does with the admission key', async () => {
    for (const model of models) {
      const { redis, calls } = recorder({ il_heartbeat: 0 });
      await announceWorker(redis, model, { consumer: 'w', backend: 'cpu', versions: { 1: { state: 'AVAILABLE' } } }, [1], 1_000);
      await withdrawWorker(redis, model, 'w', 1_000);
      for (const call of calls) assert.deepEqual(new Set(call.keys.map((key) => calculateSlot(key))), new Set([calculateSlot(keys.requests(model, 1))]), call.script);
      assert.equal(calculateSlot(keys.admission(model)), calculateSlot(keys.requests(model, 1)));
    }
  });
});

/**
 * One or more calls of each script through its typed protocol function, as the gateway, the workers
 * and the aggregator make them (with every optional key in play: tenant, idempotency key, priority
 * levels, kept inputs). Keyed by the script's file name under `src/lua/`: the test below fails for a
 * script that has no entry here.
 */
const SCRIPT_CALLS: Record<string, (redis: Redis, model: string) => Promise<unknown>> = {
  enqueue: (redis, model) =>
    enqueueJobs(redis, {
      model, version: 2, max_queue_size: 100, created_at: 0, priority: 2, levels: 3, tenant: 't', max_queued: 9, callback_url: 'https://example.com/cb', deadline_at: 5,
      idempotency: { key: 'k', fingerprint: 'f', ttl_s: 60 }, jobs: [newJobId(model), newJobId(model)].map((id) => ({ id, input: Buffer.from('x') })),
    }),
  // Three one-request calls at once: the first goes alone (enqueue), the two that wait for it in one enqueue-each call.
  'enqueue-each': (redis, model) =>
    Promise.all(
      [newJobId(model), newJobId(model), newJobId(model)].map((id) =>
        enqueueJobs(redis, { model, version: 2, max_queue_size: 100, created_at: 0, priority: 2, levels: 3, tenant: 't', max_queued: 9, callback_url: 'https://example.com/cb', deadline_at: 5, jobs: [{ id, input: Buffer.from('x') }] }),
      ),
    ),
  start: (redis, model) => startJobs(redis, [newJobId(model), newJobId(model), newJobId(model)], 0),
  settle: (redis, model) =>
    settleJobs(redis, model, 2, { inference_ms: 1, batch_size: 2, batch_id: 'b', result_ttl_s: 60 }, [
      { jobId: newJobId(model), entryId: '1-0', queue_ms: 0, level: 2, result: { ok: true, output: Buffer.from('{}') } },
      { jobId: newJobId(model), entryId: '1-1', queue_ms: 0, level: 2, result: { ok: false, code: 'invalid_input', message: 'no' } },
    ]),
  'dead-letter': (redis, model) => deadLetterJob(redis, { model, version: 2, jobId: newJobId(model), entryId: '1-0', deliveries: 6, result_ttl_s: 60, message: 'poison', level: 2 }),
  cancel: (redis, model) => cancelJob(redis, newJobId(model), 60, 'cancelled'),
  heartbeat: async (redis, model) => {
    await announceWorker(redis, model, { consumer: 'w', backend: 'cpu', versions: { 1: { state: 'AVAILABLE' } } }, [1, 2], 1_000);
    await withdrawWorker(redis, model, 'w', 1_000);
  },
  'group-add': async (redis, model) => {
    const groupId = newGroupId(model);
    const inputs = [Buffer.from('a'), Buffer.from('b')];
    await groupAdd(redis, {
      groupId, model, version: 2, max_queue_size: 100, inputs, close: false, keep_inputs: true, priority: 2, levels: 3, deadline_at: 5, tenant: 't', max_queued: 9,
      create: { reduce: 'boxes', output_name: '*', on_item_error: 'skip', result_ttl_s: 60, callback_url: 'https://example.com/cb', idempotency: { key: 'k', fingerprint: 'f', ttl_s: 60 } },
    });
    await groupAdd(redis, { groupId, model, version: 2, max_queue_size: 100, inputs, close: true, start: 2, keep_inputs: true, priority: 2, levels: 3, tenant: 't' });
  },
  'start-members': (redis, model) => startMembers(redis, newGroupId(model), [0, 1, 2], 0),
  'settle-member': async (redis, model) => {
    const groupId = newGroupId(model);
    await settleMember(redis, { model, version: 2, groupId, index: 0, entryId: '1-0', level: 2, result: { ok: true, output: Buffer.from('x') } });
    await settleMember(redis, { model, version: 2, groupId, index: 1, entryId: '1-1', result: { ok: false, code: 'invalid_input', message: 'no' } });
  },
  'dead-letter-member': (redis, model) => deadLetterMember(redis, { model, version: 2, groupId: newGroupId(model), index: 3, entryId: '1-3', deliveries: 6, message: 'poison', level: 2 }),
  'group-cancel': (redis, model) => groupCancel(redis, newGroupId(model), 'cancelled'),
  'group-finish': async (redis, model) => {
    await groupFinish(redis, newGroupId(model), { status: 'succeeded', output: Buffer.from('x'), failed_indexes: Buffer.from('y') });
    await groupFinish(redis, newGroupId(model), { status: 'failed', code: 'reduce_failed', message: 'no' });
  },
};

/**
 * What a stand-in connection answers for each command a protocol function sends to `model`'s keys
 * (scripts, and the HMGET of a job record cancelJob reads first: model, version, priority).
 */
const replies = (model: string): Record<string, unknown> => ({
  il_enqueue: ['1-0', '1-1'],
  il_enqueue_each: ['1-1', '1-2'],
  il_start: ['queued', 'queued', 'queued'],
  il_settle: [1, 1],
  il_dead_letter: 1,
  il_cancel: 'queued',
  il_heartbeat: 0,
  il_group_add: [0, 2, 'open', 0],
  il_start_members: [1, 1, 1],
  il_settle_member: 1,
  il_dead_letter_member: 1,
  il_group_cancel: 1,
  il_group_finish: 1,
  hmget: [model, '2', '2'],
});

describe('protocol: every script, job and group alike, passes keys of one Redis Cluster slot', () => {
  const scriptFiles = readdirSync(new URL('../src/lua/', import.meta.url))
    .filter((name) => name.endsWith('.lua'))
    .map((name) => name.slice(0, -'.lua'.length))
    .sort();

  it('every Lua script under src/lua is registered and has a slot check here', () => {
    assert.deepEqual([...SCRIPT_NAMES].sort(), scriptFiles, 'SCRIPT_NAMES lists every script file');
    assert.deepEqual(Object.keys(SCRIPT_CALLS).sort(), scriptFiles, 'SCRIPT_CALLS has an entry per script file');
  });

  it('a group id carries its model (shard), and every key of the group lands in the slot of the model stream', () => {
    for (const shard of ['glove-embed', 'a.b_c-1', 'glove-embed~2']) {
      const id = newGroupId(shard);
      assert.equal(idShard(id), shard);
      const slot = calculateSlot(keys.requests(shard, 1));
      const groupKeys = [keys.group(id), keys.groupResults(id), keys.groupErrors(id), keys.groupInputs(id), keys.groupsReady(shard), keys.groupsOpen(shard), keys.groupCallbacksDue(shard)];
      assert.deepEqual(new Set(groupKeys.map((key) => calculateSlot(key))), new Set([slot]), shard);
      assert.equal(new Set(groupKeys).size, groupKeys.length, 'every key is distinct');
    }
    // An id never issued (no shard part) names keys under the empty tag, which no script writes.
    for (const id of ['nope', '~x']) {
      assert.equal(idShard(id), undefined);
      assert.ok(keys.group(id).startsWith('il:{m:}:'), id);
    }
  });

  for (const model of ['glove-embed', 'coco-detect', 'a.b_c-1']) {
    for (const script of Object.keys(SCRIPT_CALLS).sort()) {
      it(`${script} of model ${model}: every call passes keys of the model's slot only`, async () => {
        const calls: { command: string; keys: string[] }[] = [];
        const answers = replies(model);
        const redis = new Proxy({}, {
          get: (_target, property: string) => (...rest: unknown[]) => {
            if (property.startsWith('il_')) {
              const numKeys = rest[0] as number;
              calls.push({ command: property, keys: rest.slice(1, numKeys + 1) as string[] });
            }
            return Promise.resolve(answers[property]);
          },
        }) as unknown as Redis;
        await SCRIPT_CALLS[script]?.(redis, model);
        const command = `il_${script.replaceAll('-', '_')}`;
        assert.ok(calls.some((call) => call.command === command), `${script}: no ${command} call recorded`);
        for (const call of calls) {
          assert.ok(call.keys.length > 0, `${script} passes no keys`);
          const slots = new Set(call.keys.map((key) => calculateSlot(key)));
          assert.deepEqual(slots, new Set([calculateSlot(keys.requests(model, 1))]), `${script} of ${model} spans slots ${[...slots].join(', ')}: ${call.keys.join(' ')}`);
        }
      });
    }
  }
});
