import { encode, enqueueJobs as enqueueScript, idShard, InferlineError, partitionLimit, priorityLevel, type JobRecord, type Redis, type Tenant } from '@inferline/shared';
import { readImageInput } from './image-input.ts';
import { validateInput } from './input-validation.ts';
import { readJobRecord } from './job-view.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { ModelCatalog, ResolvedModel, VersionSelector } from './model-catalog.ts';

/**
 * Refuse a call that carries more than `max` inputs (`max_bulk_inputs`: a bulk `POST /v1/jobs` or a
 * `:predict`): they are stored by one Lua call, which blocks Redis while it runs.
 * @param what how the request names its inputs (`inputs`, `instances`)
 * @throws InferlineError `payload_too_large`.
 */
export function checkBulkSize(count: number, max: number, what: string): void {
  if (count > max) throw new InferlineError('payload_too_large', `${count} ${what} in one request, more than ${max} (MAX_BULK_INPUTS)`);
}

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

/** How long requests may wait and at which priority ({@link enqueueJobs}). */
export interface QueuePolicy {
  /** Priority level, 1 = highest (≤ the model's `priority_levels`); absent = its `default_priority_level`. */
  priority?: number;
  /** Queue deadline, ms from acceptance; absent = the model's `default_timeout_ms` (absent = none). */
  timeout_ms?: number;
}

/**
 * The deadline (ms since epoch) of requests accepted at `createdAt`: `timeout_ms`, else the model's
 * `default_timeout_ms`; undefined when neither is set.
 */
export function queueDeadline(target: ResolvedModel, createdAt: number, timeoutMs: number | undefined): number | undefined {
  const timeout = timeoutMs ?? target.config.batching.default_timeout_ms;
  return timeout === undefined ? undefined : createdAt + timeout;
}

/** Who admits requests, and what comes with them besides the inputs. */
export interface AdmitOptions {
  /** Priority level and queue deadline ({@link QueuePolicy}). */
  policy?: QueuePolicy;
  /** The caller's tenant: stored on each job, counted against its `max_queued`. */
  tenant?: Tenant;
  /** Where each job's terminal view is POSTed (checked by the caller: checkCallbackUrl). */
  callback_url?: string;
  /** The request's `Idempotency-Key` and the fingerprint of its content (idempotency.ts). */
  idempotency?: { key: string; fingerprint: string };
}

/**
 * Admit requests for one model version, all or nothing: validate every input against the signature
 * first (text, tensors; image headers read by readImageInput), so an invalid one rejects the whole call
 * before anything is stored, then store them all in one enqueue.lua call (job records and stream
 * entries, atomically). Counts `inferline_requests_total` per job.
 * `options.policy` gives the priority level and queue deadline ({@link QueuePolicy}). With
 * `options.idempotency`, a call whose key and fingerprint an earlier call stored returns that
 * call's records as they are now (`replayed`), and stores nothing.
 *
 * @param jobIds one fresh id per input, in the same order, all of one shard (`newJobId(chooseShard(config))`):
 *   the call goes to that partition, whose share of `max_queue_size` and of the tenant's `max_queued`
 *   (`partitionLimit`) it is checked against. Created by the caller so that it can watch for their
 *   events before they can fire.
 * @returns the stored records (`queued`), in input order, or the replayed ones.
 * @throws InferlineError `invalid_input` (also a `priority` above `priority_levels`), `invalid_image`, `payload_too_large`, `queue_full`,
 *   `tenant_queue_full`, `idempotency_key_reused` (nothing stored in every case), `internal` on an id collision; a Redis failure is rethrown as is (the error
 *   handler maps it to 503 `unavailable`; nothing acknowledged).
 */
export async function enqueueJobs(
  redis: Redis,
  metrics: GatewayMetrics,
  target: ResolvedModel,
  inputs: readonly unknown[],
  jobIds: readonly string[],
  options: AdmitOptions = {},
): Promise<{ records: JobRecord[]; replayed: boolean }> {
  const model = target.config.name;
  const labels = { model, version: String(target.version) };
  const createdAt = Date.now();
  const { tenant, idempotency } = options;
  const policy = options.policy ?? {};
  let replayedIds: string[] | undefined;
  try {
    const { batching } = target.config;
    const priority = priorityLevel(batching, policy.priority);
    const stored = await readInputs(target, inputs);
    const deadline = queueDeadline(target, createdAt, policy.timeout_ms);
    const partitions = target.config.partitions;
    const outcome = await enqueueScript(redis, {
      model,
      shard: idShard(jobIds[0] ?? '') ?? model,
      version: target.version,
      max_queue_size: partitionLimit(batching.max_queue_size, partitions),
      created_at: createdAt,
      jobs: stored.map((input, i) => ({ id: jobIds[i] ?? '', input: encode(input) })),
      priority,
      levels: batching.priority_levels,
      ...(deadline === undefined ? {} : { deadline_at: deadline }),
      ...(tenant ? { tenant: tenant.name, ...(tenant.max_queued === undefined ? {} : { max_queued: partitionLimit(tenant.max_queued, partitions) }) } : {}),
      ...(options.callback_url === undefined ? {} : { callback_url: options.callback_url }),
      ...(idempotency ? { idempotency: { ...idempotency, ttl_s: target.config.queue.result_ttl_s } } : {}),
    });
    if (outcome.replayed) replayedIds = outcome.jobIds;
  } catch (error) {
    metrics.requests.inc({ ...labels, status: error instanceof InferlineError ? error.code : 'unavailable' }, inputs.length);
    throw error;
  }
  if (replayedIds) {
    metrics.requests.inc({ ...labels, status: 'replayed' }, inputs.length);
    return { records: await Promise.all(replayedIds.map((id) => readJobRecord(redis, id))), replayed: true };
  }
  metrics.requests.inc({ ...labels, status: 'accepted' }, inputs.length);
  return { records: jobIds.map((id) => ({ id, model, version: target.version, status: 'queued', created_at: createdAt })), replayed: false };
}

/**
 * Resolve a request's model and version ({@link ModelCatalog.resolve}) and admit its inputs
 * ({@link enqueueJobs}). A refusal at resolution is counted in `inferline_requests_total` with
 * `version=""`. When enqueue.lua refuses because the version was closed since the gateway
 * last read the workers (it is being unloaded), the workers are read again and the request resolved
 * and admitted once more, so a version switch costs a client nothing.
 * @returns the version that took the requests and the stored records, in input order.
 * @throws InferlineError as ModelCatalog.resolve and enqueueJobs.
 */
export async function admitJobs(
  models: ModelCatalog,
  redis: Redis,
  metrics: GatewayMetrics,
  request: {
    model: string;
    selector: VersionSelector;
    inputs: readonly unknown[];
    jobIds: readonly string[];
    /** The caller's resolution of `model` + `selector`, when it already made one (it is not made again). */
    target?: ResolvedModel;
  } & AdmitOptions,
): Promise<{ target: ResolvedModel; records: JobRecord[]; replayed: boolean }> {
  const { model, selector, inputs, jobIds } = request;
  let target: ResolvedModel;
  try {
    target = request.target ?? (await models.resolve(model, selector));
  } catch (error) {
    // Refused before any version was chosen (model_unavailable, version_not_found): counted with
    // version "", and for repository models only (a label per name a client sends would grow without bound).
    if (error instanceof InferlineError && models.get(model)) metrics.requests.inc({ model, version: '', status: error.code }, inputs.length);
    throw error;
  }
  try {
    return { target, ...(await enqueueJobs(redis, metrics, target, inputs, jobIds, request)) };
  } catch (error) {
    if (!(error instanceof InferlineError) || error.details?.version_closed !== true) throw error;
    await models.refreshLive();
    target = models.resolveNow(model, selector);
    return { target, ...(await enqueueJobs(redis, metrics, target, inputs, jobIds, request)) };
  }
}
