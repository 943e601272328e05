import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { loadApiKeys } from '@inferline/shared';
import { connectGrpcClients, grpcError, unaryCall, type GrpcClients } from '../../../test/harness/grpc-clients.ts';
import { encodeBytesElements } from '../src/binary-tensor-data.ts';
import { protoRoot } from '../src/grpc/protos.ts';
import { startGrpcServer, type RunningGrpcServer } from '../src/grpc/server.ts';
import { fakeWorker, MODEL, silentLogger, startFixture, storedKeys, type Fixture } from './fixture.ts';

interface InferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: number[]; contents: { fp32_contents: number[] } | null }[];
  raw_output_contents: Buffer[];
}

interface PredictResponse {
  model_spec: { name: string; version: { value: number } };
  outputs: Record<string, { dtype: string; tensor_shape: { dim: { size: number }[] }; float_val: number[] }>;
}

/** Start the gRPC server on a free port over a fixture's connections. */
async function serve(f: Fixture, shutdown: AbortSignal): Promise<{ server: RunningGrpcServer; clients: GrpcClients }> {
  const server = await startGrpcServer({ redis: f.appRedis, events: f.events, models: f.models, metrics: f.app.metrics, settings: f.settings, logger: silentLogger, shutdown, apiKeys: loadApiKeys(f.settings) }, '127.0.0.1', 0);
  return { server, clients: connectGrpcClients(`127.0.0.1:${server.port}`) };
}

describe('grpc: inference.GRPCInferenceService and TF Serving services over a real Redis', () => {
  let f: Fixture;
  let server: RunningGrpcServer;
  let clients: GrpcClients;
  let worker: { stop(): Promise<void> } | undefined;
  const shutdown = new AbortController();
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 1 } });
    ({ server, clients } = await serve(f, shutdown.signal));
  });
  after(async () => {
    await worker?.stop();
    clients.close();
    shutdown.abort();
    await server.close(1_000);
    await f.close();
  });
  beforeEach(async () => {
    await worker?.stop();
    worker = undefined;
    await f.reset();
  });

  const textInput = (texts: string[]) => ({ name: 'text', datatype: 'BYTES', shape: [texts.length], contents: { bytes_contents: texts.map((t) => Buffer.from(t)) } });

  it('ServerLive, ServerReady, ServerMetadata, ModelMetadata, ModelReady', async () => {
    assert.deepEqual(await unaryCall(clients.inference, 'ServerLive', {}), { live: true });
    assert.deepEqual(await unaryCall(clients.inference, 'ServerReady', {}), { ready: true });
    const meta = await unaryCall<{ name: string; extensions: string[] }>(clients.inference, 'ServerMetadata', {});
    assert.equal(meta.name, 'inferline');
    const model = await unaryCall(clients.inference, 'ModelMetadata', { name: MODEL, version: '' });
    assert.deepEqual(model, {
      name: MODEL,
      versions: ['1'],
      platform: 'embedding-bag',
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [-1] }],
      outputs: [{ name: 'embedding', datatype: 'FP32', shape: [-1, 100] }],
    });
    assert.deepEqual(await unaryCall(clients.inference, 'ModelReady', { name: MODEL, version: '1' }), { ready: true });
    await f.announce([1], 'LOADING');
    assert.deepEqual(await unaryCall(clients.inference, 'ModelReady', { name: MODEL, version: '' }), { ready: false });
    assert.deepEqual(await unaryCall(clients.inference, 'ServerReady', {}), { ready: false });
  });

  it('ModelInfer with typed contents answers typed contents; with raw_input_contents, raw_output_contents', async () => {
    worker = fakeWorker(f.server.url);
    const typed = await unaryCall<InferResponse>(clients.inference, 'ModelInfer', { model_name: MODEL, id: 'r1', inputs: [textInput(['ab', 'abcde'])] });
    assert.equal(typed.id, 'r1');
    assert.equal(typed.model_version, '1');
    const [out] = typed.outputs;
    assert.deepEqual(out?.shape, [2, 100]);
    assert.equal(out?.contents?.fp32_contents[0], Math.fround(0.02));
    assert.equal(out?.contents?.fp32_contents[100], Math.fround(0.05));
    assert.deepEqual(typed.raw_output_contents, []);

    const raw = await unaryCall<InferResponse>(clients.inference, 'ModelInfer', {
      model_name: MODEL,
      model_version: '1',
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 1] }],
      outputs: [{ name: 'embedding' }],
      raw_input_contents: [encodeBytesElements(['abc'])],
    });
    assert.equal(raw.outputs[0]?.contents, null);
    assert.equal(raw.raw_output_contents[0]?.length, 400);
    assert.equal(raw.raw_output_contents[0]?.readFloatLE(396), Math.fround(0.03));
  });

  it('ModelInfer errors: NOT_FOUND, INVALID_ARGUMENT, nothing stored', async () => {
    const cases: [unknown, status, RegExp][] = [
      [{ model_name: 'nope', inputs: [textInput(['a'])] }, status.NOT_FOUND, /nope/],
      [{ model_name: MODEL, model_version: '4', inputs: [textInput(['a'])] }, status.NOT_FOUND, /version/],
      [{ model_name: MODEL, inputs: [{ ...textInput(['a']), datatype: 'FP32', contents: { fp32_contents: [1] } }] }, status.INVALID_ARGUMENT, /datatype FP32, expected BYTES/],
      [{ model_name: MODEL, inputs: [{ ...textInput(['a']), shape: [2] }] }, status.INVALID_ARGUMENT, /holds 2 elements/],
      [{ model_name: MODEL, inputs: [{ ...textInput(['a']), shape: [1, 3] }] }, status.INVALID_ARGUMENT, /shape \[1, 3\]/],
      [{ model_name: MODEL, inputs: [textInput(['a'])], outputs: [{ name: 'x' }] }, status.INVALID_ARGUMENT, /unknown output "x"/],
      [{ model_name: MODEL, inputs: [{ name: 'text', datatype: 'BYTES', shape: [1] }], raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])] }, status.INVALID_ARGUMENT, /runs past the end/],
      [{ model_name: MODEL, inputs: [textInput(['a'])], raw_input_contents: [Buffer.alloc(0), Buffer.alloc(0)] }, status.INVALID_ARGUMENT, /raw_input_contents has 2 entries/],
    ];
    for (const [request, code, details] of cases) {
      const error = await grpcError(unaryCall(clients.inference, 'ModelInfer', request));
      assert.equal(error.code, code, `${JSON.stringify(request)}: ${error.details}`);
      assert.match(error.details, details);
    }
    assert.deepEqual(await storedKeys(f.redis), []);
  });

  it('a wait that runs out → DEADLINE_EXCEEDED from the server (max_wait_s), the job stays queued', async () => {
    const error = await grpcError(unaryCall(clients.inference, 'ModelInfer', { model_name: MODEL, inputs: [textInput(['never read'])] }, 30_000));
    assert.equal(error.code, status.DEADLINE_EXCEEDED);
    assert.match(error.details, /still queued when the wait ran out/);
    assert.equal((await storedKeys(f.redis)).length > 0, true);
  });

  it('a full queue → RESOURCE_EXHAUSTED with a retry-after trailer', async () => {
    const small = await startFixture({ maxQueueSize: 1, server: f.server, settings: { max_wait_s: 1 } });
    const stop = new AbortController();
    const grpc = await serve(small, stop.signal);
    try {
      const error = await grpcError(unaryCall(grpc.clients.inference, 'ModelInfer', { model_name: MODEL, inputs: [textInput(['a', 'b'])] }));
      assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.details);
      assert.ok(error.metadata.get('retry-after').length > 0);
      const unavailable = await grpcError(unaryCall(grpc.clients.prediction, 'Predict', { model_spec: { name: MODEL, version: { value: 3 } }, inputs: {} }));
      assert.equal(unavailable.code, status.NOT_FOUND);
    } finally {
      grpc.clients.close();
      stop.abort();
      await grpc.server.close(1_000);
      await small.close();
    }
  });

  it('TF Serving Predict: string_val rows → DT_FLOAT [N, 100]; output_filter; a label selects its version', async () => {
    worker = fakeWorker(f.server.url);
    const text = (texts: string[]) => ({ dtype: 'DT_STRING', tensor_shape: { dim: [{ size: texts.length }] }, string_val: texts.map((t) => Buffer.from(t)) });
    const response = await unaryCall<PredictResponse>(clients.prediction, 'Predict', {
      model_spec: { name: MODEL, signature_name: 'serving_default' },
      inputs: { text: text(['abcd', 'a']) },
      output_filter: ['embedding'],
    });
    assert.equal(response.model_spec.version.value, 1);
    const embedding = response.outputs.embedding;
    assert.equal(embedding?.dtype, 'DT_FLOAT');
    assert.deepEqual(embedding?.tensor_shape.dim.map((d) => d.size), [2, 100]);
    assert.equal(embedding?.float_val[0], Math.fround(0.04));
    assert.equal(embedding?.float_val[100], Math.fround(0.01));

    for (const [request, code, details] of [
      [{ model_spec: { name: 'nope' }, inputs: { text: text(['a']) } }, status.NOT_FOUND, /nope/],
      [{ model_spec: { name: MODEL, version_label: 'canary' }, inputs: { text: text(['a']) } }, status.NOT_FOUND, /canary/],
      [{ model_spec: { name: MODEL, signature_name: 'other' }, inputs: { text: text(['a']) } }, status.INVALID_ARGUMENT, /signature "other" not found/],
      [{ model_spec: { name: MODEL }, inputs: { text: { ...text(['a']), dtype: 'DT_FLOAT' } } }, status.INVALID_ARGUMENT, /dtype DT_FLOAT, expected DT_STRING/],
      [{ model_spec: { name: MODEL }, inputs: { words: text(['a']) } }, status.INVALID_ARGUMENT, /unknown input "words"/],
      [{ model_spec: { name: MODEL }, inputs: { text: text(['a']) }, output_filter: ['scores'] }, status.INVALID_ARGUMENT, /unknown output "scores"/],
      [{ model_spec: { name: MODEL }, inputs: { text: { dtype: 'DT_STRING', string_val: [Buffer.from('a')] } } }, status.INVALID_ARGUMENT, /tensor_shape is required/],
    ] as [unknown, status, RegExp][]) {
      const error = await grpcError(unaryCall(clients.prediction, 'Predict', request));
      assert.equal(error.code, code, `${JSON.stringify(request)}: ${error.details}`);
      assert.match(error.details, details);
    }
  });

  it('TF Serving GetModelMetadata: the signature_def as a SignatureDefMap in an Any; GetModelStatus', async () => {
    const response = await unaryCall<{ model_spec: { name: string; version: { value: number } }; metadata: Record<string, { type_url: string; value: Buffer }> }>(
      clients.prediction,
      'GetModelMetadata',
      { model_spec: { name: MODEL }, metadata_field: ['signature_def'] },
    );
    assert.equal(response.model_spec.version.value, 1);
    const any = response.metadata.signature_def;
    assert.equal(any?.type_url, 'type.googleapis.com/tensorflow.serving.SignatureDefMap');
    const type = protoRoot().lookupType('tensorflow.serving.SignatureDefMap');
    const map = type.toObject(type.decode(any?.value ?? Buffer.alloc(0)), { enums: String, longs: Number }) as {
      signature_def: Record<string, { inputs: Record<string, { dtype: string; tensor_shape: { dim: { size: number }[] } }>; method_name: string; outputs: Record<string, { dtype: string }> }>;
    };
    const signature = map.signature_def.serving_default;
    assert.equal(signature?.method_name, 'tensorflow/serving/predict');
    assert.equal(signature?.inputs.text?.dtype, 'DT_STRING');
    assert.deepEqual(signature?.inputs.text?.tensor_shape.dim.map((d) => d.size), [-1]);
    assert.equal(signature?.outputs.embedding?.dtype, 'DT_FLOAT');
    const missing = await grpcError(unaryCall(clients.prediction, 'GetModelMetadata', { model_spec: { name: MODEL }, metadata_field: [] }));
    assert.equal(missing.code, status.INVALID_ARGUMENT);

    const statusReply = await unaryCall(clients.model, 'GetModelStatus', { model_spec: { name: MODEL } });
    assert.deepEqual(statusReply, { model_version_status: [{ version: 1, state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] });
    const unknown = await grpcError(unaryCall(clients.model, 'GetModelStatus', { model_spec: { name: MODEL, version: { value: 5 } } }));
    assert.equal(unknown.code, status.NOT_FOUND);
  });
});
