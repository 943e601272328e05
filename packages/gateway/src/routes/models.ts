import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorReply, InferlineError, keys, type Redis, type RepositoryModel, type TensorSpec } from '@inferline/shared';
import {
  ModelList,
  ModelMetadataReply,
  ModelStatusReply,
  VERSION_STATES,
  type ModelSummary,
  type VersionState,
} from '../model-schemas.ts';
import type { RouteContext } from '../route-context.ts';

/** A worker counts as alive for this many heartbeat periods after its last heartbeat. */
const LIVE_HEARTBEATS = 3;

/** TF Serving's signature key and method for a predict signature. */
const SERVING_SIGNATURE = 'serving_default';
const PREDICT_METHOD = 'tensorflow/serving/predict';

/** TF dtype names (tensorflow/core/framework/types.proto) of the signature's dtypes. */
const TF_DTYPES: Record<TensorSpec['dtype'], string> = { string: 'DT_STRING', float32: 'DT_FLOAT', int32: 'DT_INT32', json: 'DT_STRING' };

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
const VersionParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }), version: Type.Integer({ minimum: 1 }) });
const errors = { '4xx': ErrorReply, '5xx': ErrorReply };

/**
 * Model routes: `GET /v1/models` (inferline's list), and TF Serving's `GET /v1/models/:name[/versions/:v]`
 * (model_version_status) and `.../metadata` (signature_def).
 *
 * A version's state is the one its workers publish in `keys.versionStatus(model)` (`{"state", ...}`
 * JSON per version), counted only while a worker heartbeats for the model; otherwise `START`: the
 * version is accepted (requests queue) but no worker has it loaded.
 */
export const modelRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  const heartbeatWindowMs = LIVE_HEARTBEATS * ctx.settings.heartbeat_interval_ms;

  app.get('/v1/models', { schema: { response: { 200: ModelList, ...errors } } }, async () => {
    const models = ctx.models.list();
    const live = await Promise.all(models.map((m) => readLiveStatus(ctx.redis, m.config.name, heartbeatWindowMs)));
    return {
      models: models.map((m, i): ModelSummary => {
        const { states, workers } = live[i] ?? { states: {}, workers: 0 };
        return {
          name: m.config.name,
          ...(m.config.description === undefined ? {} : { description: m.config.description }),
          platform: m.config.platform,
          versions: m.served.map((version) => ({ version, state: versionState(states[version], workers) })),
          default_version: m.served.at(-1) ?? null,
          signature: m.config.signature,
          workers,
        };
      }),
    };
  });

  const status = async (name: string, version?: number): Promise<ModelStatusReply> => {
    const model = findModel(ctx, name, version);
    const { states, workers } = await readLiveStatus(ctx.redis, name, heartbeatWindowMs);
    const versions = version === undefined ? model.served : [version];
    return {
      model_version_status: versions.map((v) => ({
        version: String(v),
        state: versionState(states[v], workers),
        status: { error_code: 'OK', error_message: '' },
      })),
    };
  };
  app.get('/v1/models/:name', { schema: { params: NameParams, response: { 200: ModelStatusReply, ...errors } } }, (request) => status(request.params.name));
  app.get('/v1/models/:name/versions/:version', { schema: { params: VersionParams, response: { 200: ModelStatusReply, ...errors } } }, (request) =>
    status(request.params.name, request.params.version),
  );

  const metadata = (name: string, version?: number): ModelMetadataReply => {
    const { config, version: resolved } = ctx.models.resolve(name, version);
    const tensors = (specs: TensorSpec[]) => Object.fromEntries(specs.map((s) => [s.name, tensorInfo(s)]));
    return {
      model_spec: { name, signature_name: '', version: String(resolved) },
      metadata: {
        signature_def: {
          signature_def: {
            [SERVING_SIGNATURE]: { inputs: tensors(config.signature.inputs), outputs: tensors(config.signature.outputs), method_name: PREDICT_METHOD },
          },
        },
      },
    };
  };
  app.get('/v1/models/:name/metadata', { schema: { params: NameParams, response: { 200: ModelMetadataReply, ...errors } } }, (request) =>
    metadata(request.params.name),
  );
  app.get(
    '/v1/models/:name/versions/:version/metadata',
    { schema: { params: VersionParams, response: { 200: ModelMetadataReply, ...errors } } },
    (request) => metadata(request.params.name, request.params.version),
  );

  done();
};

/**
 * The repository model of `name`, checking `version` (when given) is served.
 * @throws InferlineError `model_not_found`, `version_not_found`.
 */
function findModel(ctx: RouteContext, name: string, version?: number): RepositoryModel {
  const model = ctx.models.get(name);
  if (!model) throw new InferlineError('model_not_found', `model "${name}" is not in the model repository`);
  if (version !== undefined) ctx.models.resolve(name, version);
  return model;
}

/** Per-version status entries workers published for a model, and how many of its workers are alive. */
async function readLiveStatus(redis: Redis, model: string, windowMs: number): Promise<{ states: Record<string, string>; workers: number }> {
  const results = (await redis.pipeline().hgetall(keys.versionStatus(model)).zcount(keys.workers(model), Date.now() - windowMs, '+inf').exec()) ?? [];
  for (const [error] of results) if (error) throw error;
  return { states: (results[0]?.[1] ?? {}) as Record<string, string>, workers: Number(results[1]?.[1] ?? 0) };
}

/**
 * TF Serving state of a version from the worker's status entry (`{"state": ...}` JSON). A stale
 * entry (no worker alive) reads as `START`; an unreadable or unknown one as `UNKNOWN`.
 */
export function versionState(entry: string | undefined, liveWorkers: number): VersionState {
  if (entry === undefined || liveWorkers === 0) return 'START';
  let state: unknown;
  try {
    state = (JSON.parse(entry) as { state?: unknown }).state;
  } catch {
    return 'UNKNOWN';
  }
  const upper = typeof state === 'string' ? state.toUpperCase() : '';
  return (VERSION_STATES as readonly string[]).includes(upper) ? (upper as VersionState) : 'UNKNOWN';
}

/** TF Serving TensorInfo of one signature tensor; the batch dimension comes first, as -1. */
function tensorInfo(spec: TensorSpec) {
  return {
    dtype: TF_DTYPES[spec.dtype],
    tensor_shape: { dim: [-1, ...spec.shape].map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name: spec.name,
  };
}
