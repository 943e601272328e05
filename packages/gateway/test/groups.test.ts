import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import {
  BULLMQ_PREFIX,
  decode,
  encode,
  groupFinish,
  keys,
  REDUCE_QUEUE,
  settleMember,
  type GroupView,
  type MemberOutcome,
  type Redis,
  type ReduceJobData,
} from '@inferline/shared';
import type { GatewayApp } from '../src/server.ts';
import { MODEL, readEvents, startFixture, type Fixture } from './fixture.ts';

/** The error body of every refused request, with the details the group routes add. */
interface ErrorBody {
  error: { code: string; message: string; index?: number; size?: number; status?: string; retry_after_s?: number };
}

const STREAM = keys.requests(MODEL, 1);

/** What the test writes as the reduced output of a glove-embed `mean` group (exact in float32). */
const REDUCED = { embedding: [0.25, 0.5, -1] };

function postGroup(app: GatewayApp, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/v1/groups', payload: { model: MODEL, reduce: 'mean', ...body } });
}

function postChunk(app: GatewayApp, id: string, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: `/v1/groups/${id}/inputs`, payload: body });
}

function closeGroup(app: GatewayApp, id: string) {
  return app.inject({ method: 'POST', url: `/v1/groups/${id}/close` });
}

/** Keys of every aggregation group and the group sets of every model (`il:{m:<model>}:group...`). */
function groupKeys(redis: Redis): Promise<string[]> {
  return redis.keys('il:{m:*}:group*');
}

/**
 * Ids no group has: without a model part, with an empty one, with an unknown model, with no random
 * part, and made up to look like another key's name.
 */
const UNKNOWN_IDS = ['nope', '~AAAAAAAAAAAAAAAAAAAAA', `${MODEL}~AAAAAAAAAAAAAAAAAAAAA`, 'no-such-model~AAAAAAAAAAAAAAAAAAAAA', `${MODEL}~`, `x}:group:${MODEL}~A`];

/** The stream entries of the request stream as `{group, index, input}` (input decoded). */
async function streamMembers(redis: Redis): Promise<{ id: string; group: string; index: number; input: unknown }[]> {
  const entries = await redis.xrangeBuffer(STREAM, '-', '+');
  return entries.map(([entryId, fields]) => {
    const record: Record<string, Buffer> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i]?.toString() ?? ''] = fields[i + 1] ?? Buffer.alloc(0);
    assert.deepEqual(Object.keys(record), ['group', 'index', 'input'], 'a member entry holds exactly group, index, input');
    return { id: entryId.toString(), group: record.group?.toString() ?? '', index: Number(record.index?.toString()), input: decode(record.input ?? Buffer.alloc(0)) };
  });
}

/**
 * Play the worker and the aggregator for one closed group: settle every member entry with
 * settle-member.lua (the last one makes the group ready), then write `output` with group-finish.lua,
 * through the protocol functions the worker and the aggregator call.
 */
async function finishGroup(redis: Redis, groupId: string, output: unknown = REDUCED): Promise<void> {
  const outcomes = await settleMembers(redis, groupId);
  if (outcomes.length > 0) assert.equal(outcomes.at(-1), 'group_ready', 'the last member settle makes the group ready');
  const written = await groupFinish(redis, groupId, { status: 'succeeded', output: encode(output), failed_indexes: '' });
  assert.equal(written, true, 'group-finish wrote the output');
}

/** Settle every member entry of a group on the stream with settle-member.lua; answers its outcomes. */
async function settleMembers(redis: Redis, groupId: string): Promise<MemberOutcome[]> {
  const members = (await streamMembers(redis)).filter((member) => member.group === groupId);
  const outcomes: MemberOutcome[] = [];
  for (const member of members) {
    outcomes.push(
      await settleMember(redis, {
        model: MODEL,
        version: 1,
        groupId,
        index: member.index,
        entryId: member.id,
        result: { ok: true, output: encode({ embedding: new Float32Array([1, 2, 3]) }) },
      }),
    );
  }
  return outcomes;
}

/** The reduce job of a group on the BullMQ queue `reduce`, if any. */
async function reduceJobOf(redis: Redis, groupId: string): Promise<ReduceJobData | undefined> {
  const queue = new Queue<ReduceJobData>(REDUCE_QUEUE, { connection: redis, prefix: BULLMQ_PREFIX });
  try {
    const job = await queue.getJob(groupId);
    if (job) assert.equal(job.id, groupId, 'the job id is the group id');
    return job?.data;
  } finally {
    await queue.close();
  }
}

describe('routes/groups', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 10, group_progress_interval_ms: 20 } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  async function createGroup(inputs: unknown[] | undefined, extra: Record<string, unknown> = {}): Promise<GroupView> {
    const res = await postGroup(f.app, { ...(inputs === undefined ? {} : { inputs }), ...extra });
    assert.equal(res.statusCode, 202, res.body);
    return res.json<GroupView>();
  }

  describe('POST /v1/groups', () => {
    it('with inputs: answers 202 + Location with a queued view, and puts one member entry per input on the stream', async () => {
      const inputs = ['the quick brown fox', 'jumps over', 'the lazy dog'];
      const res = await postGroup(f.app, { inputs });
      assert.equal(res.statusCode, 202, res.body);
      const view = res.json<GroupView>();
      assert.match(view.id, new RegExp(`^${MODEL}~[A-Za-z0-9_-]{21}$`), 'a group id carries its model (its slot)');
      assert.equal(await f.redis.exists(keys.group(view.id)), 1);
      assert.ok(keys.group(view.id).startsWith(`il:{m:${MODEL}}:`));
      assert.equal(res.headers.location, `/v1/groups/${view.id}`);
      assert.ok(!Number.isNaN(Date.parse(view.created_at)));
      assert.deepEqual(
        { ...view, id: '', created_at: '' },
        {
          id: '', created_at: '', model: MODEL, version: 1, reduce: 'mean', output_name: 'embedding', on_item_error: 'fail',
          status: 'queued', size: 3, completed: 0, failed: 0,
        },
      );
      const members = await streamMembers(f.redis);
      assert.equal(members.length, 3);
      assert.deepEqual(members.map(({ group, index, input }) => ({ group, index, input })), inputs.map((input, index) => ({ group: view.id, index, input })));
      const record = await f.redis.hgetall(keys.group(view.id));
      assert.equal(record.remaining, '3');
      assert.equal(record.keep_inputs, '0');
      assert.equal(await f.redis.exists(keys.groupInputs(view.id)), 0, 'mean keeps no inputs');
    });

    it('on_item_error and collect are stored; collect without output has no output_name', async () => {
      const view = await createGroup(['a'], { reduce: 'collect', on_item_error: 'skip' });
      assert.equal(view.reduce, 'collect');
      assert.equal(view.on_item_error, 'skip');
      assert.equal(view.output_name, undefined);
      assert.equal(await f.redis.hget(keys.group(view.id), 'output_name'), '*');
    });

    it('a reducer the model cannot feed answers 400 invalid_reduce and stores nothing', async () => {
      for (const body of [{ reduce: 'labels' }, { reduce: 'boxes' }, { reduce: 'mean', output: 'nope' }]) {
        const res = await postGroup(f.app, { inputs: ['a'], ...body });
        assert.equal(res.statusCode, 400, JSON.stringify(body));
        assert.equal(res.json<ErrorBody>().error.code, 'invalid_reduce');
      }
      assert.equal(await f.redis.xlen(STREAM), 0);
      assert.deepEqual(await groupKeys(f.redis), []);
    });

    it('an invalid input at position k answers 400 invalid_input with error.index k and stores nothing', async () => {
      for (const [inputs, k] of [[[42, 'b'], 0], [['a', 'b', { text: 'c' }, 'd'], 2], [['a', 'b', 'c', null], 3]] as const) {
        const res = await postGroup(f.app, { inputs });
        assert.equal(res.statusCode, 400, res.body);
        const { error } = res.json<ErrorBody>();
        assert.equal(error.code, 'invalid_input');
        assert.equal(error.index, k);
        assert.match(error.message, /JSON string/);
      }
      assert.equal(await f.redis.xlen(STREAM), 0);
      assert.deepEqual(await groupKeys(f.redis), []);
    });

    it('an empty group closed at once (inputs: []) is reducing at once and its BullMQ reduce job exists', async () => {
      const view = await createGroup([]);
      assert.equal(view.status, 'reducing');
      assert.equal(view.size, 0);
      assert.equal(await f.redis.xlen(STREAM), 0);
      assert.deepEqual(await f.redis.zrange(keys.groupsReady(MODEL), 0, -1), [view.id]);
      assert.deepEqual(await reduceJobOf(f.redis, view.id), { group: view.id }, 'the reduce job exists');
    });

    it('a queued group has no reduce job yet', async () => {
      const view = await createGroup(['a']);
      assert.equal(await reduceJobOf(f.redis, view.id), undefined);
    });
  });

  describe('chunks and close', () => {
    it('created without inputs the group is open; chunks with start append in order', async () => {
      const group = await createGroup(undefined);
      assert.equal(group.status, 'open');
      assert.equal(group.size, 0);
      assert.equal(await f.redis.exists(STREAM), 0);

      const first = await postChunk(f.app, group.id, { inputs: ['a', 'b'], start: 0 });
      assert.equal(first.statusCode, 202, first.body);
      assert.deepEqual([first.json<GroupView>().status, first.json<GroupView>().size], ['open', 2]);
      const second = await postChunk(f.app, group.id, { inputs: ['c'], start: 2 });
      assert.equal(second.statusCode, 202, second.body);
      assert.equal(second.json<GroupView>().size, 3);
      const unchecked = await postChunk(f.app, group.id, { inputs: ['d', 'e'] });
      assert.equal(unchecked.statusCode, 202, unchecked.body);
      assert.equal(unchecked.json<GroupView>().size, 5);

      const members = await streamMembers(f.redis);
      assert.deepEqual(members.map(({ group: g, index, input }) => [g, index, input]), ['a', 'b', 'c', 'd', 'e'].map((input, index) => [group.id, index, input]));
    });

    it('a chunk whose start is not the group size answers 409 index_conflict with error.size and stores nothing', async () => {
      const group = await createGroup(undefined);
      assert.equal((await postChunk(f.app, group.id, { inputs: ['a', 'b'], start: 0 })).statusCode, 202);
      for (const start of [0, 1, 3]) {
        const res = await postChunk(f.app, group.id, { inputs: ['c'], start });
        assert.equal(res.statusCode, 409, `start ${start}`);
        const { error } = res.json<ErrorBody>();
        assert.equal(error.code, 'index_conflict');
        assert.equal(error.size, 2);
      }
      assert.equal(await f.redis.xlen(STREAM), 2);
      assert.equal((await f.app.inject({ url: `/v1/groups/${group.id}` })).json<GroupView>().size, 2);
    });

    it('an invalid input in a chunk answers 400 invalid_input with its index in the chunk, and adds nothing', async () => {
      const group = await createGroup(undefined);
      await postChunk(f.app, group.id, { inputs: ['a'] });
      const res = await postChunk(f.app, group.id, { inputs: ['b', 7] });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json<ErrorBody>().error.code, 'invalid_input');
      assert.equal(res.json<ErrorBody>().error.index, 1);
      assert.equal(await f.redis.xlen(STREAM), 1);
    });

    it('close answers 200 queued; closing again answers the same view; a chunk after close answers 409 group_closed', async () => {
      const group = await createGroup(undefined);
      await postChunk(f.app, group.id, { inputs: ['a', 'b'], start: 0 });
      const closed = await closeGroup(f.app, group.id);
      assert.equal(closed.statusCode, 200, closed.body);
      const view = closed.json<GroupView>();
      assert.equal(view.status, 'queued');
      assert.equal(view.size, 2);

      const again = await closeGroup(f.app, group.id);
      assert.equal(again.statusCode, 200);
      assert.deepEqual(again.json<GroupView>(), view);

      const late = await postChunk(f.app, group.id, { inputs: ['c'], start: 2 });
      assert.equal(late.statusCode, 409);
      const { error } = late.json<ErrorBody>();
      assert.equal(error.code, 'group_closed');
      assert.equal(error.status, 'queued');
      assert.equal(error.size, 2);
      assert.equal(await f.redis.xlen(STREAM), 2);
    });

    it('closing an open group that holds no inputs makes it reducing and adds its reduce job', async () => {
      const group = await createGroup(undefined);
      const closed = await closeGroup(f.app, group.id);
      assert.equal(closed.statusCode, 200);
      assert.equal(closed.json<GroupView>().status, 'reducing');
      assert.deepEqual(await reduceJobOf(f.redis, group.id), { group: group.id });
    });

    it('closing an open group whose members all settled already makes it reducing and adds its reduce job', async () => {
      const group = await createGroup(undefined);
      await postChunk(f.app, group.id, { inputs: ['a', 'b'], start: 0 });
      assert.deepEqual(await settleMembers(f.redis, group.id), ['written', 'written'], 'an open group is not ready when its members settle');
      const closed = await closeGroup(f.app, group.id);
      assert.equal(closed.statusCode, 200);
      const view = closed.json<GroupView>();
      assert.deepEqual([view.status, view.size, view.completed], ['reducing', 2, 2]);
      assert.deepEqual(await reduceJobOf(f.redis, group.id), { group: group.id });
    });

    it('a chunk, a close or a DELETE of an unknown group answers 404 group_not_found', async () => {
      for (const id of UNKNOWN_IDS) {
        const path = encodeURIComponent(id);
        for (const res of [
          await postChunk(f.app, path, { inputs: ['a'] }),
          await closeGroup(f.app, path),
          await f.app.inject({ method: 'DELETE', url: `/v1/groups/${path}` }),
        ]) {
          assert.equal(res.statusCode, 404, `${id}: ${res.body}`);
          assert.equal(res.json<ErrorBody>().error.code, 'group_not_found');
        }
      }
      assert.deepEqual(await groupKeys(f.redis), [], 'nothing written for them');
    });
  });

  describe('GET /v1/groups/:id', () => {
    it('an unknown group answers 404 group_not_found, with or without ?wait', async () => {
      for (const url of ['AAAAAAAAAAAAAAAAAAAAA', ...UNKNOWN_IDS].flatMap((id) => [`/v1/groups/${encodeURIComponent(id)}`, `/v1/groups/${encodeURIComponent(id)}?wait=1`])) {
        const res = await f.app.inject({ url });
        assert.equal(res.statusCode, 404, url);
        assert.equal(res.json<ErrorBody>().error.code, 'group_not_found');
      }
    });

    it('?wait=0.2 on a queued group answers it queued after about 0.2 s', async () => {
      const group = await createGroup(['a', 'b']);
      const startedAt = performance.now();
      const res = await f.app.inject({ url: `/v1/groups/${group.id}?wait=0.2` });
      const elapsedMs = performance.now() - startedAt;
      assert.equal(res.statusCode, 200);
      assert.equal(res.json<GroupView>().status, 'queued');
      assert.ok(elapsedMs >= 180 && elapsedMs < 2_000, `answered after ${elapsedMs} ms`);
    });

    it('?wait=5 wakes when the group finishes, and answers it succeeded with its output', async () => {
      const group = await createGroup(['a', 'b', 'c']);
      let finishing: Promise<void> | undefined;
      const timer = setTimeout(() => {
        finishing = finishGroup(f.redis, group.id);
      }, 150);
      const startedAt = performance.now();
      const res = await f.app.inject({ url: `/v1/groups/${group.id}?wait=5` });
      const elapsedMs = performance.now() - startedAt;
      clearTimeout(timer);
      await finishing;
      assert.equal(res.statusCode, 200);
      const view = res.json<GroupView>();
      assert.equal(view.status, 'succeeded', JSON.stringify(view));
      assert.equal(view.completed, 3);
      assert.equal(view.failed, 0);
      assert.deepEqual(view.output, REDUCED);
      assert.ok(view.finished_at);
      assert.ok(elapsedMs < 4_000, `woke after ${elapsedMs} ms`);
      assert.equal(f.events.watchedJobs, 0, 'the waiter was removed');
      assert.equal(await f.redis.xlen(STREAM), 0, 'every member entry settled');
    });

    it('a finished group answers its output without ?wait', async () => {
      const group = await createGroup(['a']);
      await finishGroup(f.redis, group.id);
      const view = (await f.app.inject({ url: `/v1/groups/${group.id}` })).json<GroupView>();
      assert.equal(view.status, 'succeeded');
      assert.deepEqual(view.output, REDUCED);
    });
  });

  describe('DELETE /v1/groups/:id and output.png', () => {
    it('DELETE answers 200 cancelled; a second DELETE answers 409 group_finished', async () => {
      const group = await createGroup(['a', 'b']);
      const res = await f.app.inject({ method: 'DELETE', url: `/v1/groups/${group.id}` });
      assert.equal(res.statusCode, 200, res.body);
      const view = res.json<GroupView>();
      assert.equal(view.status, 'cancelled');
      assert.equal(view.error?.code, 'cancelled');
      assert.ok(view.finished_at);

      const again = await f.app.inject({ method: 'DELETE', url: `/v1/groups/${group.id}` });
      assert.equal(again.statusCode, 409);
      assert.equal(again.json<ErrorBody>().error.code, 'group_finished');
    });

    it('DELETE of a succeeded group answers 409 group_finished', async () => {
      const group = await createGroup(['a']);
      await finishGroup(f.redis, group.id);
      const res = await f.app.inject({ method: 'DELETE', url: `/v1/groups/${group.id}` });
      assert.equal(res.statusCode, 409);
      assert.equal(res.json<ErrorBody>().error.code, 'group_finished');
    });

    it('output.png of a group that is not a succeeded boxes group answers 404 not_found; of an unknown group 404 group_not_found', async () => {
      const queued = await createGroup(['a']);
      const finished = await createGroup(['b']);
      await finishGroup(f.redis, finished.id);
      for (const id of [queued.id, finished.id]) {
        const res = await f.app.inject({ url: `/v1/groups/${id}/output.png` });
        assert.equal(res.statusCode, 404, id);
        const { error } = res.json<ErrorBody>();
        assert.equal(error.code, 'not_found');
        assert.match(error.message, /reduce "mean"/);
      }
      const unknown = await f.app.inject({ url: '/v1/groups/nope/output.png' });
      assert.equal(unknown.statusCode, 404);
      assert.equal(unknown.json<ErrorBody>().error.code, 'group_not_found');
    });
  });

  describe('GET /v1/groups/:id/events over a real socket', () => {
    let base: string;
    before(async () => {
      await f.app.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(f.app.server.address() as AddressInfo).port}`;
    });


    it('streams progress while the group runs and ends with an event named succeeded carrying the output', async () => {
      const group = await createGroup(['a', 'b']);
      const res = await fetch(`${base}/v1/groups/${group.id}/events`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      let finishing: Promise<void> | undefined;
      const events = await readEvents<GroupView>(res, (event) => {
        // Finish the group once the first progress event arrived: the stream is then watching.
        if (event === 'progress') finishing ??= finishGroup(f.redis, group.id);
      });
      await finishing;
      assert.equal(events[0]?.event, 'progress');
      assert.equal(events[0]?.data.status, 'queued');
      assert.equal(events[0]?.data.size, 2);
      assert.equal(events[0]?.data.output, undefined, 'progress events carry no output');
      const last = events.at(-1);
      assert.equal(last?.event, 'succeeded', JSON.stringify(events.map((e) => e.event)));
      assert.equal(last?.data.status, 'succeeded');
      assert.deepEqual(last?.data.output, REDUCED);
      assert.equal(events.filter((e) => e.event === 'succeeded').length, 1);
    });

    it('of a finished group sends the one terminal event and closes', async () => {
      const group = await createGroup(['a']);
      await finishGroup(f.redis, group.id);
      const events = await readEvents<GroupView>(await fetch(`${base}/v1/groups/${group.id}/events`));
      assert.deepEqual(events.map((e) => e.event), ['succeeded']);
      assert.deepEqual(events[0]?.data.output, REDUCED);
    });

    it('of an unknown group answers 404 JSON', async () => {
      const res = await fetch(`${base}/v1/groups/AAAAAAAAAAAAAAAAAAAAA/events`);
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as ErrorBody).error.code, 'group_not_found');
    });
  });
});

describe('routes/groups admission limits', () => {
  const MAX_GROUP_INPUTS = 5;
  const MAX_QUEUE_SIZE = 4;
  let f: Fixture;
  before(async () => {
    f = await startFixture({ maxQueueSize: MAX_QUEUE_SIZE, settings: { max_group_inputs: MAX_GROUP_INPUTS } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  const texts = (count: number): string[] => Array.from({ length: count }, (_, i) => `text ${i}`);

  it('more than max_group_inputs inputs in one request answers 413 payload_too_large and stores nothing', async () => {
    const res = await postGroup(f.app, { inputs: texts(MAX_GROUP_INPUTS + 1) });
    assert.equal(res.statusCode, 413, res.body);
    const { error } = res.json<ErrorBody>();
    assert.equal(error.code, 'payload_too_large');
    assert.match(error.message, /MAX_GROUP_INPUTS/);
    assert.equal(await f.redis.xlen(STREAM), 0);
    assert.deepEqual(await groupKeys(f.redis), []);

    const open = await postGroup(f.app, {});
    const chunk = await postChunk(f.app, open.json<GroupView>().id, { inputs: texts(MAX_GROUP_INPUTS + 1) });
    assert.equal(chunk.statusCode, 413);
    assert.equal(chunk.json<ErrorBody>().error.code, 'payload_too_large');
  });

  it('a request or chunk larger than the model\'s max_queue_size answers 413 payload_too_large', async () => {
    const res = await postGroup(f.app, { inputs: texts(MAX_QUEUE_SIZE + 1) });
    assert.equal(res.statusCode, 413, res.body);
    assert.match(res.json<ErrorBody>().error.message, /max_queue_size 4/);

    const open = await postGroup(f.app, {});
    const id = open.json<GroupView>().id;
    const chunk = await postChunk(f.app, id, { inputs: texts(MAX_QUEUE_SIZE + 1) });
    assert.equal(chunk.statusCode, 413, chunk.body);
    const { error } = chunk.json<ErrorBody>();
    assert.equal(error.code, 'payload_too_large');
    assert.match(error.message, /max_queue_size 4/);
    assert.equal(await f.redis.xlen(STREAM), 0);
    assert.equal(await f.redis.hget(keys.group(id), 'size'), '0');
  });

  it('inputs that do not fit in the stream answer 429 queue_full with Retry-After, and store nothing', async () => {
    const first = await postGroup(f.app, { inputs: texts(3) });
    assert.equal(first.statusCode, 202, first.body);
    const keysBefore = (await groupKeys(f.redis)).sort();

    const res = await postGroup(f.app, { inputs: texts(2) });
    assert.equal(res.statusCode, 429, res.body);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal(res.json<ErrorBody>().error.code, 'queue_full');
    assert.equal(await f.redis.xlen(STREAM), 3);
    assert.deepEqual((await groupKeys(f.redis)).sort(), keysBefore, 'no group record was created');

    const open = await postGroup(f.app, {});
    const id = open.json<GroupView>().id;
    const chunk = await postChunk(f.app, id, { inputs: texts(2), start: 0 });
    assert.equal(chunk.statusCode, 429, chunk.body);
    assert.equal(chunk.headers['retry-after'], '1');
    assert.equal(chunk.json<ErrorBody>().error.code, 'queue_full');
    assert.equal(await f.redis.xlen(STREAM), 3);
    assert.equal(await f.redis.hget(keys.group(id), 'size'), '0');

    const fits = await postChunk(f.app, id, { inputs: texts(1), start: 0 });
    assert.equal(fits.statusCode, 202, 'one more still fits');
    assert.equal(fits.json<GroupView>().size, 1);
  });
});
