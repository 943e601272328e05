import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { CONSUMER_GROUP, JOB_EVENTS_CHANNEL, connectRedis, decode, encode, keys, runScript } from '@inferline/shared';
import { startTestRedis, type TestRedis } from '../../../test/harness/redis.ts';
import { reclaimPending } from '../src/reclaim.ts';
import { settleBatch, type Settlement } from '../src/settle.ts';
import { parseEntry, type RawEntry, type StreamEntry } from '../src/stream-entry.ts';
import { ensureConsumerGroup } from '../src/version-consumer.ts';

const MODEL = 'test-model';
const stream = keys.requests(MODEL, 1);

describe('settle and reclaim against a real Redis', () => {
  let server: TestRedis;
  let redis: Redis;

  before(async () => {
    server = await startTestRedis();
    redis = connectRedis(server.url, { name: 'test' });
  });
  after(async () => {
    await redis.quit();
    await server.stop();
  });
  beforeEach(async () => {
    await server.flush();
    await ensureConsumerGroup(redis, stream);
  });

  /** Enqueue through the real enqueue script, as the gateway does. */
  async function enqueue(id: string, input: unknown): Promise<void> {
    const entry = await runScript(redis, 'enqueue', [keys.job(id), stream], [id, 1000, MODEL, 1, encode(input), Date.now()]);
    assert.match(String(entry), /^\d+-\d+$/);
  }

  async function readAs(consumer: string, count: number): Promise<StreamEntry[]> {
    const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as
      | [Buffer, RawEntry[]][]
      | null;
    return (reply?.[0]?.[1] ?? []).map((raw) => parseEntry(raw) as StreamEntry);
  }

  function success(entry: StreamEntry, value: number): Settlement {
    return {
      entry,
      result: { ok: true, output: { embedding: new Float32Array([value, value]) } },
      timings: { queue_ms: 1, inference_ms: 2, batch_size: 1, batch_id: 'b1' },
    };
  }

  test('writes the result, acknowledges and deletes the entry, and publishes once; a redelivery writes nothing', async () => {
    const events = new Redis(server.url);
    const seen: string[] = [];
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('message', (_channel: string, message: string) => seen.push(message));

    await enqueue('job-1', 'hello');
    const [entry] = await readAs('c1', 10);
    assert.ok(entry);
    assert.deepEqual(decode(entry.input), 'hello');
    assert.equal((await settleBatch(redis, stream, 60, [success(entry, 1)])).written, 1);
    assert.equal((await settleBatch(redis, stream, 60, [success(entry, 2)])).written, 0, 'second settle of the same request writes nothing');

    const job = await redis.hgetallBuffer(keys.job('job-1'));
    assert.equal(job.status?.toString(), 'succeeded');
    assert.deepEqual([...decode<{ embedding: Float32Array }>(job.output as Buffer).embedding], [1, 1], 'first result kept');
    assert.ok((await redis.ttl(keys.job('job-1'))) > 0, 'terminal record expires after result_ttl_s');
    assert.equal(await redis.xlen(stream), 0);
    assert.equal(Number(((await redis.xpending(stream, CONSUMER_GROUP)) as [number])[0]), 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(seen, ['job-1\tsucceeded']);
    events.disconnect();
  });

  test('reclaim takes over entries another consumer left pending past visibility_timeout_ms', async () => {
    await enqueue('job-a', 'a');
    await enqueue('job-b', 'b');
    assert.equal((await readAs('dead-consumer', 10)).length, 2);
    const options = { model: MODEL, version: 1, consumer: 'survivor', visibility_timeout_ms: 100, max_deliveries: 5, count: 10, result_ttl_s: 60 };

    const early = await reclaimPending(redis, options);
    assert.deepEqual(early.claimed, [], 'not idle long enough yet');
    await new Promise((resolve) => setTimeout(resolve, 150));
    const late = await reclaimPending(redis, options);
    assert.deepEqual(late.claimed.map((entry) => entry.jobId), ['job-a', 'job-b']);
    assert.deepEqual(late.claimed.map((entry) => decode(entry.input)), ['a', 'b'], 'inputs survive as bytes');
    const owners = (await redis.xpending(stream, CONSUMER_GROUP, '-', '+', 10)) as [string, string, number, number][];
    assert.deepEqual(owners.map((row) => row[1]), ['survivor', 'survivor']);
  });

  test('an entry delivered more than max_deliveries times is dead-lettered and fails with poison', async () => {
    await enqueue('job-p', 'poison pill');
    await readAs('c1', 1);
    const options = { model: MODEL, version: 1, consumer: 'c2', visibility_timeout_ms: 10, max_deliveries: 2, count: 10, result_ttl_s: 60 };
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal((await reclaimPending(redis, options)).claimed.length, 1, 'second delivery: run again');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const third = await reclaimPending(redis, options);
    assert.deepEqual(third.claimed, []);
    assert.deepEqual(third.deadLettered, ['job-p']);

    const job = await redis.hgetall(keys.job('job-p'));
    assert.equal(job.status, 'failed');
    assert.equal(job.error_code, 'poison');
    assert.equal(await redis.xlen(stream), 0);
    const dead = await redis.xrangeBuffer(keys.deadLetter(MODEL, 1), '-', '+');
    assert.equal(dead.length, 1);
    const deadEntry = parseEntry(dead[0] as RawEntry);
    assert.equal(deadEntry?.jobId, 'job-p');
    assert.equal(decode(deadEntry?.input ?? Buffer.alloc(0)), 'poison pill', 'the dead letter keeps the input');
  });

  test('enqueue refuses beyond max_queue_size and stores nothing', async () => {
    for (let i = 0; i < 3; i++) {
      await runScript(redis, 'enqueue', [keys.job(`q${i}`), stream], [`q${i}`, 2, MODEL, 1, encode('x'), Date.now()]);
    }
    assert.equal(await redis.xlen(stream), 2);
    assert.equal(await redis.exists(keys.job('q2')), 0);
  });
});
