import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import type { Redis } from 'ioredis';
import { deadLetterJob, enqueueJobs, settleJobs, startJobs } from '../src/protocol/job-scripts.ts';
import { idShard, idempotencyPartition, keys, modelShards, newJobId, jobIdModel, partitionLimit, shardModel, shardName } from '../src/keys.ts';
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
