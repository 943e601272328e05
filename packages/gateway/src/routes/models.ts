import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ErrorReply, InferlineError, aggregateVersions, readLiveVersions, readLiveWorkers, type LiveVersion, type RepositoryModel, type TensorSpec } from '@inferline/shared';
import type { VersionSelector } from '../model-catalog.ts';
import { ModelList, ModelMetadataReply, ModelStatusReply, type ModelSummary } from '../model-schemas.ts';
import type { RouteContext } from '../route-context.ts';
import { SERVING_SIGNATURE } from '../tfserving-request.ts';
import { TF_SERVING_ERRORS, useTfServingConventions } from '../tfserving-scope.ts';

/** TF Serving's method name of a predict signature (tensorflow/cc/saved_model/signature_constants.h). */
export const PREDICT_METHOD = 'tensorflow/serving/predict';

/** TF dtype names (tensorflow/core/framework/types.proto) of the signature's dtypes. */
export const TF_DTYPES: Record<TensorSpec['dtype'], string> = { string: 'DT_STRING', float32: 'DT_FLOAT', int32: 'DT_INT32', json: 'DT_STRING' };

const ModelName = Type.String({ minLength: 1, maxLength: 64, description: 'The model (its folder in the model repository).' });
const NameParams = Type.Object({ name: ModelName });
const VersionParams = Type.Object({ name: ModelName, version: Type.Integer({ minimum: 1, description: 'A version number.' }) });
const LabelParams = Type.Object({ name: ModelName, label: Type.String({ minLength: 1, maxLength: 64, description: 'A version label (`version_labels`).' }) });
const errors = { '4xx': ErrorReply, '5xx': ErrorReply };
const TAGS = ['TF Serving'];

/**
 * Model routes: `GET /v1/models` (inferline's list, inferline's errors), and TF Serving's
 * `GET /v1/models/:name[/versions/:v|/labels/:label]` (GetModelStatus) and `.../metadata`
 * (GetModelMetadata), in their own scope with TF Serving's conventions (`{"error": "<message>"}`).
 *
 * A version's state is read from the announcements of the model's live workers (heartbeat within 3
 * periods; `aggregateVersions`): AVAILABLE when one has it AVAILABLE, else LOADING, UNLOADING, or END
 * with the error of a failed load. A version the policy selects that no live worker holds is `START`.
 */
export const modelRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.get('/v1/models', { schema: { summary: 'Every model, its versions, labels, signature and live workers', tags: ['Models'], response: { 200: ModelList, ...errors } } }, async () => {
    const models = ctx.models.list();
    const live = await Promise.all(models.map((m) => readLiveWorkers(ctx.redis, m.config.name, ctx.settings.heartbeat_interval_ms)));
    return {
      models: models.map((m, i): ModelSummary => {
        const announcements = live[i] ?? [];
        const versions = aggregateVersions(announcements);
        return {
          name: m.config.name,
          ...(m.config.description === undefined ? {} : { description: m.config.description }),
          platform: m.config.platform,
          versions: knownVersions(m, versions).map((version) => ({ version, state: versions.get(version)?.state ?? 'START' })),
          default_version: defaultVersion(m, versions),
          version_labels: m.config.version_labels,
          ...(m.config.traffic === undefined ? {} : { traffic: m.config.traffic }),
          signature: m.config.signature,
          workers: announcements.length,
          worker_versions: announcements,
        };
      }),
    };
  });

  // Its own scope: TF Serving's conventions apply there only.
  void app.register(tfservingModelRoutes, ctx);
  done();
};

/** TF Serving's GetModelStatus and GetModelMetadata over REST, with TF Serving's conventions (useTfServingConventions). */
const tfservingModelRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  useTfServingConventions(app, ctx);
  const readLive = (name: string) => readLiveVersions(ctx.redis, name, ctx.settings.heartbeat_interval_ms);
  const status = async (name: string, selector: VersionSelector = {}): Promise<ModelStatusReply> => {
    const model = ctx.models.require(name);
    const { versions: live } = await readLive(name);
    const known = knownVersions(model, live);
    let versions = known;
    if (selector.label !== undefined || selector.version !== undefined) {
      const version = selector.label === undefined ? selector.version : labelVersion(model, selector.label);
      if (version === undefined || !known.includes(version)) {
        throw new InferlineError('version_not_found', `model "${name}" has no version ${version} (versions: ${known.join(', ') || 'none'})`);
      }
      versions = [version];
    }
    return {
      model_version_status: versions.map((v) => {
        const held = live.get(v);
        const failed = held?.state === 'END' && held.error !== undefined;
        return {
          version: String(v),
          state: held?.state ?? 'START',
          status: failed ? { error_code: 'UNKNOWN', error_message: held.error ?? '' } : { error_code: 'OK', error_message: '' },
        };
      }),
    };
  };
  const statusSchema = { tags: TAGS, response: { 200: ModelStatusReply, ...TF_SERVING_ERRORS } };
  app.get('/v1/models/:name', { schema: { summary: 'Model status (TF Serving GetModelStatus): every version', params: NameParams, ...statusSchema } }, (request) =>
    status(request.params.name),
  );
  app.get('/v1/models/:name/versions/:version', { schema: { summary: 'Model status (TF Serving GetModelStatus): one version', params: VersionParams, ...statusSchema } }, (request) =>
    status(request.params.name, { version: request.params.version }),
  );
  app.get('/v1/models/:name/labels/:label', { schema: { summary: 'Model status (TF Serving GetModelStatus): a labelled version', params: LabelParams, ...statusSchema } }, (request) =>
    status(request.params.name, { label: request.params.label }),
  );

  const metadata = (name: string, selector: VersionSelector = {}): ModelMetadataReply => {
    const { config, version: resolved } = ctx.models.resolveNow(name, selector, { requireAvailable: false, ignoreTraffic: true });
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
  const metadataSchema = { tags: TAGS, response: { 200: ModelMetadataReply, ...TF_SERVING_ERRORS } };
  app.get('/v1/models/:name/metadata', { schema: { summary: 'Model metadata (TF Serving GetModelMetadata): the latest version', params: NameParams, ...metadataSchema } }, (request) =>
    metadata(request.params.name),
  );
  app.get(
    '/v1/models/:name/versions/:version/metadata',
    { schema: { summary: 'Model metadata (TF Serving GetModelMetadata): one version', params: VersionParams, ...metadataSchema } },
    (request) => metadata(request.params.name, { version: request.params.version }),
  );
  app.get(
    '/v1/models/:name/labels/:label/metadata',
    { schema: { summary: 'Model metadata (TF Serving GetModelMetadata): a labelled version', params: LabelParams, ...metadataSchema } },
    (request) => metadata(request.params.name, { label: request.params.label }),
  );
  done();
};

/** The version a label points to, or undefined. */
export function labelVersion(model: RepositoryModel, label: string): number | undefined {
  return model.config.version_labels[label];
}

/** Versions to show: those the policy selects and those a live worker still holds, ascending. */
export function knownVersions(model: RepositoryModel, live: ReadonlyMap<number, LiveVersion>): number[] {
  return [...new Set([...model.served, ...live.keys()])].sort((a, b) => a - b);
}

/** Where a request naming no version goes without a traffic split: the highest selected AVAILABLE version, else the highest selected. */
function defaultVersion(model: RepositoryModel, live: ReadonlyMap<number, LiveVersion>): number | null {
  return model.served.filter((v) => live.get(v)?.state === 'AVAILABLE').at(-1) ?? model.served.at(-1) ?? null;
}

/** TF Serving TensorInfo of one signature tensor; the batch dimension comes first, as -1. */
function tensorInfo(spec: TensorSpec) {
  return {
    dtype: TF_DTYPES[spec.dtype],
    tensor_shape: { dim: [-1, ...spec.shape].map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
    name: spec.name,
  };
}
