import { encode, InferlineError, keys, runScript, type JobView, type Redis } from '@inferline/shared';
import { readImageInput } from './image-input.ts';
import { validateInput } from './input-validation.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { ResolvedModel } from './model-catalog.ts';

/** Reply codes of enqueue.lua (see its header). */
const ENQUEUE_QUEUE_FULL = -1;
const ENQUEUE_ID_EXISTS = -2;

/** `Retry-After` (s) of a 429 `queue_full`: about how long a worker needs to drain some of a full queue. */
export const QUEUE_FULL_RETRY_AFTER_S = 1;

/**
 * Check request inputs against a model version's signature and turn them into what is stored in their
 * stream entries: text and tensors as given, images as their encoded bytes (headers read by
 * readImageInput; images are checked in parallel).
 * @returns the values to store, in input order.
 * @throws InferlineError of the first invalid input in input order (`invalid_input`, `invalid_image`,
 *   `payload_too_large`), with `details.index` = its position in `inputs`.
 */
export async function readInputs(target: ResolvedModel, inputs: readonly unknown[]): Promise<unknown[]> {
  const preprocess = target.config.preprocess;
  const settled = await Promise.allSettled(
    inputs.map(async (input) => {
      if (preprocess?.type === 'image') return readImageInput(target.config, preprocess, input);
      validateInput(target.config, input);
      return input;
    }),
  );
  const index = settled.findIndex((result) => result.status === 'rejected');
  const failure = settled[index];
  if (failure?.status === 'rejected') {
    const error: unknown = failure.reason;
    if (error instanceof InferlineError) throw new InferlineError(error.code, error.message, { ...error.details, index });
    throw error;
  }
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value);
}

/**
 * Admit requests for one model version: validate every input against the signature first (text,
 * tensors; image headers read by readImageInput), so an invalid one rejects the whole call before
 * anything is stored, then run enqueue.lua once per job in
 * one pipeline, each writing its job record and stream entry atomically. Counts
 * `inferline_requests_total` per job.
 *
 * A job is reported queued only when its script answered with a stream entry id: nothing is
 * acknowledged that was not stored.
 *
 * @param jobIds one fresh id (nanoid) per input, in the same order; created by the caller so that it
 *   can watch for their events before they can fire.
 * @throws InferlineError `invalid_input`, `invalid_image`, `payload_too_large` (nothing stored), `queue_full` (with several inputs, the ones
 *   admitted before the queue filled stay queued), `internal` on an id collision; a Redis failure is
 *   rethrown as is (the error handler maps it to 503 `unavailable`).
 */
export async function enqueueJobs(redis: Redis, metrics: GatewayMetrics, target: ResolvedModel, inputs: readonly unknown[], jobIds: readonly string[]): Promise<JobView[]> {
  const labels = { model: target.config.name, version: String(target.version) };
  let stored: unknown[];
  try {
    stored = await readInputs(target, inputs);
  } catch (error) {
    if (error instanceof InferlineError) metrics.requests.inc({ ...labels, status: error.code }, inputs.length);
    throw error;
  }

  const stream = keys.requests(target.config.name, target.version);
  const maxQueueSize = target.config.batching.max_queue_size;
  const createdAt = Date.now();
  const pipeline = redis.pipeline();
  stored.forEach((input, i) => {
    const id = jobIds[i] ?? '';
    void runScript(pipeline, 'enqueue', [keys.job(id), stream], [id, maxQueueSize, target.config.name, target.version, encode(input), createdAt]);
  });
  let results: [Error | null, unknown][];
  try {
    results = (await pipeline.exec()) ?? [];
  } catch (error) {
    metrics.requests.inc({ ...labels, status: 'unavailable' }, inputs.length);
    throw error;
  }

  const views: JobView[] = [];
  let firstError: Error | undefined;
  let queueFull = 0;
  results.forEach(([error, reply], i) => {
    if (error || reply === ENQUEUE_ID_EXISTS) {
      metrics.requests.inc({ ...labels, status: error ? 'unavailable' : 'internal' });
      firstError ??= error ?? new InferlineError('internal', `job id ${jobIds[i]} already exists`);
    } else if (reply === ENQUEUE_QUEUE_FULL) {
      queueFull++;
    } else {
      views.push({ id: jobIds[i] ?? '', model: target.config.name, version: target.version, status: 'queued', created_at: new Date(createdAt).toISOString() });
    }
  });
  if (views.length > 0) metrics.requests.inc({ ...labels, status: 'accepted' }, views.length);
  if (queueFull > 0) metrics.requests.inc({ ...labels, status: 'queue_full' }, queueFull);
  if (firstError) throw firstError;
  if (queueFull > 0) {
    throw new InferlineError('queue_full', `model "${target.config.name}" version ${target.version} has ${maxQueueSize} requests waiting (max_queue_size); retry later`, {
      retry_after_s: QUEUE_FULL_RETRY_AFTER_S,
    });
  }
  return views;
}

/** {@link enqueueJobs} for one input: the `202` view of the stored job. */
export async function enqueueJob(redis: Redis, metrics: GatewayMetrics, target: ResolvedModel, input: unknown, jobId: string): Promise<JobView> {
  const [view] = await enqueueJobs(redis, metrics, target, [input], [jobId]);
  if (!view) throw new InferlineError('internal', `job ${jobId} was not stored`);
  return view;
}
