import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { InferlineError } from '../src/errors.ts';
import { keys, newJobId, shardName } from '../src/keys.ts';
import { enqueueJobs, type EnqueueJobsRequest, type EnqueueOutcome } from '../src/protocol/job-scripts.ts';
import { setAdmission } from '../src/protocol/version-status.ts';

const MODEL = 'each-model';

/** Script calls Redis ran since the last CONFIG RESETSTAT (INFO commandstats: evalsha + eval). */
async function scriptCalls(redis: ReturnType<typeof useTestRedis>['redis']): Promise<number> {
  const info = await redis.info('commandstats');
  return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe('enqueueJobs: one-request calls while another is in flight, against a real Redis', () => {
  const db = useTestRedis();
  beforeEach(async () => {
    await db.server.flush();
    await setAdmission(db.redis, MODEL, 1, 'open');
  });

  const single = (overrides: Partial<EnqueueJobsRequest> = {}): EnqueueJobsRequest => ({
    model: MODEL,
    version: 1,
    max_queue_size: 100,
    created_at: Date.now(),
    jobs: [{ id: newJobId(MODEL), input: Buffer.from([0xa1, 0x61]) }],
    ...overrides,
  });

  /** Start every call at once (the first is sent, the others wait for it); each outcome or error, in call order. */
  const all = (requests: EnqueueJobsRequest[]): Promise<PromiseSettledResult<EnqueueOutcome>[]> => Promise.allSettled(requests.map((request) => enqueueJobs(db.redis, request)));

  const codeOf = (result: PromiseSettledResult<EnqueueOutcome> | undefined): string =>
    result?.status === 'rejected' ? (result.reason instanceof InferlineError ? result.reason.code : String(result.reason)) : 'stored';

  test('the first goes at once, the ones that arrive meanwhile in one script call, each its own record and entry, with its own times', async () => {
    await db.redis.config('RESETSTAT');
    const requests = [single({ created_at: 1_000 }), single({ created_at: 1_001, deadline_at: 9_000 }), single({ created_at: 1_002 })];
    const results = await all(requests);
    assert.equal(await scriptCalls(db.redis), 2, 'the first alone, the other two together');
    const entryIds = results.map((result) => (result.status === 'fulfilled' && !result.value.replayed ? result.value.entryIds : []));
    assert.equal(new Set(entryIds.flat()).size, 3, 'a distinct entry per request');
    const entries = await db.redis.xrange(keys.requests(MODEL, 1), '-', '+');
    assert.deepEqual(entries.map(([id, fields]) => [id, fields[1]]), requests.map((request, i) => [entryIds[i]?.[0], request.jobs[0]?.id]), 'in call order');
    const records = await Promise.all(requests.map((request) => db.redis.hgetall(keys.job(request.jobs[0]?.id ?? ''))));
    assert.deepEqual(records.map((record) => [record.status, record.created_at, record.deadline_at, record.entry]), [
      ['queued', '1000', undefined, entryIds[0]?.[0]],
      ['queued', '1001', '9000', entryIds[1]?.[0]],
      ['queued', '1002', undefined, entryIds[2]?.[0]],
    ]);
  });

  test('near a full queue, the first ones that fit are stored and the rest refused queue_full, one by one', async () => {
    await enqueueJobs(db.redis, single({ max_queue_size: 3 }));
    const results = await all([1, 2, 3, 4].map(() => single({ max_queue_size: 3 })));
    assert.deepEqual(results.map(codeOf), ['stored', 'stored', 'queue_full', 'queue_full']);
    assert.equal(await db.redis.xlen(keys.requests(MODEL, 1)), 3);
    const refused = results[2];
    assert.ok(refused?.status === 'rejected' && refused.reason instanceof InferlineError);
    assert.equal(refused.reason.details?.retry_after_s, 1);
  });

  test("a tenant's max_queued is counted request by request; another tenant's calls are not held back", async () => {
    const tenant = { tenant: 'acme', max_queued: 2 };
    const results = await all([single(tenant), single(tenant), single(tenant), single({ tenant: 'other', max_queued: 2 })]);
    assert.deepEqual(results.map(codeOf), ['stored', 'stored', 'tenant_queue_full', 'stored']);
    assert.deepEqual(await db.redis.hgetall(keys.tenantQueued(MODEL)), { acme: '2', other: '1' });
  });

  test('a closed version refuses every request and stores nothing', async () => {
    await setAdmission(db.redis, MODEL, 1, 'closed');
    const requests = [single(), single(), single()];
    const results = await all(requests);
    assert.deepEqual(results.map(codeOf), ['model_unavailable', 'model_unavailable', 'model_unavailable']);
    assert.equal(await db.redis.exists(keys.requests(MODEL, 1), ...requests.map((request) => keys.job(request.jobs[0]?.id ?? ''))), 0);
  });

  test('an existing job id refuses that request only', async () => {
    const taken = newJobId(MODEL);
    await db.redis.hset(keys.job(taken), 'status', 'succeeded');
    const results = await all([single(), single({ jobs: [{ id: taken, input: Buffer.from([0xc0]) }] }), single()]);
    assert.deepEqual(results.map(codeOf), ['stored', 'internal', 'stored']);
    assert.equal(await db.redis.hget(keys.job(taken), 'status'), 'succeeded', 'the existing record is untouched');
  });

  test('calls at other priority levels, and bulk or idempotent calls, go out on their own and are all stored', async () => {
    await db.redis.config('RESETSTAT');
    const levels = { levels: 2, max_queue_size: 10 };
    const bulk = single({ ...levels, jobs: [newJobId(MODEL), newJobId(MODEL)].map((id) => ({ id, input: Buffer.from([0xc0]) })) });
    const idempotent = single({ ...levels, idempotency: { key: 'k', fingerprint: 'f', ttl_s: 60 } });
    const results = await all([single({ ...levels, priority: 1 }), single({ ...levels, priority: 2 }), single({ ...levels, priority: 1 }), bulk, idempotent]);
    assert.deepEqual(results.map(codeOf), ['stored', 'stored', 'stored', 'stored', 'stored']);
    assert.equal(await scriptCalls(db.redis), 5, 'the first, the level-2 one and the next level-1 one (each alone in its group), the bulk call, the idempotent call');
    assert.equal(await db.redis.xlen(keys.requests(MODEL, 1, 1)), 5);
    assert.equal(await db.redis.xlen(keys.requests(MODEL, 1, 2)), 1);
  });

  test('a call in flight for one partition does not hold up the calls of another', async () => {
    await setAdmission(db.redis, MODEL, 1, 'open', 2);
    const other = shardName(MODEL, 1);
    await db.redis.config('RESETSTAT');
    const results = await all([single(), single({ shard: other, jobs: [{ id: newJobId(other), input: Buffer.from([0xc0]) }] }), single({ shard: other, jobs: [{ id: newJobId(other), input: Buffer.from([0xc0]) }] })]);
    assert.deepEqual(results.map(codeOf), ['stored', 'stored', 'stored']);
    // Partition 0's call alone; partition 1's first call went out at once (alone), its second after it.
    assert.equal(await scriptCalls(db.redis), 3);
    assert.equal(await db.redis.xlen(keys.requests(other, 1)), 2);
  });

  test('a Redis failure rejects every request, the first and those that waited for it', async () => {
    const broken = db.redis.duplicate();
    broken.disconnect();
    const results = await Promise.allSettled([single(), single()].map((request) => enqueueJobs(broken, request)));
    assert.ok(results.every((result) => result.status === 'rejected'));
  });
});
