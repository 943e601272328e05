import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { freePort } from '../packages/cli/src/redis-server.ts';
import { encodeBytesElements } from '../packages/gateway/src/binary-tensor-data.ts';
import { TEST_IMAGES_DIR } from './harness/fetch-test-data.ts';
import { callGateway } from './harness/gateway-http.ts';
import { connectGrpcClients, grpcError, unaryCall, type GrpcClients } from './harness/grpc-clients.ts';
import { ROOT, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';

/**
 * The compatibility endpoints against the real stack (gateway + worker processes, real Redis, real
 * glove-embed, coco-detect and image-classify): OIP v2 REST (JSON and binary), OIP gRPC, TF Serving
 * gRPC. Every answer must equal what the native `POST /v1/jobs` answers for the same input.
 */

const TOLERANCE = 1e-6;

interface Job {
  id: string;
  status: string;
  output?: Record<string, unknown>;
}

interface OipOutput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: { binary_data_size?: number };
}

/** Assert two number lists are equal within {@link TOLERANCE}. */
function assertClose(actual: readonly number[], expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  actual.forEach((value, i) => assert.ok(Math.abs(value - (expected[i] ?? Number.NaN)) <= TOLERANCE, `${what}[${i}]: ${value} vs ${expected[i]}`));
}

/** Deep equality with numbers within {@link TOLERANCE} (detections: labels, scores, boxes). */
function assertDeepClose(actual: unknown, expected: unknown, what: string): void {
  if (typeof expected === 'number') {
    assert.equal(typeof actual, 'number', what);
    assert.ok(Math.abs((actual as number) - expected) <= TOLERANCE, `${what}: ${String(actual)} vs ${expected}`);
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), what);
    assert.equal(actual.length, expected.length, `${what}: length`);
    expected.forEach((item, i) => assertDeepClose((actual as unknown[])[i], item, `${what}[${i}]`));
  } else if (typeof expected === 'object' && expected !== null) {
    assert.deepEqual(Object.keys(actual as object).sort(), Object.keys(expected).sort(), what);
    for (const [key, value] of Object.entries(expected)) assertDeepClose((actual as Record<string, unknown>)[key], value, `${what}.${key}`);
  } else assert.equal(actual, expected, what);
}

/** Floats of a little-endian FP32 buffer. */
function floats(bytes: Buffer): number[] {
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}

/** POST a raw body with only the headers given (no content type unless named), answer status, headers and body. */
function postRaw(url: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ method: 'POST', hostname, port, path, headers: { ...headers, 'content-length': String(body.length) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('compatibility endpoints (OIP v2 REST + gRPC, TF Serving gRPC) through the real stack', () => {
  let redis: TestRedis;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  let grpc: GrpcClients;
  const texts = loadMobyDickParagraphs().slice(0, 5);
  let astronaut: Buffer;
  let coffee: Buffer;

  before(async () => {
    redis = await startTestRedis();
    const grpcPort = await freePort();
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: join(ROOT, 'models') };
    gateway = await startGatewayProcess({ ...env, GRPC_PORT: String(grpcPort) });
    // Every model of the repository, so that the server is ready (/v2/health/ready needs them all).
    worker = await startWorkerProcess(env);
    grpc = connectGrpcClients(`127.0.0.1:${grpcPort}`);
    astronaut = await readFile(join(TEST_IMAGES_DIR, 'astronaut.png'));
    coffee = await readFile(join(TEST_IMAGES_DIR, 'coffee.png'));
  });

  after(async () => {
    grpc?.close();
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  /** The native API's output for one input. */
  async function native(model: string, input: unknown): Promise<Record<string, unknown>> {
    const response = await fetch(`${gateway.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, input }) });
    let job = (await response.json()) as Job;
    while (job.status === 'queued' || job.status === 'running') job = (await (await fetch(`${gateway.url}/v1/jobs/${job.id}?wait=60`)).json()) as Job;
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    return job.output ?? {};
  }
  const nativeEmbeddings = (inputs: string[]) => Promise.all(inputs.map(async (text) => (await native('glove-embed', text)).embedding as number[]));
  const b64 = (bytes: Buffer) => ({ b64: bytes.toString('base64') });

  test('OIP REST JSON: glove-embed rows equal the native embeddings; id echoed; metadata and readiness', async () => {
    const { status: code, json } = await callGateway<{ id: string; model_version: string; outputs: OipOutput[] }>(gateway.url, 'POST', '/v2/models/glove-embed/infer', {
      id: 'moby-1',
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [texts.length, 1], data: texts.map((t) => [t]) }],
    });
    assert.equal(code, 200, JSON.stringify(json));
    assert.equal(json.id, 'moby-1');
    const [embedding] = json.outputs;
    assert.deepEqual(embedding?.shape, [texts.length, 100]);
    assertClose(embedding?.data as number[], (await nativeEmbeddings(texts)).flat(), 'embedding');

    const metadata = await callGateway<{ inputs: unknown; outputs: unknown }>(gateway.url, 'GET', '/v2/models/coco-detect');
    assert.deepEqual(metadata.json.outputs, [{ name: 'detections', datatype: 'BYTES', shape: [-1] }]);
    assert.equal((await callGateway(gateway.url, 'GET', '/v2/models/image-classify/versions/1/ready')).status, 200);
    assert.equal((await callGateway(gateway.url, 'GET', '/v2/health/ready')).status, 200);
  });

  test('OIP REST binary: inputs and outputs framed as the extension documents, with no content type or octet-stream', async () => {
    const rows = texts.slice(0, 3);
    const tensor = encodeBytesElements(rows);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [rows.length], parameters: { binary_data_size: tensor.length } }],
        parameters: { binary_data_output: true },
      }),
    );
    const expected = (await nativeEmbeddings(rows)).flat();
    for (const contentType of [undefined, 'application/octet-stream']) {
      const reply = await postRaw(
        gateway.url,
        '/v2/models/glove-embed/infer',
        { 'inference-header-content-length': String(header.length), ...(contentType ? { 'content-type': contentType } : {}) },
        Buffer.concat([header, tensor]),
      );
      assert.equal(reply.status, 200, reply.body.toString());
      const jsonLength = Number(reply.headers['inference-header-content-length']);
      const json = JSON.parse(reply.body.subarray(0, jsonLength).toString()) as { outputs: OipOutput[] };
      assert.deepEqual(json.outputs, [{ name: 'embedding', datatype: 'FP32', shape: [3, 100], parameters: { binary_data_size: 1200 } }]);
      assert.equal(reply.body.length, jsonLength + 1200);
      assertClose(floats(reply.body.subarray(jsonLength)), expected, `embedding (${contentType ?? 'no content type'})`);
    }
  });

  test('OIP REST images: coco-detect on binary PNG bytes, image-classify on base64 JSON; outputs equal the native ones', async () => {
    const photos = encodeBytesElements([astronaut, coffee]);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'image', datatype: 'BYTES', shape: [2, 1], parameters: { binary_data_size: photos.length } }] }));
    const reply = await postRaw(gateway.url, '/v2/models/coco-detect/infer', { 'inference-header-content-length': String(header.length) }, Buffer.concat([header, photos]));
    assert.equal(reply.status, 200, reply.body.toString());
    const detections = (JSON.parse(reply.body.toString()) as { outputs: OipOutput[] }).outputs[0];
    assert.equal(detections?.datatype, 'BYTES');
    assert.deepEqual(detections?.shape, [2]);
    const perPhoto = (detections?.data as string[]).map((text) => JSON.parse(text) as unknown);
    assertDeepClose(perPhoto, [(await native('coco-detect', b64(astronaut))).detections, (await native('coco-detect', b64(coffee))).detections], 'detections');
    assert.ok((perPhoto[0] as { label: string }[]).some((d) => d.label === 'person'));

    const classified = await callGateway<{ outputs: OipOutput[] }>(gateway.url, 'POST', '/v2/models/image-classify/infer', {
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [coffee.toString('base64')] }],
      outputs: [{ name: 'label' }, { name: 'probabilities' }],
    });
    assert.equal(classified.status, 200, JSON.stringify(classified.json));
    const expected = await native('image-classify', b64(coffee));
    const [label, probabilities] = classified.json.outputs;
    assert.deepEqual(label, { name: 'label', datatype: 'BYTES', shape: [1], data: [expected.label] });
    assert.deepEqual(probabilities?.shape, [1, 5]);
    assertClose(probabilities?.data as number[], expected.probabilities as number[], 'probabilities');
  });

  test('OIP REST errors: 404 unknown model, 400 bad datatype or shape, 400 a body that is no image, as {"error": "<message>"}', async () => {
    const cases: [string, unknown, number, RegExp][] = [
      ['/v2/models/no-such-model/infer', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['x'] }] }, 404, /no-such-model/],
      ['/v2/models/glove-embed/infer', { inputs: [{ name: 'text', datatype: 'FP32', shape: [1], data: [1] }] }, 400, /datatype FP32, expected BYTES/],
      ['/v2/models/glove-embed/infer', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 2], data: ['x', 'y'] }] }, 400, /shape \[1, 2\]/],
      ['/v2/models/coco-detect/infer', { inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [Buffer.from('not an image').toString('base64')] }] }, 400, /not a readable image/],
    ];
    for (const [path, body, code, message] of cases) {
      const reply = await callGateway<{ error: unknown }>(gateway.url, 'POST', path, body);
      assert.equal(reply.status, code, JSON.stringify(reply.json));
      assert.equal(typeof reply.json.error, 'string');
      assert.match(reply.json.error as string, message);
    }
  });

  test('OIP gRPC ModelInfer: raw_input_contents for glove-embed, bytes_contents photos for coco-detect; equal the native outputs', async () => {
    const rows = texts.slice(1, 4);
    const raw = await unaryCall<{ outputs: OipOutput[]; raw_output_contents: Buffer[] }>(grpc.inference, 'ModelInfer', {
      model_name: 'glove-embed',
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [rows.length] }],
      raw_input_contents: [encodeBytesElements(rows)],
    });
    assert.deepEqual(raw.outputs.map((o) => [o.name, o.datatype, o.shape]), [['embedding', 'FP32', [3, 100]]]);
    assertClose(floats(raw.raw_output_contents[0] ?? Buffer.alloc(0)), (await nativeEmbeddings(rows)).flat(), 'embedding');

    const typed = await unaryCall<{ outputs: (OipOutput & { contents: { bytes_contents: Buffer[] } })[] }>(grpc.inference, 'ModelInfer', {
      model_name: 'coco-detect',
      model_version: '1',
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [coffee] } }],
    });
    const detections = typed.outputs[0]?.contents.bytes_contents.map((bytes) => JSON.parse(bytes.toString()) as unknown);
    assertDeepClose(detections, [(await native('coco-detect', b64(coffee))).detections], 'detections');

    const unknown = await grpcError(unaryCall(grpc.inference, 'ModelInfer', { model_name: 'no-such-model', inputs: [] }));
    assert.equal(unknown.code, status.NOT_FOUND);
    const badShape = await grpcError(
      unaryCall(grpc.inference, 'ModelInfer', { model_name: 'glove-embed', inputs: [{ name: 'text', datatype: 'BYTES', shape: [2] }], raw_input_contents: [encodeBytesElements(['one'])] }),
    );
    assert.equal(badShape.code, status.INVALID_ARGUMENT);
    assert.match(badShape.details, /holds 2 elements, the data has 1/);
  });

  test('TF Serving gRPC Predict: glove-embed string_val and an image-classify photo equal the native outputs', async () => {
    const rows = texts.slice(0, 2);
    const embed = await unaryCall<{ outputs: Record<string, { dtype: string; tensor_shape: { dim: { size: number }[] }; float_val: number[] }> }>(grpc.prediction, 'Predict', {
      model_spec: { name: 'glove-embed' },
      inputs: { text: { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: rows.length }] }, string_val: rows.map((t) => Buffer.from(t)) } },
    });
    assert.deepEqual(embed.outputs.embedding?.tensor_shape.dim.map((d) => d.size), [2, 100]);
    assertClose(embed.outputs.embedding?.float_val ?? [], (await nativeEmbeddings(rows)).flat(), 'embedding');

    const classify = await unaryCall<{ outputs: Record<string, { dtype: string; string_val: Buffer[]; float_val: number[] }> }>(grpc.prediction, 'Predict', {
      model_spec: { name: 'image-classify', version: { value: 1 } },
      inputs: { image: { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: 1 }] }, string_val: [astronaut] } },
      output_filter: ['label', 'probabilities'],
    });
    const expected = await native('image-classify', b64(astronaut));
    assert.deepEqual(Object.keys(classify.outputs).sort(), ['label', 'probabilities']);
    assert.equal(classify.outputs.label?.string_val[0]?.toString(), expected.label);
    assertClose(classify.outputs.probabilities?.float_val ?? [], expected.probabilities as number[], 'probabilities');

    const wrongDtype = await grpcError(
      unaryCall(grpc.prediction, 'Predict', { model_spec: { name: 'glove-embed' }, inputs: { text: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: 1 }] }, float_val: [1] } } }),
    );
    assert.equal(wrongDtype.code, status.INVALID_ARGUMENT);
    const status_ = await unaryCall<{ model_version_status: { version: number; state: string }[] }>(grpc.model, 'GetModelStatus', { model_spec: { name: 'coco-detect' } });
    assert.deepEqual(status_.model_version_status.map((s) => [s.version, s.state]), [[1, 'AVAILABLE']]);
  });
});
