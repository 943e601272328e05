import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { InferlineError, type Tenant } from '@inferline/shared';
import { encodeRawElements } from '../binary-tensor-data.ts';
import type { VersionSelector } from '../model-catalog.ts';
import { tensorMetadata, type RequestTensor, type ResponseTensor } from '../oip-tensors.ts';
import { checkReady } from '../readiness.ts';
import { OIP_SERVER_NAME, OIP_SERVER_VERSION } from '../oip-server.ts';
import { runTensorJobs } from '../sync-jobs.ts';
import { unary, type GrpcDeps } from './unary.ts';

/** `InferTensorContents` as proto-loader gives it (defaults on). */
interface TensorContents {
  int_contents: number[];
  fp32_contents: number[];
  bytes_contents: Buffer[];
}

/** `ModelInferRequest` (grpc_predict_v2.proto) as proto-loader gives it. */
interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: { name: string; datatype: string; shape: number[]; contents: TensorContents | null }[];
  outputs: { name: string }[];
  raw_input_contents: Buffer[];
}

/** Extensions ServerMetadata reports over gRPC (none of Triton's gRPC extensions are served). */
const GRPC_EXTENSIONS: string[] = [];

/**
 * `inference.GRPCInferenceService` (KServe `grpc_predict_v2.proto`), beside the REST routes of
 * routes/v2.ts with the same rules:
 * - ServerLive: always live; ServerReady: the readiness rule of `/readyz` (ready false, not an error,
 *   when it fails);
 * - ModelReady: a version AVAILABLE on a live worker (NOT_FOUND for an unknown model or version);
 * - ServerMetadata, ModelMetadata (OIP datatypes, batch dimension -1 first);
 * - ModelInfer: each row of the input's first dimension is one job; the call waits until the
 *   call's deadline, at most `max_wait_s`. Inputs as `raw_input_contents` (Triton's clients) or typed
 *   `contents` (`bytes_contents`, `fp32_contents`, `int_contents`); the outputs come back in the same
 *   form (`raw_output_contents` when the inputs were raw).
 * Status codes: NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED (queue full), UNAVAILABLE,
 * DEADLINE_EXCEEDED (grpc-status.ts).
 */
export function inferenceService(deps: GrpcDeps): UntypedServiceImplementation {
  return {
    ServerLive: unary(deps, 'ServerLive', () => Promise.resolve({ live: true })),
    ServerReady: unary(deps, 'ServerReady', async () => ({ ready: await checkReady(deps).then(() => true, () => false) })),
    ModelReady: unary(deps, 'ModelReady', async (request: { name: string; version: string }) => {
      try {
        await deps.models.resolve(request.name, selectorOf(request.name, request.version));
        return { ready: true };
      } catch (error) {
        if (error instanceof InferlineError && error.statusCode === 503) return { ready: false };
        throw error;
      }
    }),
    ServerMetadata: unary(deps, 'ServerMetadata', () => Promise.resolve({ name: OIP_SERVER_NAME, version: OIP_SERVER_VERSION, extensions: GRPC_EXTENSIONS })),
    ModelMetadata: unary(deps, 'ModelMetadata', (request: { name: string; version: string }) => {
      const { model, config } = deps.models.resolveNow(request.name, selectorOf(request.name, request.version), { requireAvailable: false, ignoreTraffic: true });
      return Promise.resolve({
        name: config.name,
        versions: model.served.map(String),
        platform: config.platform,
        inputs: config.signature.inputs.map(tensorMetadata),
        outputs: config.signature.outputs.map(tensorMetadata),
      });
    }),
    ModelInfer: unary(deps, 'ModelInfer', (request: ModelInferRequest, call) => modelInfer(deps, request, call.waitMs, call.signal, call.tenant)),
  };
}

/** A gRPC model version: empty = the server's choice, else digits. */
function selectorOf(name: string, version: string): VersionSelector {
  if (version === '') return {};
  if (!/^[1-9][0-9]{0,15}$/.test(version)) throw new InferlineError('version_not_found', `model "${name}" has no version "${version}"`);
  return { version: Number(version) };
}

async function modelInfer(deps: GrpcDeps, request: ModelInferRequest, waitMs: number, signal: AbortSignal, tenant: Tenant | undefined) {
  const selector = selectorOf(request.model_name, request.model_version);
  const target = await deps.models.resolve(request.model_name, selector);
  const raw = request.raw_input_contents.length > 0;
  if (raw && request.raw_input_contents.length !== request.inputs.length) {
    throw new InferlineError('invalid_input', `raw_input_contents has ${request.raw_input_contents.length} entries for ${request.inputs.length} inputs`);
  }
  const tensors = request.inputs.map((input, i): RequestTensor => {
    const base = { name: input.name, datatype: input.datatype, shape: input.shape };
    if (raw) {
      if (input.contents) throw new InferlineError('invalid_input', `input "${input.name}": contents must not be given with raw_input_contents`);
      return { ...base, raw: request.raw_input_contents[i] };
    }
    return { ...base, data: typedContents(input.datatype, input.contents) };
  });
  const { target: served, tensors: tensorsOut } = await runTensorJobs(deps, {
    model: request.model_name,
    selector,
    target,
    tensors,
    requested: request.outputs.map((output) => output.name),
    waitMs,
    signal,
    ...(tenant ? { tenant } : {}),
  });
  return {
    model_name: served.config.name,
    model_version: String(served.version),
    id: request.id,
    outputs: tensorsOut.map((tensor) => ({ name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, ...(raw ? {} : { contents: contentsOf(tensor) }) })),
    raw_output_contents: raw ? tensorsOut.map((tensor) => encodeRawElements(tensor.datatype, tensor.data)) : [],
  };
}

/** The typed contents field of a datatype (an empty list for one this server does not take: tensorRows refuses it). */
function typedContents(datatype: string, contents: TensorContents | null): unknown[] {
  if (!contents) return [];
  if (datatype === 'BYTES') return contents.bytes_contents;
  if (datatype === 'FP32') return contents.fp32_contents;
  if (datatype === 'INT32') return contents.int_contents;
  return [];
}

function contentsOf(tensor: ResponseTensor): Partial<TensorContents> {
  if (tensor.datatype === 'BYTES') return { bytes_contents: (tensor.data as string[]).map((text) => Buffer.from(text, 'utf8')) };
  const numbers = (tensor.data as (number | null)[]).map((value) => value ?? Number.NaN);
  return tensor.datatype === 'FP32' ? { fp32_contents: numbers } : { int_contents: numbers };
}
