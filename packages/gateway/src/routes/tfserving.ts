import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { InferlineError, type ModelConfig, type Tenant } from '@inferline/shared';
import type { LogContext } from '../log-context.ts';
import { requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import { TF_SERVING_ERRORS, useTfServingConventions } from '../tfserving-scope.ts';
import { PredictBody, readPredictRequest } from '../tfserving-request.ts';
import { runSyncJobs } from '../sync-jobs.ts';

/** Model names as config.ts allows them; a regex param lets the route end in `:predict`. */
const NAME_PARAM = ':name(^[a-z0-9][a-z0-9_.-]*)';

/** TF Serving's predict reply: `predictions` for row format, `outputs` for columnar. */
const PredictReply = Type.Object({
  predictions: Type.Optional(Type.Array(Type.Unknown(), { description: 'Row format: one prediction per instance, in order (the output itself for one output tensor, else an object by output name).' })),
  outputs: Type.Optional(Type.Unknown({ description: 'Columnar format: the list of outputs for one output tensor, else an object by output name of lists.' })),
});
type PredictReply = Static<typeof PredictReply>;

const ModelName = Type.String({ description: 'The model (its folder in the model repository).' });
const NameParams = Type.Object({ name: ModelName });
const VersionParams = Type.Object({ name: ModelName, version: Type.Integer({ minimum: 1, description: 'A version the policy selects.' }) });
const LabelParams = Type.Object({ name: ModelName, label: Type.String({ minLength: 1, maxLength: 64, description: 'A version label (`version_labels`).' }) });
type PredictParams = { name: string; version?: number; label?: string };

const PREDICT_DESCRIPTION =
  'TF Serving REST predict (https://www.tensorflow.org/tfx/serving/api_rest#predict_api): `instances` (row format) → `predictions`, ' +
  'or `inputs` (columnar) → `outputs`. Each instance is one job, batched with everything else; the call waits for all of them ' +
  '(at most MAX_WAIT_S). Any or no Content-Type; `NaN` / `Infinity` tokens parse; errors are `{"error": "<message>"}`.';

/**
 * TF Serving REST compatible, synchronous predict (DESIGN.md section 8):
 * `POST /v1/models/:name[/versions/:v|/labels/:label]:predict` with `{"instances": [...]}` → `{"predictions": [...]}`
 * or `{"inputs": [...]}` → `{"outputs": [...]}`. Each instance becomes one job (so the workers batch
 * them with everybody else's), the call waits for all of them (job events, at most
 * `settings.max_wait_s`, through runSyncJobs as the other synchronous protocols) and answers in
 * instance order. With one output tensor a prediction is its
 * value, with several an object by output name, as TF Serving does.
 *
 * TF Serving's conventions (useTfServingConventions): any or no Content-Type, `NaN` / `Infinity`
 * tokens, errors as `{"error": "<message>"}`. The body is read by readPredictRequest.
 *
 * Errors: a malformed body or any invalid instance → 400 before anything is stored; unknown model,
 * version or label → 404; a full queue → 429, no worker has the version → 503 (both with
 * `Retry-After`); a failed job → its error code; jobs unfinished when the wait runs out → 504 (the
 * wait is their queue deadline: those still queued then fail `deadline_exceeded` without running).
 */
export const tfservingRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  useTfServingConventions(app, ctx);
  const route = (path: string, params: typeof NameParams | typeof VersionParams | typeof LabelParams, summary: string) =>
    app.post(
      path,
      {
        schema: { summary, description: PREDICT_DESCRIPTION, tags: ['TF Serving'], body: PredictBody, params, response: { 200: PredictReply, ...TF_SERVING_ERRORS } },
        // A POST without a body (no Content-Type, no length) skips the parser: answer as TF Serving does.
        preValidation: (request, _reply, next) => {
          next(request.body === undefined ? new InferlineError('invalid_input', 'JSON Parse error: The document is empty') : undefined);
        },
      },
      (request, reply) => predict(ctx, request.params as PredictParams, request.body, request.logContext, requestSignal(reply, ctx.shutdown), request.tenant),
    );
  route(`/v1/models/${NAME_PARAM}::predict`, NameParams, 'Predict (TF Serving): the latest version');
  route(`/v1/models/${NAME_PARAM}/versions/:version(^[0-9]+)::predict`, VersionParams, 'Predict (TF Serving): one version');
  route(`/v1/models/${NAME_PARAM}/labels/:label(^[a-z][a-z0-9_-]*)::predict`, LabelParams, 'Predict (TF Serving): a labelled version');
  done();
};

/** Enqueue one job per instance, wait for all, answer their predictions in instance order. */
async function predict(ctx: RouteContext, params: PredictParams, body: PredictBody, log: LogContext, signal: AbortSignal, tenant: Tenant | undefined): Promise<PredictReply> {
  log.model = params.name;
  const selector = { version: params.version, label: params.label };
  // Resolved first for the signature the instances are read with; admitJobs takes this resolution and
  // resolves again only if the version closes meanwhile.
  const target = await ctx.models.resolve(params.name, selector);
  log.version = target.version;
  const { format, values } = readPredictRequest(body, target.config);
  const { target: served, outputs } = await runSyncJobs(ctx, {
    model: params.name,
    selector,
    target,
    inputs: values,
    what: format === 'row' ? 'instances' : 'inputs',
    waitMs: ctx.settings.max_wait_s * 1000,
    signal,
    log,
    ...(tenant ? { tenant } : {}),
  }).catch((error: unknown) => {
    throw instanceError(error, format);
  });
  const predictions = outputs.map((output) => prediction(output, served.config));
  return format === 'row' ? { predictions } : { outputs: columnarOutputs(predictions, served.config) };
}

/**
 * An invalid instance's error (it carries `details.index`) named as TF Serving names it:
 * `Failed to process element: <i> of 'instances' list. Error: ...`; any other error as it is.
 */
function instanceError(error: unknown, format: 'row' | 'columnar'): unknown {
  if (!(error instanceof InferlineError) || typeof error.details?.index !== 'number') return error;
  const list = format === 'row' ? "'instances' list" : "'inputs' list";
  return new InferlineError(error.code, `Failed to process element: ${error.details.index} of ${list}. Error: ${error.message}`, error.details);
}

/** The prediction of one succeeded job: with one output tensor its value, with several an object by output name. */
function prediction(output: Record<string, unknown>, config: ModelConfig): unknown {
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
