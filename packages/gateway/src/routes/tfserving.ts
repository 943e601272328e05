import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { ERROR_STATUS, ErrorReply, InferlineError, TERMINAL_STATUSES, newJobId, type ErrorCode, type JobView, type ModelConfig, type TensorSpec } from '@inferline/shared';
import { decodeBase64Text } from '../base64.ts';
import { toJobView } from '../job-view.ts';
import { admitJobs, checkBulkSize } from '../enqueue-jobs.ts';
import type { LogContext } from '../log-context.ts';
import { requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import { waitForJobs } from '../wait-for-jobs.ts';

/** Model names as config.ts allows them; a regex param lets the route end in `:predict`. */
const NAME_PARAM = ':name(^[a-z0-9][a-z0-9_.-]*)';

/** TF Serving's predict body: `instances` (row format) or `inputs` (columnar format). */
const PredictBody = Type.Object(
  {
    signature_name: Type.Optional(Type.String()),
    instances: Type.Optional(Type.Array(Type.Unknown(), { minItems: 1 })),
    inputs: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);

type PredictBody = Static<typeof PredictBody>;

/** TF Serving's predict reply: `predictions` for row format, `outputs` for columnar. */
const PredictReply = Type.Object({
  predictions: Type.Optional(Type.Array(Type.Unknown())),
  outputs: Type.Optional(Type.Unknown()),
});
type PredictReply = Static<typeof PredictReply>;

const PredictParams = Type.Object({
  name: Type.String(),
  version: Type.Optional(Type.Integer({ minimum: 1 })),
  label: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});
type PredictParams = Static<typeof PredictParams>;

/**
 * TF Serving REST compatible, synchronous predict (DESIGN.md section 8):
 * `POST /v1/models/:name[/versions/:v|/labels/:label]:predict` with `{"instances": [...]}` → `{"predictions": [...]}`
 * or `{"inputs": [...]}` → `{"outputs": [...]}`. Each instance becomes one job (so the workers batch
 * them with everybody else's), the call waits for all of them (job events, at most
 * `settings.max_wait_s`) and answers in instance order. With one output tensor a prediction is its
 * value, with several an object by output name, as TF Serving does.
 *
 * Errors: any invalid instance → 400 before anything is stored; a failed job → its error code; jobs
 * unfinished at the deadline → 504 `deadline_exceeded` (they stay queued and run).
 */
export const tfservingRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  const schema = { body: PredictBody, params: PredictParams, response: { 200: PredictReply, '4xx': ErrorReply, '5xx': ErrorReply } };
  const paths = [
    `/v1/models/${NAME_PARAM}::predict`,
    `/v1/models/${NAME_PARAM}/versions/:version(^[0-9]+)::predict`,
    `/v1/models/${NAME_PARAM}/labels/:label(^[a-z][a-z0-9_-]*)::predict`,
  ];
  for (const path of paths) {
    app.post(path, { schema }, (request, reply) => predict(ctx, request.params, request.body, request.logContext, requestSignal(reply, ctx.shutdown)));
  }
  done();
};

/** Enqueue one job per instance, wait for all, answer their predictions in instance order. */
async function predict(ctx: RouteContext, params: PredictParams, body: PredictBody, log: LogContext, signal: AbortSignal): Promise<PredictReply> {
  log.model = params.name;
  const selector = { version: params.version, label: params.label };
  // Resolved first for the signature the instances are read with; admitJobs takes this resolution and
  // resolves again only if the version closes meanwhile.
  const target = await ctx.models.resolve(params.name, selector);
  log.version = target.version;
  const { instances, inputs } = body;
  if ((instances === undefined) === (inputs === undefined)) {
    throw new InferlineError('invalid_input', 'body: exactly one of "instances" (row format) or "inputs" (columnar format) is required');
  }
  const spec = target.config.signature.inputs[0] as TensorSpec;
  const isImage = target.config.preprocess?.type === 'image';
  const values = instances ? instances.map((instance, i) => unwrapInstance(instance, spec, isImage, `instances[${i}]`)) : columnarValues(inputs, spec, isImage);
  checkBulkSize(values.length, ctx.settings.max_bulk_inputs, 'instances');
  const ids = values.map(() => newJobId(target.config.name));
  log.jobs = ids.length;

  // Watch before enqueueing: a job can finish before the enqueue call returns.
  const watch = ctx.events.watch(ids);
  let views: JobView[];
  try {
    const { target: admitted, records: queued } = await admitJobs(ctx.models, ctx.redis, ctx.metrics, { model: params.name, selector, inputs: values, jobIds: ids, target });
    log.version = admitted.version;
    views = (await waitForJobs(ctx.redis, watch, ctx.settings.max_wait_s * 1000, signal, queued)).map(toJobView);
  } finally {
    watch.close();
  }
  const predictions = views.map((view) => prediction(view, target.config));
  return instances ? { predictions } : { outputs: columnarOutputs(predictions, target.config) };
}

/**
 * One row-format instance: the value itself, or `{"<input name>": value}`. `{"b64": ...}` is decoded to
 * text for a text input (strict base64 and UTF-8: 400 `invalid_input` otherwise), and kept as it is for an image model (the image path decodes and checks it).
 */
function unwrapInstance(instance: unknown, spec: TensorSpec, isImage: boolean, field: string): unknown {
  let value = instance;
  if (isObject(value) && Object.keys(value).length === 1 && spec.name in value) value = value[spec.name];
  if (!isImage && spec.dtype === 'string' && isObject(value) && typeof value.b64 === 'string' && Object.keys(value).length === 1) {
    return decodeBase64Text(value.b64, `${field}.b64`);
  }
  return value;
}

/** Columnar `inputs`: a list of values, or `{"<input name>": [values]}`. */
function columnarValues(inputs: unknown, spec: TensorSpec, isImage: boolean): unknown[] {
  const column = isObject(inputs) && spec.name in inputs ? inputs[spec.name] : inputs;
  if (!Array.isArray(column) || column.length === 0) {
    throw new InferlineError('invalid_input', `field "inputs": expected a non-empty list of "${spec.name}" values`);
  }
  return column.map((value, i) => unwrapInstance(value, spec, isImage, `inputs[${i}]`));
}

/**
 * The prediction of one finished job.
 * @throws InferlineError the job's own error when it failed, `deadline_exceeded` when it did not finish.
 */
function prediction(view: JobView, config: ModelConfig): unknown {
  if (!TERMINAL_STATUSES.has(view.status)) {
    throw new InferlineError('deadline_exceeded', `job ${view.id} is still ${view.status} after the gateway's max_wait_s; poll GET /v1/jobs/${view.id}`);
  }
  if (view.status !== 'succeeded') {
    const code = view.error && view.error.code in ERROR_STATUS ? (view.error.code as ErrorCode) : 'inference_failed';
    throw new InferlineError(code, `job ${view.id} ${view.status}: ${view.error?.message ?? 'no result'}`);
  }
  const output = view.output ?? {};
  const [only] = config.signature.outputs;
  return config.signature.outputs.length === 1 && only && only.name in output ? output[only.name] : output;
}

/** Columnar outputs: the list itself for one output tensor, else `{"<output name>": [values]}`. */
function columnarOutputs(predictions: unknown[], config: ModelConfig): unknown {
  if (config.signature.outputs.length === 1) return predictions;
  return Object.fromEntries(config.signature.outputs.map((o) => [o.name, predictions.map((p) => (isObject(p) ? p[o.name] : undefined))]));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
