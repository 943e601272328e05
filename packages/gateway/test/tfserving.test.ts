import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { fakeWorker, MODEL, startFixture, type Fixture, storedKeys } from './fixture.ts';

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
    await f.reset();
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

  it('{"b64"} text that is not standard base64 or not UTF-8 → 400 invalid_input naming the instance, storing nothing', async () => {
    for (const [b64, message] of [
      ['!!', /instances\[1\]\.b64": not standard base64/],
      ['abcde', /instances\[1\]\.b64": not standard base64/], // 4n + 1 characters
      ['ab=c', /instances\[1\]\.b64": not standard base64/],
      [Buffer.from([0xff, 0xfe, 0x41]).toString('base64'), /instances\[1\]\.b64": the decoded bytes are not valid UTF-8/],
    ] as const) {
      const res = await predict({ instances: ['fine', { b64 }] });
      assert.equal(res.statusCode, 400, res.body);
      const error = res.json<{ error: { code: string; message: string } }>().error;
      assert.equal(error.code, 'invalid_input');
      assert.match(error.message, message);
    }
    const columnar = await predict({ inputs: [{ b64: '!!' }] });
    assert.match(columnar.json<{ error: { message: string } }>().error.message, /inputs\[0\]\.b64/);
    assert.deepEqual(await storedKeys(f.redis), []);
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
    assert.deepEqual(await storedKeys(f.redis), []);
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
