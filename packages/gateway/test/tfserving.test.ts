import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { connectRedis, CONSUMER_GROUP, decode, encode, JOB_EVENTS_CHANNEL, keys, runScript, type Redis } from '@inferline/shared';
import { MODEL, startFixture, type Fixture } from './fixture.ts';

/**
 * A stand-in worker on the real protocol: XREADGROUP, start.lua, settle.lua. The embedding of a text is
 * filled with its length / 100, so a test can tell which answer belongs to which instance; a text
 * starting with "fail" fails with inference_failed.
 */
function fakeWorker(url: string, version = 1): { stop(): Promise<void> } {
  const redis: Redis = connectRedis(url, { name: 'fake-worker' });
  const stream = keys.requests(MODEL, version);
  let running = true;
  const loop = (async () => {
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    while (running) {
      const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', CONSUMER_GROUP, 'w1', 'COUNT', 32, 'BLOCK', 50, 'STREAMS', stream, '>')) as
        | [Buffer, [Buffer, Buffer[]][]][]
        | null;
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          const jobId = fields[1]?.toString() ?? '';
          const text = decode<string>(fields[3] ?? Buffer.alloc(0));
          await runScript(redis, 'start', [keys.job(jobId)], [Date.now(), JOB_EVENTS_CHANNEL, jobId]);
          const failed = text.startsWith('fail');
          const output = failed ? '' : encode({ embedding: new Float32Array(100).fill(text.length / 100) });
          await runScript(
            redis,
            'settle',
            [keys.job(jobId), stream],
            [CONSUMER_GROUP, id.toString(), failed ? 'failed' : 'succeeded', output, failed ? 'inference_failed' : '', failed ? 'model threw' : '', Date.now(), 1, 1, entries.length, 'b', 60, JOB_EVENTS_CHANNEL, jobId],
          );
        }
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      redis.disconnect();
    },
  };
}

type Body = { predictions?: number[][]; outputs?: number[][]; error?: { code: string; message: string } };

describe('routes/tfserving: POST /v1/models/:name[/versions/:v]:predict', () => {
  let f: Fixture;
  let worker: { stop(): Promise<void> } | undefined;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 1 } });
  });
  after(async () => {
    await worker?.stop();
    await f.close();
  });
  beforeEach(async () => {
    await worker?.stop();
    worker = undefined;
    await f.redis.flushall();
  });

  const predict = (body: unknown, path = `/v1/models/${MODEL}:predict`) => f.app.inject({ method: 'POST', url: path, payload: body as Record<string, unknown> });

  it('instances → one prediction per instance, in order, each the 100-float embedding', async () => {
    worker = fakeWorker(f.server.url);
    const texts = ['a', 'abcd', 'ab', { text: 'abcdefgh' }, { b64: Buffer.from('abc').toString('base64') }];
    const res = await predict({ instances: texts });
    assert.equal(res.statusCode, 200, res.body);
    const { predictions } = res.json<Body>();
    assert.equal(predictions?.length, 5);
    const lengths = predictions?.map((p) => Math.round((p[0] ?? 0) * 100));
    assert.deepEqual(lengths, [1, 4, 2, 8, 3]);
    for (const p of predictions ?? []) assert.equal(p.length, 100);
    assert.equal(f.events.watchedJobs, 0);
  });

  it('columnar inputs → outputs; the versions path selects the version', async () => {
    worker = fakeWorker(f.server.url);
    const res = await predict({ inputs: ['xyz', 'x'] }, `/v1/models/${MODEL}/versions/1:predict`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(
      res.json<Body>().outputs?.map((p) => Math.round((p[0] ?? 0) * 100)),
      [3, 1],
    );
  });

  it('a failed instance fails the call with its error code', async () => {
    worker = fakeWorker(f.server.url);
    const res = await predict({ instances: ['fine', 'fail me'] });
    assert.equal(res.statusCode, 500);
    assert.equal(res.json<Body>().error?.code, 'inference_failed');
  });

  it('no worker → 504 deadline_exceeded after max_wait_s', async () => {
    const res = await predict({ instances: ['waiting'] });
    assert.equal(res.statusCode, 504);
    assert.equal(res.json<Body>().error?.code, 'deadline_exceeded');
    assert.equal(f.events.watchedJobs, 0);
  });

  it('an invalid instance rejects the whole call with 400 and stores nothing', async () => {
    const res = await predict({ instances: ['ok', 5] });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<Body>().error?.code, 'invalid_input');
    assert.deepEqual(await f.redis.keys('*'), []);
  });

  it('neither or both of instances / inputs, or an unknown field → 400; unknown model → 404', async () => {
    for (const body of [{}, { instances: ['a'], inputs: ['a'] }, { instances: [] }, { instances: ['a'], foo: 1 }]) {
      const res = await predict(body);
      assert.equal(res.statusCode, 400, JSON.stringify(body));
      assert.equal(res.json<Body>().error?.code, 'invalid_input');
    }
    const missing = await predict({ instances: ['a'] }, '/v1/models/nope:predict');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json<Body>().error?.code, 'model_not_found');
  });
});
