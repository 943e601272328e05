import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { CONSUMER_GROUP, JOB_EVENTS_CHANNEL, decode, encode, keys, parseEntry, runScript, setAdmission, type RawEntry, type StreamEntry } from '@inferline/shared';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { reduceGroup, sweepAbandonedGroups, sweepReadyGroups } from '../src/aggregator.ts';
import { reclaimPending } from '../src/reclaim.ts';
import { settleBatch, type Settlement } from '../src/settle.ts';
import { ensureConsumerGroup } from '../src/version-consumer.ts';

const MODEL = 'test-model';
const stream = keys.requests(MODEL, 1);
/** Group ids as the gateway makes them (`newGroupId(MODEL)`): `<model>~<random>`. */
const G1 = `${MODEL}~g1`;
const IDLE = `${MODEL}~idle`;
const DONE = `${MODEL}~done`;
const NOPE = `${MODEL}~nope`;
const FIGURES = { inference_ms: 2, batch_size: 3, batch_id: 'b1', result_ttl_s: 60 };

describe('group protocol (group-add, start-members, settle-member, group-finish, group-cancel) against a real Redis', () => {
  const db = useTestRedis();
  beforeEach(async () => {
    await db.server.flush();
    await ensureConsumerGroup(db.redis, stream);
    await setAdmission(db.redis, MODEL, 1, 'open');
  });

  /** group-add.lua as the gateway calls it; returns its reply `[code, size, status, ready]`. */
  function add(
    groupId: string,
    inputs: unknown[],
    options: { create?: boolean; close?: boolean; start?: number; maxQueueSize?: number; onItemError?: 'fail' | 'skip'; reduce?: string } = {},
  ): Promise<[number, number, string, number]> {
    const { create = false, close = false, start = -1, maxQueueSize = 1000, onItemError = 'skip', reduce = 'mean' } = options;
    return runScript(db.redis, 'group-add', [keys.group(groupId), stream, keys.groupInputs(groupId), keys.groupsReady(MODEL), keys.groupsOpen(MODEL), keys.admission(MODEL), keys.tenantQueued(MODEL), keys.idempotency(MODEL, 'groups', '', ''), stream], [
      groupId, create ? 1 : 0, close ? 1 : 0, start, maxQueueSize, 0, Date.now(), JOB_EVENTS_CHANNEL,
      MODEL, 1, reduce, 'embedding', onItemError, 60, 1, '', 1,
      ...inputs.map((input) => encode(input)),
      '', 0, '', '', 0,
    ]);
  }

  async function readAs(consumer: string, count: number): Promise<StreamEntry[]> {
    const reply = (await db.redis.callBuffer('XREADGROUP', 'GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as
      | [Buffer, RawEntry[]][]
      | null;
    return (reply?.[0]?.[1] ?? []).map((raw) => parseEntry(raw) as StreamEntry);
  }

  const ok = (entry: StreamEntry, values: number[]): Settlement => ({ entry, result: { ok: true, output: { embedding: new Float32Array(values) } }, queue_ms: 1 });
  const bad = (entry: StreamEntry): Settlement => ({ entry, result: { ok: false, code: 'invalid_input', message: 'no tokens' }, queue_ms: 1 });
  const startMembers = (groupId: string, indexes: number[]): Promise<number[]> =>
    runScript(db.redis, 'start-members', [keys.group(groupId), keys.groupResults(groupId), keys.groupErrors(groupId)], [Date.now(), ...indexes]);

  test('members are stream entries tagged with group and index; chunks append in order and close once', async () => {
    assert.deepEqual(await add(G1, [], { create: true }), [0, 0, 'open', 0]);
    assert.deepEqual(await add(G1, ['a', 'b']), [0, 2, 'open', 0]);
    assert.deepEqual(await add(G1, ['c'], { start: 2 }), [0, 3, 'open', 0]);
    assert.deepEqual(await add(G1, ['c'], { start: 2 }), [-2, 3, 'open', 0], 'a retried chunk is refused: index_conflict');
    assert.deepEqual(await add(G1, [], { close: true }), [0, 3, 'queued', 0]);
    assert.deepEqual((await add(G1, ['d']))[0], -4, 'a closed group takes no more inputs');
    assert.deepEqual((await add(NOPE, ['d']))[0], -3);
    assert.deepEqual((await add(G1, [], { create: true }))[0], -5);
    const entries = await readAs('c1', 10);
    assert.deepEqual(entries.map((entry) => [entry.kind === 'member' ? { groupId: entry.groupId, index: entry.index } : undefined, decode(entry.input)]), [
      [{ groupId: G1, index: 0 }, 'a'],
      [{ groupId: G1, index: 1 }, 'b'],
      [{ groupId: G1, index: 2 }, 'c'],
    ]);
  });

  test('a chunk that does not fit in max_queue_size stores nothing', async () => {
    await add(G1, ['a'], { create: true });
    assert.deepEqual(await add(G1, ['b', 'c', 'd'], { maxQueueSize: 3 }), [-1, 1, 'open', 0]);
    assert.equal(await db.redis.xlen(stream), 1);
    assert.equal(await db.redis.hget(keys.group(G1), 'size'), '1');
  });

  test('each member counts once: a redelivery writes nothing, and only the last first-settle makes the group ready', async () => {
    await add(G1, ['a', 'b', 'c'], { create: true, close: true });
    const [a, b, c] = await readAs('c1', 10);
    assert.ok(a && b && c);
    assert.deepEqual(await startMembers(G1, [0, 1, 2]), [1, 1, 1]);
    assert.deepEqual(await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(a, [1, 2]), bad(b)]), { written: 2, readyGroups: [] });
    assert.deepEqual(await startMembers(G1, [0, 1, 2]), [0, 0, 1], 'settled members are not run again');
    assert.deepEqual(await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(a, [9, 9])]), { written: 0, readyGroups: [] }, 'redelivery');
    assert.deepEqual(await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(c, [3, 4])]), { written: 1, readyGroups: [G1] });
    assert.deepEqual(await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(c, [3, 4])]), { written: 0, readyGroups: [] }, 'ready once');

    const group = await db.redis.hgetall(keys.group(G1));
    assert.equal(group.status, 'reducing');
    assert.equal(group.completed, '2');
    assert.equal(group.failed, '1');
    assert.equal(group.remaining, '0');
    assert.deepEqual(await db.redis.zrange(keys.groupsReady(MODEL), 0, -1), [G1]);
    assert.equal(await db.redis.xlen(stream), 0, 'every entry acknowledged and deleted');

    // The reduce reads results in index order, skips the failed member, and writes once.
    const outcome = await reduceGroup(db.redis, G1, 2);
    assert.deepEqual(outcome, { reduced: true, size: 3, failed_indexes: [1] });
    const done = await db.redis.hgetallBuffer(keys.group(G1));
    assert.equal(done.status?.toString(), 'succeeded');
    assert.deepEqual(decode(done.output as Buffer), { embedding: [2, 3] });
    assert.deepEqual(decode(done.failed_indexes as Buffer), [1]);
    assert.equal(done.reduce_runs?.toString(), '1');
    assert.equal(await db.redis.exists(keys.groupResults(G1), keys.groupErrors(G1)), 0, 'member results dropped');
    assert.deepEqual(await db.redis.zrange(keys.groupsReady(MODEL), 0, -1), [], 'out of the ready set');
    assert.ok((await db.redis.ttl(keys.group(G1))) > 0, 'the record expires after result_ttl_s');
    assert.deepEqual(await reduceGroup(db.redis, G1, 2), { reduced: false, reason: 'group is succeeded' }, 'a second run writes nothing');
  });

  test('on_item_error "fail": the first failed member fails the group and the rest are dropped unrun', async () => {
    await add(G1, ['a', 'b', 'c'], { create: true, close: true, onItemError: 'fail' });
    const [a, b, c] = await readAs('c1', 10);
    assert.ok(a && b && c);
    await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(a, [1]), bad(b)]);
    const group = await db.redis.hgetall(keys.group(G1));
    assert.equal(group.status, 'failed');
    assert.equal(group.error_code, 'member_failed');
    assert.match(group.error_message ?? '', /^input 1 failed \(invalid_input\): no tokens$/);
    assert.deepEqual(await startMembers(G1, [2]), [0]);
    assert.deepEqual(await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(c, [1])]), { written: 0, readyGroups: [] });
    assert.equal(await db.redis.exists(keys.groupResults(G1)), 0);
  });

  test('cancel: members still queued are dropped; cancelling twice or an unknown group says so', async () => {
    await add(G1, ['a', 'b'], { create: true, close: true });
    const cancel = (id: string): Promise<number> =>
      runScript(db.redis, 'group-cancel', [keys.group(id), keys.groupResults(id), keys.groupErrors(id), keys.groupInputs(id), keys.groupsReady(MODEL), keys.tenantQueued(MODEL), keys.groupCallbacksDue(MODEL)], [
        Date.now(), JOB_EVENTS_CHANNEL, id, 'cancelled',
      ]);
    assert.equal(await cancel(G1), 1);
    assert.equal(await cancel(G1), 0);
    assert.equal(await cancel(NOPE), -1);
    assert.equal(await db.redis.hget(keys.group(G1), 'status'), 'cancelled');
    assert.deepEqual(await startMembers(G1, [0, 1]), [0, 0]);
  });

  test('an empty group closed at once is ready at once; a lost reduce job is found by the sweep', async () => {
    assert.deepEqual(await add(G1, [], { create: true, close: true }), [0, 0, 'reducing', 1]);
    const added: string[] = [];
    const record = (id: string): Promise<void> => {
      added.push(id);
      return Promise.resolve();
    };
    assert.equal(await sweepReadyGroups(db.redis, [MODEL], record, 60_000), 0, 'too recent for the sweep');
    assert.equal(await sweepReadyGroups(db.redis, [MODEL], record, 0), 1);
    assert.deepEqual(added, [G1]);
  });

  test('a group left open past open_group_ttl_s is cancelled by the sweep; a closed one is not in the open set', async () => {
    await add(IDLE, ['a'], { create: true });
    await add(DONE, ['b'], { create: true });
    await add(DONE, [], { close: true });
    assert.deepEqual(await db.redis.zrange(keys.groupsOpen(MODEL), 0, -1), [IDLE]);
    assert.deepEqual(await sweepAbandonedGroups(db.redis, [MODEL], 60_000), [], 'not idle long enough');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(await sweepAbandonedGroups(db.redis, [MODEL], 10), [IDLE]);
    const group = await db.redis.hgetall(keys.group(IDLE));
    assert.equal(group.status, 'cancelled');
    assert.match(group.error_message ?? '', /^abandoned: /);
    assert.deepEqual(await db.redis.zrange(keys.groupsOpen(MODEL), 0, -1), []);
    assert.deepEqual(await startMembers(IDLE, [0]), [0], 'its queued member is dropped unrun');
    assert.equal(await db.redis.hget(keys.group(DONE), 'status'), 'queued');
  });

  test('a member delivered more than max_deliveries times is dead-lettered and fails in its group', async () => {
    await add(G1, ['a', 'b'], { create: true, close: true });
    const [a, b] = await readAs('c1', 10);
    assert.ok(a && b);
    await settleBatch(db.redis, MODEL, 1, FIGURES, [ok(a, [1])]);
    const options = { model: MODEL, version: 1, consumer: 'c2', visibility_timeout_ms: 0, max_deliveries: 0, count: 10, result_ttl_s: 60 };
    const reclaimed = await reclaimPending(db.redis, options);
    assert.deepEqual(reclaimed.deadLettered, [`${G1}/1`]);
    assert.deepEqual(reclaimed.readyGroups, [G1], 'the poison member was the last one');
    assert.equal(await db.redis.hget(keys.groupErrors(G1), '1'), 'poison\tdelivered 2 times (max_deliveries 0) without a result');
    assert.equal(await db.redis.xlen(keys.deadLetter(MODEL, 1)), 1);
  });
});
