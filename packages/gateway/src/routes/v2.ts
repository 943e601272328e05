import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InferlineError, QUEUE_FULL_RETRY_AFTER_S } from '@inferline/shared';
import { encodeRawElements, frameInferenceResponse, INFERENCE_HEADER_CONTENT_LENGTH, splitInferenceBody, takeBinaryInputs } from '../binary-tensor-data.ts';
import { toInferlineError } from '../error-handler.ts';
import type { VersionSelector } from '../model-catalog.ts';
import { tensorMetadata, type OipTensorMetadata } from '../oip-tensors.ts';
import { OIP_SERVER_NAME, OIP_SERVER_VERSION } from '../oip-server.ts';
import { checkReady } from '../readiness.ts';
import { requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import { runTensorJobs } from '../sync-jobs.ts';

/** Extensions reported by `GET /v2` (Triton's names): the binary tensor data extension. */
export const OIP_REST_EXTENSIONS = ['binary_tensor_data'];

/** OIP `$parameters`: name → value. */
const Parameters = Type.Record(Type.String(), Type.Unknown());

/** `$inference_request` (OIP `open_inference_rest.yaml`); `model_name` / `model_version` as tritonclient may send them. */
const InferenceRequest = Type.Object(
  {
    id: Type.Optional(Type.String()),
    model_name: Type.Optional(Type.String()),
    model_version: Type.Optional(Type.String()),
    parameters: Type.Optional(Parameters),
    inputs: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          shape: Type.Array(Type.Integer({ minimum: 0 })),
          datatype: Type.String(),
          parameters: Type.Optional(Parameters),
          data: Type.Optional(Type.Array(Type.Unknown())),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    outputs: Type.Optional(Type.Array(Type.Object({ name: Type.String(), parameters: Type.Optional(Parameters) }, { additionalProperties: false }))),
  },
  { additionalProperties: false },
);
type InferenceRequest = Static<typeof InferenceRequest>;

const ModelParams = Type.Object({ name: Type.String(), version: Type.Optional(Type.String()) });
type ModelParams = Static<typeof ModelParams>;

/** `$metadata_model_response`. */
interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: OipTensorMetadata[];
  outputs: OipTensorMetadata[];
}

/**
 * Open Inference Protocol v2 over REST (KServe `open_inference_rest.yaml`; Triton's HTTP/REST protocol
 * with its binary tensor data extension), registered under the prefix `/v2`:
 * - `GET /v2` server metadata; `GET /v2/health/live`; `GET /v2/health/ready` (the rule of `/readyz`);
 * - `GET /v2/models/:name[/versions/:v]` model metadata; `.../ready` model readiness (a version AVAILABLE
 *   on a live worker);
 * - `POST /v2/models/:name[/versions/:v]/infer`: each row of the input's batch dimension becomes one
 *   job; the call waits (at most `max_wait_s`) and answers the outputs in row order (see oip-tensors.ts
 *   for the tensors of each kind of model). The body is read whatever its content type (tritonclient
 *   sends none, or `application/octet-stream`); with `Inference-Header-Content-Length` it is a JSON
 *   header followed by binary inputs. Outputs asked for with `binary_data` (per output) or
 *   `binary_data_output` (request) come back binary the same way.
 *
 * Errors are `{"error": "<message>"}` (the spec's form) with the status of the inferline code: 400
 * malformed request, 404 unknown model or version, 413 too large, 429 queue full and 503 unavailable
 * (both with `Retry-After`), 504 when the wait ran out (the jobs stay queued and run).
 */
export const v2Routes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  // Encapsulated: these parsers and handlers apply to the /v2 routes only.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, parsed) => parsed(null, body));
  app.setErrorHandler((error, request, reply) => {
    const mapped = toInferlineError(error, ctx.redis, ctx.settings.max_body_bytes, request);
    if (mapped.code === 'internal') request.log.error({ err: error, ...request.logContext }, 'request failed');
    return sendError(mapped, request, reply);
  });
  app.setNotFoundHandler((request, reply) => sendError(new InferlineError('not_found', `no route ${request.method} ${request.url.split('?')[0]}`), request, reply));

  const tags = ['Open Inference Protocol'];
  app.get('/', { schema: { summary: 'Server metadata (name, version, extensions)', tags } }, () => ({ name: OIP_SERVER_NAME, version: OIP_SERVER_VERSION, extensions: OIP_REST_EXTENSIONS }));
  app.get('/health/live', { schema: { summary: 'Server liveness', tags } }, () => ({ live: true }));
  app.get('/health/ready', { schema: { summary: 'Server readiness (the /readyz rule)', tags } }, async () => {
    await checkReady(ctx);
    return { ready: true };
  });

  const metadata = (params: ModelParams): ModelMetadata => {
    const { model, config } = ctx.models.resolveNow(params.name, selectorOf(params), { requireAvailable: false, ignoreTraffic: true });
    return {
      name: config.name,
      versions: model.served.map(String),
      platform: config.platform,
      inputs: config.signature.inputs.map(tensorMetadata),
      outputs: config.signature.outputs.map(tensorMetadata),
    };
  };
  const ready = async (params: ModelParams) => {
    await ctx.models.resolve(params.name, selectorOf(params));
    return { name: params.name, ready: true };
  };
  for (const base of ['/models/:name', '/models/:name/versions/:version']) {
    app.get(base, { schema: { params: ModelParams, summary: 'Model metadata: OIP datatypes and shapes of its inputs and outputs', tags } }, (request) => metadata(request.params));
    app.get(`${base}/ready`, { schema: { params: ModelParams, summary: 'Model readiness: a live worker has the version AVAILABLE', tags } }, (request) => ready(request.params));
    app.post(`${base}/infer`, { schema: { params: ModelParams, summary: 'Inference (JSON, or the binary tensor extension); each row is one job', tags } }, (request, reply) =>
      infer(ctx, request.params, request, reply),
    );
  }
  done();
};

/** The version a path names: digits, else a version that cannot exist. */
function selectorOf(params: ModelParams): VersionSelector {
  if (params.version === undefined) return {};
  if (!/^[1-9][0-9]{0,15}$/.test(params.version)) throw new InferlineError('version_not_found', `model "${params.name}" has no version "${params.version}"`);
  return { version: Number(params.version) };
}

/** One inference call: parse, one job per row, wait, answer in JSON or with binary outputs. */
async function infer(ctx: RouteContext, params: ModelParams, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const log = request.logContext;
  log.model = params.name;
  // The model first: an unknown model or version answers 404 whatever the body holds.
  const selector = selectorOf(params);
  const target = await ctx.models.resolve(params.name, selector);
  log.version = target.version;
  const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
  const headerLength = request.headers[INFERENCE_HEADER_CONTENT_LENGTH];
  const { header, binary } = splitInferenceBody(body, Array.isArray(headerLength) ? headerLength[0] : headerLength);
  const invalid = Value.Errors(InferenceRequest, header).First();
  if (invalid) throw new InferlineError('invalid_input', `inference request${invalid.path.replaceAll('/', '.')}: ${invalid.message}`);
  const inference = header as InferenceRequest;
  const raws = takeBinaryInputs(inference.inputs, binary);

  const tensors = inference.inputs.map((input, i) => ({ ...input, raw: raws[i] }));
  // Unknown output names are refused before anything is queued.
  const { target: served, tensors: tensorsOut } = await runTensorJobs(ctx, {
    model: params.name,
    selector,
    target,
    tensors,
    requested: inference.outputs?.map((output) => output.name),
    waitMs: ctx.settings.max_wait_s * 1000,
    signal: requestSignal(reply, ctx.shutdown),
    log,
    ...(request.tenant ? { tenant: request.tenant } : {}),
  });
  const binaryDefault = inference.parameters?.binary_data_output === true;
  const binaries: Buffer[] = [];
  const outputsJson = tensorsOut.map((tensor) => {
    const asked = inference.outputs?.find((output) => output.name === tensor.name)?.parameters?.binary_data;
    if (!(typeof asked === 'boolean' ? asked : binaryDefault)) return tensor;
    const bytes = encodeRawElements(tensor.datatype, tensor.data);
    binaries.push(bytes);
    return { name: tensor.name, datatype: tensor.datatype, shape: tensor.shape, parameters: { binary_data_size: bytes.length } };
  });
  const response = {
    model_name: served.config.name,
    model_version: String(served.version),
    ...(inference.id === undefined ? {} : { id: inference.id }),
    outputs: outputsJson,
  };
  if (binaries.length === 0) return reply.type('application/json; charset=utf-8').send(JSON.stringify(response));
  const framed = frameInferenceResponse(response, binaries);
  return reply.type('application/octet-stream').header(INFERENCE_HEADER_CONTENT_LENGTH, String(framed.headerLength)).send(framed.body);
}

/** `{"error": "<message>"}` with the code's status; `Retry-After` on 429 and 503. */
function sendError(error: InferlineError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  request.log.debug({ code: error.code, message: error.message, ...request.logContext }, 'request rejected');
  if (error.code === 'queue_full' || error.statusCode === 503) {
    const retryAfter = error.details?.retry_after_s;
    reply.header('retry-after', String(typeof retryAfter === 'number' ? retryAfter : QUEUE_FULL_RETRY_AFTER_S));
  }
  return reply.code(error.statusCode).type('application/json; charset=utf-8').send(JSON.stringify({ error: error.message }));
}
