import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { decode, keys } from '@inferline/shared';
import { fakeWorker, MODEL, startFixture, type Fixture, storedKeys } from './fixture.ts';

type Body = { predictions?: number[][]; outputs?: number[][]; error?: unknown };

/** A float32 tensor model beside glove-embed, to send NaN and ±Infinity to. */
const FLOATS = 'floats';

async function addFloatModel(repository: string): Promise<void> {
  const dir = join(repository, FLOATS);
  await mkdir(join(dir, '1'), { recursive: true });
  await writeFile(join(dir, '1', 'model.json'), '{}');
  const config = {
    name: FLOATS,
    platform: 'tfjs-graph',
    signature: { inputs: [{ name: 'x', dtype: 'float32', shape: [3] }], outputs: [{ name: 'y', dtype: 'float32', shape: [1] }] },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config));
}

/** The TF Serving error shape: `{"error": "<message>"}` and nothing else; answers the message. */
function tfError(res: { statusCode: number; body: string; json<T>(): T }, status: number): string {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json<Record<string, unknown>>();
  assert.deepEqual(Object.keys(body), ['error'], res.body);
  assert.equal(typeof body.error, 'string', res.body);
  return body.error as string;
}

describe('routes/tfserving: POST /v1/models/:name[/versions/:v|/labels/:l]:predict', () => {
  let f: Fixture;
  let worker: { stop(): Promise<void> } | undefined;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 1, max_body_bytes: 8192 }, maxQueueSize: 5, versionLabels: { stable: 1 } });
    await addFloatModel(f.repository);
    await f.models.refresh();
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
  const predictRaw = (payload: string, headers: Record<string, string> = {}, path = `/v1/models/${MODEL}:predict`) =>
    f.app.inject({ method: 'POST', url: path, payload, headers });
  const lengths = (values: number[][] | undefined) => values?.map((p) => Math.round((p[0] ?? 0) * 100));

  it('instances → one prediction per instance, in order; named instances and {"b64"} text too', async () => {
    worker = fakeWorker(f.server.url);
    const res = await predict({ instances: ['a', 'abcd', 'ab', { b64: Buffer.from('abc').toString('base64') }] });
    assert.equal(res.statusCode, 200, res.body);
    const { predictions } = res.json<Body>();
    assert.deepEqual(lengths(predictions), [1, 4, 2, 3]);
    for (const p of predictions ?? []) assert.equal(p.length, 100);
    const named = await predict({ signature_name: 'serving_default', instances: [{ text: 'abcdefgh' }, { text: { b64: Buffer.from('xy').toString('base64') } }] });
    assert.deepEqual(lengths(named.json<Body>().predictions), [8, 2]);
    assert.equal(f.events.watchedJobs, 0);
  });

  it('columnar inputs → outputs, as a list or by input name; the versions and labels paths select the version', async () => {
    worker = fakeWorker(f.server.url);
    const res = await predict({ inputs: ['xyz', 'x'] }, `/v1/models/${MODEL}/versions/1:predict`);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(lengths(res.json<Body>().outputs), [3, 1]);
    const named = await predict({ inputs: { text: ['abcd'] } }, `/v1/models/${MODEL}/labels/stable:predict`);
    assert.deepEqual(lengths(named.json<Body>().outputs), [4]);
  });

  it('reads the body as JSON whatever the Content-Type, or with none (curl -d, requests.post(data=...))', async () => {
    worker = fakeWorker(f.server.url);
    const body = JSON.stringify({ instances: ['abc'] });
    const headerSets: Record<string, string>[] = [
      { 'content-type': 'application/x-www-form-urlencoded' },
      {},
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/octet-stream' },
      { 'content-type': 'multipart/form-data; boundary=x' },
      { 'content-type': 'json' }, // not even a media type
      { 'content-type': 'application/json; charset=utf-8' },
    ];
    for (const headers of headerSets) {
      const res = await predictRaw(body, headers);
      assert.equal(res.statusCode, 200, `${JSON.stringify(headers)}: ${res.body}`);
      assert.deepEqual(lengths(res.json<Body>().predictions), [3]);
    }
    // Only there: the native routes still refuse a form body.
    const native = await f.app.inject({ method: 'POST', url: '/v1/jobs', payload: `{"model":"${MODEL}","input":"a"}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(native.statusCode, 415);
    assert.equal(native.json<{ error: { code: string } }>().error.code, 'unsupported_media_type');
  });

  it('an empty, malformed or over-limit body → 400 / 413 {"error"}, storing nothing', async () => {
    assert.equal(tfError(await predictRaw('', {}), 400), 'JSON Parse error: The document is empty');
    assert.equal(tfError(await predictRaw('', { 'content-type': 'application/x-www-form-urlencoded' }), 400), 'JSON Parse error: The document is empty');
    assert.match(tfError(await predictRaw('instances=a', { 'content-type': 'application/x-www-form-urlencoded' }), 400), /^JSON Parse error/);
    assert.match(tfError(await predictRaw('["a"]'), 400), /^body: /);
    assert.match(tfError(await predictRaw(JSON.stringify({ instances: ['x'.repeat(9000)] })), 413), /larger than 8192 bytes/);
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('NaN, Infinity and -Infinity parse: a float32 model takes them', async () => {
    await f.announce([1], 'AVAILABLE', undefined, FLOATS);
    // No worker runs "floats": the call ends at max_wait_s, with its job stored.
    const res = await predictRaw('{"instances": [[NaN, Infinity, -Infinity]]}', { 'content-type': 'application/x-www-form-urlencoded' }, `/v1/models/${FLOATS}:predict`);
    assert.match(tfError(res, 504), /still queued/);
    const entries = await f.redis.xrangeBuffer(keys.requests(FLOATS, 1), '-', '+');
    assert.equal(entries.length, 1);
    const fields = entries[0]?.[1] ?? [];
    const input = decode<number[]>(fields[3] ?? Buffer.alloc(0));
    assert.ok(Number.isNaN(input[0]));
    assert.deepEqual(input.slice(1), [Infinity, -Infinity]);
    // A text model's string input does not take a number, NaN or not: a type error, not a parse error.
    assert.match(tfError(await predictRaw('{"instances": [NaN]}'), 400), /^Failed to process element: 0 of 'instances' list\. Error: .*got a number/);
  });

  it('signature_name other than serving_default → 400', async () => {
    assert.equal(tfError(await predict({ signature_name: 'predict_images', instances: ['a'] }), 400), 'Serving signature name: "predict_images" not found in signature def');
    assert.match(tfError(await predict({ signature_name: 3, instances: ['a'] }), 400), /signature_name/);
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('row / columnar rules → 400 with TF Serving\'s messages, storing nothing', async () => {
    const cases: [unknown, RegExp][] = [
      [{}, /^Missing 'inputs' or 'instances' key$/],
      [{ instances: ['a'], inputs: ['a'] }, /only one of 'inputs' or 'instances'/],
      [{ instances: [] }, /^No values in 'instances' array$/],
      [{ inputs: [] }, /^No values in 'inputs' list$/],
      [{ instances: ['a', { text: 'b' }] }, /^Expecting value\/list but got object at item 1/],
      [{ instances: [{ txt: 'a' }] }, /does not have named input: txt/],
      [{ inputs: { txt: ['a'] } }, /^Missing named input: text in 'inputs' object\.$/],
      [{ instances: ['a'], foo: 1 }, /unknown field "foo"/],
      [{ instances: ['ok', 5] }, /^Failed to process element: 1 of 'instances' list\. Error: /],
    ];
    for (const [body, message] of cases) assert.match(tfError(await predict(body), 400), message, JSON.stringify(body));
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('{"b64"} text that is not standard base64 or not UTF-8 → 400 naming the instance (never an all-zero embedding)', async () => {
    for (const [b64, message] of [
      ['!!', /instances\[1\]\.b64": not standard base64/],
      ['abcde', /instances\[1\]\.b64": not standard base64/], // 4n + 1 characters
      ['ab=c', /instances\[1\]\.b64": not standard base64/],
      [Buffer.from([0xff, 0xfe, 0x41]).toString('base64'), /instances\[1\]\.b64": the decoded bytes are not valid UTF-8/],
    ] as const) {
      assert.match(tfError(await predict({ instances: ['fine', { b64 }] }), 400), message);
    }
    assert.match(tfError(await predict({ instances: [{ b64: '!!' }] }), 400), /instances\[0\]\.b64/);
    assert.match(tfError(await predict({ inputs: [{ b64: '!!' }] }), 400), /inputs\[0\]\.b64/);
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('unknown model, version or label → 404 {"error"}', async () => {
    assert.match(tfError(await predict({ instances: ['a'] }, '/v1/models/nope:predict'), 404), /nope/);
    assert.match(tfError(await predict({ instances: ['a'] }, `/v1/models/${MODEL}/versions/7:predict`), 404), /version 7/);
    assert.match(tfError(await predict({ instances: ['a'] }, `/v1/models/${MODEL}/labels/beta:predict`), 404), /label "beta"/);
  });

  it('a full queue → 429 and no live worker → 503, both {"error"} with Retry-After', async () => {
    const full = await predict({ instances: ['a', 'b', 'c', 'd', 'e', 'f'] });
    assert.match(tfError(full, 429), /queue/);
    assert.equal(full.headers['retry-after'], '1');
    await f.announce([1], 'LOADING');
    const loading = await predict({ instances: ['a'] });
    assert.match(tfError(loading, 503), /is loading/);
    assert.equal(loading.headers['retry-after'], '1');
  });

  it('a failed instance → 500 {"error"}; no worker → 504 after max_wait_s', async () => {
    worker = fakeWorker(f.server.url);
    assert.match(tfError(await predict({ instances: ['fine', 'fail me'] }), 500), /model threw/);
    await worker.stop();
    worker = undefined;
    assert.match(tfError(await predict({ instances: ['waiting'] }), 504), /still queued/);
    assert.equal(f.events.watchedJobs, 0);
  });
});
