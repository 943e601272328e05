import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { decodeBytesElements, encodeBytesElements } from '../src/binary-tensor-data.ts';
import { fakeWorker, MODEL, startFixture, storedKeys, type Fixture } from './fixture.ts';

type InferReply = {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: number[]; data?: number[]; parameters?: { binary_data_size: number } }[];
};

describe('routes/v2: Open Inference Protocol v2 REST', () => {
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

  const infer = (body: unknown, path = `/v2/models/${MODEL}/infer`) => f.app.inject({ method: 'POST', url: path, payload: body as Record<string, unknown> });
  const textInput = (data: unknown[], shape = [data.length]) => ({ name: 'text', datatype: 'BYTES', shape, data });

  it('GET /v2 names the server and the binary_tensor_data extension; live is 200', async () => {
    const meta = await f.app.inject({ method: 'GET', url: '/v2' });
    assert.equal(meta.statusCode, 200);
    const body = meta.json<{ name: string; version: string; extensions: string[] }>();
    assert.equal(body.name, 'inferline');
    assert.ok(body.extensions.includes('binary_tensor_data'));
    assert.deepEqual((await f.app.inject({ method: 'GET', url: '/v2/health/live' })).json(), { live: true });
  });

  it('model metadata has OIP datatypes with the batch dimension -1 first; ready follows the workers', async () => {
    for (const url of [`/v2/models/${MODEL}`, `/v2/models/${MODEL}/versions/1`]) {
      const res = await f.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), {
        name: MODEL,
        versions: ['1'],
        platform: 'embedding-bag',
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [-1] }],
        outputs: [{ name: 'embedding', datatype: 'FP32', shape: [-1, 100] }],
      });
    }
    assert.deepEqual((await f.app.inject({ method: 'GET', url: `/v2/models/${MODEL}/ready` })).json(), { name: MODEL, ready: true });
    await f.announce([1], 'LOADING');
    const loading = await f.app.inject({ method: 'GET', url: `/v2/models/${MODEL}/versions/1/ready` });
    assert.equal(loading.statusCode, 503);
    assert.equal(loading.headers['retry-after'], '1');
    assert.match(loading.json<{ error: string }>().error, /is loading/);
    const notReady = await f.app.inject({ method: 'GET', url: '/v2/health/ready' });
    assert.equal(notReady.statusCode, 503);
    assert.match(notReady.json<{ error: string }>().error, /glove-embed/);
  });

  it('unknown model or version → 404 {"error": "<message>"}', async () => {
    for (const [method, url] of [
      ['GET', '/v2/models/nope'],
      ['GET', `/v2/models/${MODEL}/versions/7`],
      ['GET', `/v2/models/${MODEL}/versions/x/ready`],
      ['POST', '/v2/models/nope/infer'],
      ['POST', `/v2/models/${MODEL}/versions/9/infer`],
    ] as const) {
      const res = await f.app.inject({ method, url, ...(method === 'POST' ? { payload: { inputs: [textInput(['a'])] } } : {}) });
      assert.equal(res.statusCode, 404, `${url}: ${res.body}`);
      const body = res.json<{ error: unknown }>();
      assert.equal(typeof body.error, 'string', res.body);
    }
    const route = await f.app.inject({ method: 'GET', url: '/v2/nothing' });
    assert.equal(route.statusCode, 404);
    assert.deepEqual(route.json(), { error: 'no route GET /v2/nothing' });
    // The model is looked up before the body is read.
    const malformed = await infer({ inputs: [] }, '/v2/models/nope/infer');
    assert.equal(malformed.statusCode, 404, malformed.body);
  });

  it('JSON infer: one job per row, outputs in row order, id echoed, FP32 [N, 100]', async () => {
    worker = fakeWorker(f.server.url);
    const res = await infer({ id: 'req-7', inputs: [textInput(['a', 'abcd', 'ab'])] });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json<InferReply>();
    assert.equal(body.id, 'req-7');
    assert.equal(body.model_name, MODEL);
    assert.equal(body.model_version, '1');
    const [out] = body.outputs;
    assert.equal(out?.name, 'embedding');
    assert.equal(out?.datatype, 'FP32');
    assert.deepEqual(out?.shape, [3, 100]);
    assert.deepEqual([0, 100, 200].map((i) => Math.round((out?.data?.[i] ?? 0) * 100)), [1, 4, 2]);
  });

  it('binary request without a content type, binary output: the framing of the binary tensor data extension', async () => {
    worker = fakeWorker(f.server.url);
    const tensor = encodeBytesElements(['abc', 'abcdef']);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [2, 1], parameters: { binary_data_size: tensor.length } }],
        outputs: [{ name: 'embedding', parameters: { binary_data: true } }],
      }),
    );
    const res = await f.app.inject({
      method: 'POST',
      url: `/v2/models/${MODEL}/infer`,
      headers: { 'inference-header-content-length': String(header.length) },
      payload: Buffer.concat([header, tensor]),
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    const jsonLength = Number(res.headers['inference-header-content-length']);
    const raw = res.rawPayload;
    const reply = JSON.parse(raw.subarray(0, jsonLength).toString()) as InferReply;
    assert.deepEqual(reply.outputs[0], { name: 'embedding', datatype: 'FP32', shape: [2, 100], parameters: { binary_data_size: 800 } });
    const floats = raw.subarray(jsonLength);
    assert.equal(floats.length, 800);
    assert.equal(floats.readFloatLE(0), Math.fround(0.03));
    assert.equal(floats.readFloatLE(400), Math.fround(0.06));
    assert.equal(decodeBytesElements(tensor, 't').length, 2);
  });

  it('bad shape, datatype, name, element count, binary sizes or body → 400 {"error"}, nothing stored', async () => {
    const cases: [unknown, RegExp][] = [
      [{ inputs: [{ ...textInput(['a']), datatype: 'FP32', data: [1] }] }, /datatype FP32, expected BYTES/],
      [{ inputs: [textInput(['a', 'b'], [2, 2])] }, /shape \[2, 2\], expected \[N\] or \[N, 1\]/],
      [{ inputs: [textInput(['a', 'b'], [3])] }, /holds 3 elements, the data has 2/],
      [{ inputs: [textInput([], [0])] }, /at least one row/],
      [{ inputs: [{ ...textInput(['a']), name: 'image' }] }, /unknown input "image"/],
      [{ inputs: [textInput(['a']), textInput(['b'])] }, /takes one input/],
      [{ inputs: [textInput([42])] }, /expected text/],
      [{ inputs: [textInput(['a'])], outputs: [{ name: 'logits' }] }, /unknown output "logits"/],
      [{ inputs: [{ ...textInput(['a']), parameters: { binary_data_size: 4 } }] }, /either "data" or parameters.binary_data_size/],
      [{ inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 9 } }] }, /runs past/],
      [{ inputs: [textInput(['a'])], extra: 1 }, /inference request/],
      [{ inputs: [] }, /inference request\.inputs/],
    ];
    for (const [body, message] of cases) {
      const res = await infer(body);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
      assert.match(res.json<{ error: string }>().error, message);
    }
    const notJson = await f.app.inject({ method: 'POST', url: `/v2/models/${MODEL}/infer`, headers: { 'content-type': 'application/json' }, payload: '{"inputs": [' });
    assert.equal(notJson.statusCode, 400);
    assert.match(notJson.json<{ error: string }>().error, /not valid JSON/);
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('a full queue → 429 + Retry-After; a wait that runs out → 504, the jobs stay queued', async () => {
    const slow = await infer({ inputs: [textInput(['no worker reads this'])] });
    assert.equal(slow.statusCode, 504, slow.body);
    assert.match(slow.json<{ error: string }>().error, /still queued/);
    const full = await startFixture({ maxQueueSize: 1, server: f.server });
    try {
      const res = await full.app.inject({ method: 'POST', url: `/v2/models/${MODEL}/infer`, payload: { inputs: [textInput(['a', 'b'])] } });
      assert.equal(res.statusCode, 429, res.body);
      assert.ok(res.headers['retry-after']);
      assert.equal(typeof res.json<{ error: unknown }>().error, 'string');
    } finally {
      await full.close();
    }
  });
});
