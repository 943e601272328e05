import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  jobEventsOf,
  settleJobs,
  setAdmission,
  startJobs,
  CONSUMER_GROUP,
  JOB_EVENTS_CHANNEL,
  InferlineError,
  decode,
  encode,
  enqueueJobs,
  type EnqueueOutcome,
  keys,
  parseEntry,
  type RawEntry,
  type StreamEntry,
} from '@inferline/shared';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { reclaimPending } from '../src/reclaim.ts';
import { failWaiting, settleBatch, type Settlement } from '../src/settle.ts';
import { ensureConsumerGroup } from '../src/version-consumer.ts';

const MODEL = 'test-model';
const stream = keys.requests(MODEL, 1);

describe('settle and reclaim against a real Redis', () => {
  const db = useTestRedis();
  beforeEach(async () => {
    await db.server.flush();
    await ensureConsumerGroup(db.redis, stream);
    // A worker opens a version once it is AVAILABLE; enqueue.lua stores requests only for open versions.
    await setAdmission(db.redis, MODEL, 1, 'open');
  });

  /** Enqueue through the real enqueue script, as the gateway does. */
  async function enqueue(id: string, input: unknown, maxQueueSize = 1000): Promise<string[]> {
    return entryIdsOf(await enqueueJobs(db.redis, { model: MODEL, version: 1, max_queue_size: maxQueueSize, created_at: Date.now(), jobs: [{ id, input: encode(input) }] }));
  }
  const figures = { inference_ms: 2, batch_size: 1, batch_id: 'b1', result_ttl_s: 60 };
  const settle = (settlements: Settlement[]): Promise<{ written: number }> => settleBatch(db.redis, MODEL, 1, figures, settlements);

  async function readAs(consumer: string, count: number): Promise<StreamEntry[]> {
    const reply = (await db.redis.callBuffer('XREADGROUP', 'GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as
      | [Buffer, RawEntry[]][]
      | null;
    return (reply?.[0]?.[1] ?? []).map((raw) => parseEntry(raw) as StreamEntry);
  }

  function success(entry: StreamEntry, value: number): Settlement {
    return {
      entry,
      result: { ok: true, output: { embedding: new Float32Array([value, value]) } },
      queue_ms: 1,
    };
  }

  test('writes the result, acknowledges and deletes the entry, and publishes once; a redelivery writes nothing', async () => {
    const events = new Redis(db.server.url);
    const seen: string[] = [];
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('message', (_channel: string, message: string) => seen.push(message));

    assert.match((await enqueue('job-1', 'hello'))[0] ?? '', /^\d+-\d+$/);
    const [entry] = await readAs('c1', 10);
    assert.ok(entry);
    assert.deepEqual(decode(entry.input), 'hello');
    assert.equal((await settle([success(entry, 1)])).written, 1);
    assert.equal((await settle([success(entry, 2)])).written, 0, 'second settle of the same request writes nothing');

    const job = await db.redis.hgetallBuffer(keys.job('job-1'));
    assert.equal(job.status?.toString(), 'succeeded');
    assert.deepEqual(JSON.parse(job.output?.toString() ?? ''), { embedding: [1, 1] }, 'first result kept, as JSON text');
    assert.equal(job.queue_ms?.toString(), '1.000');
    assert.equal(job.batch_id?.toString(), 'b1');
    assert.ok((await db.redis.ttl(keys.job('job-1'))) > 0, 'terminal record expires after result_ttl_s');
    assert.equal(await db.redis.xlen(stream), 0);
    assert.equal(Number(((await db.redis.xpending(stream, CONSUMER_GROUP)) as [number])[0]), 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    events.disconnect();
    assert.deepEqual(seen, ['job-1\tsucceeded\t1.000\t\t2.000\t1\tb1\t{"embedding":[1,1]}'], 'announced once, with what was written');
  });

  test('a job that waited for its version to load records load_ms; one that did not has none', async () => {
    await enqueue('job-l', 'loaded');
    await enqueue('job-n', 'not');
    const [waited, other] = await readAs('c1', 10);
    assert.ok(waited && other);
    await settle([{ ...success(waited, 1), load_ms: 812.5 }, success(other, 1)]);
    assert.equal((await db.redis.hget(keys.job('job-l'), 'load_ms')) ?? '', '812.500');
    assert.equal(await db.redis.hget(keys.job('job-n'), 'load_ms'), null);
  });

  test('reclaim takes over entries another consumer left pending past visibility_timeout_ms', async () => {
    await enqueue('job-a', 'a');
    await enqueue('job-b', 'b');
    assert.equal((await readAs('dead-consumer', 10)).length, 2);
    const options = { model: MODEL, version: 1, consumer: 'survivor', visibility_timeout_ms: 100, max_deliveries: 5, count: 10, result_ttl_s: 60 };

    const early = await reclaimPending(db.redis, options);
    assert.deepEqual(early.claimed, [], 'not idle long enough yet');
    await new Promise((resolve) => setTimeout(resolve, 150));
    const late = await reclaimPending(db.redis, options);
    assert.deepEqual(late.claimed.map((entry) => (entry.kind === 'job' ? entry.jobId : '')), ['job-a', 'job-b']);
    assert.deepEqual(late.claimed.map((entry) => decode(entry.input)), ['a', 'b'], 'inputs survive as bytes');
    const owners = (await db.redis.xpending(stream, CONSUMER_GROUP, '-', '+', 10)) as [string, string, number, number][];
    assert.deepEqual(owners.map((row) => row[1]), ['survivor', 'survivor']);
  });

  test('an entry delivered more than max_deliveries times is dead-lettered and fails with poison', async () => {
    await enqueue('job-p', 'poison pill');
    await readAs('c1', 1);
    const options = { model: MODEL, version: 1, consumer: 'c2', visibility_timeout_ms: 10, max_deliveries: 2, count: 10, result_ttl_s: 60 };
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal((await reclaimPending(db.redis, options)).claimed.length, 1, 'second delivery: run again');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const third = await reclaimPending(db.redis, options);
    assert.deepEqual(third.claimed, []);
    assert.deepEqual(third.deadLettered, ['job-p']);

    const job = await db.redis.hgetall(keys.job('job-p'));
    assert.equal(job.status, 'failed');
    assert.equal(job.error_code, 'poison');
    assert.equal(await db.redis.xlen(stream), 0);
    const dead = await db.redis.xrangeBuffer(keys.deadLetter(MODEL, 1), '-', '+');
    assert.equal(dead.length, 1);
    const deadEntry = parseEntry(dead[0] as RawEntry);
    assert.equal(deadEntry?.kind === 'job' ? deadEntry.jobId : undefined, 'job-p');
    assert.equal(decode(deadEntry?.input ?? Buffer.alloc(0)), 'poison pill', 'the dead letter keeps the input');
  });

  test('enqueue refuses beyond max_queue_size and stores nothing', async () => {
    for (let i = 0; i < 2; i++) await enqueue(`q${i}`, 'x', 2);
    await assert.rejects(enqueue('q2', 'x', 2), (error: unknown) => error instanceof InferlineError && error.code === 'queue_full');
    assert.equal(await db.redis.xlen(stream), 2);
    assert.equal(await db.redis.exists(keys.job('q2')), 0);
  });

  test('enqueue refuses a version that is not open (never opened, or closed to unload it) and stores nothing', async () => {
    await db.redis.hdel(keys.admission(MODEL), '1');
    await assert.rejects(enqueue('c0', 'x'), (error: unknown) => error instanceof InferlineError && error.code === 'model_unavailable');
    await setAdmission(db.redis, MODEL, 1, 'closed');
    await assert.rejects(enqueue('c1', 'x'), (error: unknown) => error instanceof InferlineError && error.code === 'model_unavailable');
    assert.equal(await db.redis.xlen(stream), 0);
    assert.equal(await db.redis.exists(keys.job('c0'), keys.job('c1')), 0);
  });

  test('failWaiting fails every request left in a stream, waiting or pending, once, and empties it', async () => {
    for (const id of ['w0', 'w1', 'w2']) await enqueue(id, 'x');
    // w0 is pending at a consumer (read, not settled); w1 already succeeded; w2 waits unread.
    await db.redis.xreadgroup('GROUP', CONSUMER_GROUP, 'gone', 'COUNT', 1, 'STREAMS', stream, '>');
    await settleJobs(db.redis, MODEL, 1, { inference_ms: 1, batch_size: 1, batch_id: 'b', result_ttl_s: 60 }, [
      { jobId: 'w1', entryId: (await db.redis.hget(keys.job('w1'), 'entry')) ?? '', queue_ms: 1, result: { ok: true, output: Buffer.from('{}') } },
    ]);
    const outcome = await failWaiting(db.redis, { model: MODEL, version: 1, result_ttl_s: 60 }, 'version_unloaded', 'gone');
    assert.equal(outcome.written, 2);
    assert.deepEqual(await Promise.all(['w0', 'w1', 'w2'].map((id) => db.redis.hmget(keys.job(id), 'status', 'error_code'))), [
      ['failed', 'version_unloaded'],
      ['succeeded', null],
      ['failed', 'version_unloaded'],
    ]);
    assert.equal(await db.redis.xlen(stream), 0);
    const pending = (await db.redis.xpending(stream, CONSUMER_GROUP)) as [number, ...unknown[]];
    assert.equal(pending[0], 0);
  });

  test('a bulk enqueue is all or nothing: too many for the queue, or one id taken, stores none', async () => {
    const jobs = (ids: string[]) => ids.map((id) => ({ id, input: encode(id) }));
    const request = async (ids: string[], max: number) => entryIdsOf(await enqueueJobs(db.redis, { model: MODEL, version: 1, max_queue_size: max, created_at: Date.now(), jobs: jobs(ids) }));
    await assert.rejects(request(['b0', 'b1', 'b2'], 2), (error: unknown) => error instanceof InferlineError && error.code === 'queue_full');
    assert.equal(await db.redis.xlen(stream), 0);
    assert.equal(await db.redis.exists(keys.job('b0'), keys.job('b1')), 0);

    const entries = await request(['b0', 'b1'], 10);
    assert.equal(entries.length, 2);
    await assert.rejects(request(['b2', 'b1'], 10), (error: unknown) => error instanceof InferlineError && error.code === 'internal');
    assert.equal(await db.redis.xlen(stream), 2, 'the call with a taken id added nothing');
    assert.equal(await db.redis.exists(keys.job('b2')), 0);
    const read = await readAs('c1', 10);
    assert.deepEqual(read.map((entry) => [entry.entryId, entry.kind === 'job' ? entry.jobId : '', decode(entry.input)]), [
      [entries[0], 'b0', 'b0'],
      [entries[1], 'b1', 'b1'],
    ]);
  });

  test('one start call marks a batch running and announces it in one message; a job already running is not announced again', async () => {
    const events = new Redis(db.server.url);
    const seen: Buffer[] = [];
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('messageBuffer', (_channel: Buffer, message: Buffer) => seen.push(message));
    await enqueue('r1', 'one');
    await enqueue('r2', 'two');
    assert.deepEqual(await startJobs(db.redis, ['r1', 'r2'], Date.now()), ['queued', 'queued']);
    assert.deepEqual(await startJobs(db.redis, ['r1', 'gone'], Date.now()), ['running', 'missing'], 'a redelivery: nothing new to announce');
    assert.deepEqual(await db.redis.hmget(keys.job('r2'), 'status'), ['running']);
    await new Promise((resolve) => setTimeout(resolve, 100));
    events.disconnect();
    assert.equal(seen.length, 1, 'one PUBLISH for the call, none for the call that started nothing');
    assert.deepEqual(jobEventsOf(seen[0] ?? Buffer.alloc(0)).map((event) => event.toString()), ['r1\trunning', 'r2\trunning']);
  });

  test('one settle call settles a whole batch: successes and failures, each announced once, in one message', async () => {
    const events = new Redis(db.server.url);
    const seen: Buffer[] = [];
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('messageBuffer', (_channel: Buffer, message: Buffer) => seen.push(message));
    await enqueue('s1', 'one');
    await enqueue('s2', 'two');
    const [a, b] = await readAs('c1', 10);
    assert.ok(a && b);
    const outcome = await settle([success(a, 0.5), { entry: b, result: { ok: false, code: 'invalid_input', message: 'bad\ttab\nand é' }, queue_ms: 3 }]);
    assert.equal(outcome.written, 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    events.disconnect();
    const first = 's1\tsucceeded\t1.000\t\t2.000\t1\tb1\t{"embedding":[0.5,0.5]}';
    const second = 's2\tfailed\t3.000\t\t2.000\t1\tb1\tinvalid_input\tbad\ttab\nand é';
    const batch = `*${Buffer.byteLength(first)}:${first}${Buffer.byteLength(second)}:${second}`;
    assert.deepEqual(seen.map((message) => message.toString()), [batch], 'one PUBLISH for the batch: `*` then <byte length>:<event> per event');
    const [one, two] = await Promise.all([db.redis.hgetall(keys.job('s1')), db.redis.hgetall(keys.job('s2'))]);
    assert.equal(one?.status, 'succeeded');
    assert.deepEqual(JSON.parse(one?.output ?? ''), { embedding: [0.5, 0.5] });
    assert.deepEqual([two?.status, two?.error_code, two?.error_message, two?.output], ['failed', 'invalid_input', 'bad\ttab\nand é', undefined]);
    assert.equal(await db.redis.xlen(stream), 0);
  });

  test('a batch with a job settled before announces only the results this call writes', async () => {
    await enqueue('d1', 'one');
    await enqueue('d2', 'two');
    await enqueue('d3', 'three');
    const [a, b, c] = await readAs('c1', 10);
    assert.ok(a && b && c);
    assert.equal((await settle([success(b, 0.25)])).written, 1);
    const events = new Redis(db.server.url);
    const seen: Buffer[] = [];
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('messageBuffer', (_channel: Buffer, message: Buffer) => seen.push(message));
    // A redelivery of the whole batch: d2 is already terminal, d1 and d3 are written now.
    const outcome = await settle([success(a, 0.5), success(b, 0.75), success(c, 1)]);
    assert.equal(outcome.written, 2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    events.disconnect();
    assert.equal(seen.length, 1, 'one PUBLISH for the call');
    const announced = jobEventsOf(seen[0] ?? Buffer.alloc(0)).map((event) => event.toString().split('\t'));
    assert.deepEqual(announced.map((fields) => [fields[0], fields[1]]), [['d1', 'succeeded'], ['d3', 'succeeded']]);
    assert.deepEqual(announced.map((fields): unknown => JSON.parse(fields.slice(7).join('\t'))), [{ embedding: [0.5, 0.5] }, { embedding: [1, 1] }]);
    const second = await db.redis.hget(keys.job('d2'), 'output');
    assert.deepEqual(JSON.parse(second ?? ''), { embedding: [0.25, 0.25] }, 'the first result stays');
  });
});

/** The stream entry ids of an enqueue that stored its jobs. */
function entryIdsOf(outcome: EnqueueOutcome): string[] {
  assert.equal(outcome.replayed, false);
  return outcome.replayed ? [] : outcome.entryIds;
}
