import type { Redis } from '../redis.ts';
import { InferlineError } from '../errors.ts';
import { CONSUMER_GROUP, JOB_EVENTS_CHANNEL, idShard, keys } from '../keys.ts';
import { runScript } from '../scripts.ts';
import { jobEventsMessage } from './job-events.ts';

/**
 * One typed function per job script (enqueue.lua, start.lua, settle.lua, dead-letter.lua, cancel.lua): each builds
 * its keys and arguments and decodes its reply, and reply codes become errors here once. Callers never
 * assemble script arguments by hand. Every key a call passes is in the model's Redis Cluster slot
 * (`keys.ts`: a job id carries its model's hash tag), which `protocol-slots.test.ts` checks.
 */

/** Reply codes of enqueue.lua (see its header). */
const ENQUEUE_QUEUE_FULL = -1;
const ENQUEUE_ID_EXISTS = -2;
const ENQUEUE_VERSION_CLOSED = -3;
const ENQUEUE_TENANT_FULL = -4;
const ENQUEUE_IDEMPOTENCY_REUSED = -5;
const ENQUEUE_IDEMPOTENT = 'idempotent';

/** `Retry-After` (s) of a 503 `model_unavailable`: about a heartbeat, after which the gateway's view of the workers is fresh. */
export const MODEL_UNAVAILABLE_RETRY_AFTER_S = 1;

/**
 * The error of a call refused because its version is not open for admission (`keys.admission`): no
 * worker opened it, or one closed it to unload it. `details.version_closed` lets the gateway re-resolve.
 */
export function versionClosedError(model: string, version: number): InferlineError {
  return new InferlineError('model_unavailable', `model "${model}" version ${version} takes no new requests (not loaded, or being unloaded); retry later`, {
    retry_after_s: MODEL_UNAVAILABLE_RETRY_AFTER_S,
    version_closed: true,
  });
}

/** `Retry-After` (s) of a 429 `queue_full`: about how long a worker needs to drain some of a full queue. */
export const QUEUE_FULL_RETRY_AFTER_S = 1;

/** What {@link enqueueJobs} stores: the requests of one call to one model version. */
export interface EnqueueJobsRequest {
  model: string;
  /**
   * The partition's shard the jobs go to (`shardName(model, k)`; every job id was made for it by
   * `newJobId(shard)`); default the model (partition 0).
   */
  shard?: string;
  version: number;
  /** Most entries the version's stream of this partition may hold (waiting or in flight); `partitionLimit(max_queue_size, partitions)`. */
  max_queue_size: number;
  /** ms since epoch */
  created_at: number;
  /** One per request: its id (from `newJobId(model)`) and its input as MessagePack bytes. */
  jobs: readonly { id: string; input: Buffer }[];
  /** Priority level the requests are queued at (1 = highest, ≤ `levels`); default 1. */
  priority?: number;
  /** The version's number of priority levels (`batching.priority_levels`): the cap counts them all; default 1. */
  levels?: number;
  /** ms since epoch after which a request still queued fails `deadline_exceeded` without inference; absent = none. */
  deadline_at?: number;
  /** The tenant the jobs belong to (stored in each record, counted in `keys.tenantQueued`); absent = none. */
  tenant?: string;
  /** Most requests the tenant may have waiting or running in this partition of the model's queue (`partitionLimit(max_queued, partitions)`); absent = no cap. */
  max_queued?: number;
  /** Where the terminal view of each job is POSTed (stored in each record). */
  callback_url?: string;
  /** An `Idempotency-Key` and the request's fingerprint: a second call with both returns the first call's jobs. */
  idempotency?: IdempotencyClaim;
}

/** An `Idempotency-Key` of one request (IETF draft-ietf-httpapi-idempotency-key-header), as the scripts store it. */
export interface IdempotencyClaim {
  /** The header's value. */
  key: string;
  /** SHA-256 (hex) of the request's content: the same key with another fingerprint is refused. */
  fingerprint: string;
  /** Seconds the key is remembered from the first request. */
  ttl_s: number;
}

/** What {@link enqueueJobs} did: stored the jobs, or found that an earlier call with the same idempotency key did. */
export type EnqueueOutcome = { replayed: false; entryIds: string[] } | { replayed: true; /** The first call's job ids, in its order. */ jobIds: string[] };

/**
 * The error of a request refused because its tenant has `max_queued` requests in the model's queue.
 * `Retry-After` as for queue_full.
 */
export function tenantQueueFullError(tenant: string, model: string, count: number, max: number): InferlineError {
  return new InferlineError(
    'tenant_queue_full',
    `tenant "${tenant}" cannot queue ${count} more request${count === 1 ? '' : 's'} for model "${model}": it may have ${max} waiting or running (max_queued); retry later`,
    { retry_after_s: QUEUE_FULL_RETRY_AFTER_S },
  );
}

/** The error of an `Idempotency-Key` sent again with another request (422, as the IETF draft says). */
export function idempotencyReusedError(key: string): InferlineError {
  return new InferlineError('idempotency_key_reused', `Idempotency-Key "${key}" was used with another request; use a new key for a new request`);
}

/** Per model and tenant, the idempotency key enqueue.lua is given (and does not touch) for a call without one. */
const unusedIdempotencyKeys = new Map<string, string>();

/**
 * The key list's idempotency key of a call without an `Idempotency-Key` (the key text empty), made
 * once per shard (model partition) and tenant (tenants are configured, so few): a SHA-256 per request for a key the
 * script never touches is not worth its cost.
 */
function unusedIdempotencyKey(model: string, tenant: string): string {
  const id = `${model}\n${tenant}`;
  let key = unusedIdempotencyKeys.get(id);
  if (key === undefined) unusedIdempotencyKeys.set(id, (key = keys.idempotency(model, 'jobs', tenant, '')));
  return key;
}

/** The error of requests refused because the version's streams hold `max_queue_size` entries (429, `Retry-After`). */
function queueFullError(model: string, version: number, count: number, max: number): InferlineError {
  return new InferlineError(
    'queue_full',
    `model "${model}" version ${version} cannot take ${count} more request${count === 1 ? '' : 's'}: ${max} may wait (max_queue_size); retry later`,
    { retry_after_s: QUEUE_FULL_RETRY_AFTER_S },
  );
}

/**
 * Admit the requests of one call, all or nothing, in one script call (enqueue.lua): each job record
 * and stream entry is written, or none is; with `idempotency`, the key is claimed in the same call, so
 * a retry after a lost answer finds the jobs the first call stored.
 *
 * A call of one request without `idempotency` (the common one-request `POST /v1/jobs` or `:predict`)
 * is sent at once when no such call for the same model shard is in flight on the connection; while one
 * is, the calls that arrive wait for it, then go out together, one enqueue-each.lua call per version,
 * priority, tenant and callback they share (as TCP's Nagle algorithm, or ioredis auto-pipelining,
 * which also runs one pipeline at a time): one script call instead of one per request under load, no
 * wait when idle, and a shard whose master is slow (a Redis Cluster failover) holds up only its own
 * calls. Each request is still admitted or refused on its own, in arrival order, with the outcome and
 * error it would get alone.
 * @returns the stream entry ids, in request order, or the job ids of the first call with the same
 *   idempotency key and fingerprint (nothing stored).
 * @throws InferlineError `queue_full` (429, `retry_after_s`) when the stream cannot take them all,
 *   `tenant_queue_full` (429) over the tenant's `max_queued`, `idempotency_key_reused` (422),
 *   `model_unavailable` ({@link versionClosedError}) when the version is not open for admission,
 *   `internal` on a job id collision; a Redis failure is rethrown as is (the gateway answers 503).
 */
export function enqueueJobs(redis: Redis, request: EnqueueJobsRequest): Promise<EnqueueOutcome> {
  if (request.jobs.length !== 1 || request.idempotency) return enqueueCall(redis, request);
  let shards = pendingSingles.get(redis);
  if (!shards) pendingSingles.set(redis, (shards = new Map<string, SinglesState>()));
  const shard = request.shard ?? request.model;
  let singles = shards.get(shard);
  if (!singles) shards.set(shard, (singles = { inFlight: 0, waiting: new Map<string, PendingSingle[]>() }));
  const state = singles;
  return new Promise<EnqueueOutcome>((resolve, reject) => {
    const pending = { request, resolve, reject };
    if (state.inFlight === 0) {
      sendSingles(redis, state, [[pending]]);
      return;
    }
    const key = JSON.stringify([request.model, request.version, request.priority ?? 1, request.levels ?? 1, request.max_queue_size, request.tenant ?? '', request.max_queued ?? 0, request.callback_url ?? '']);
    let group = state.waiting.get(key);
    if (!group) state.waiting.set(key, (group = []));
    group.push(pending);
  });
}

/** A one-request call of {@link enqueueJobs} waiting to be sent. */
interface PendingSingle {
  request: EnqueueJobsRequest;
  resolve: (outcome: EnqueueOutcome) => void;
  reject: (error: unknown) => void;
}

/** Of one model shard on one connection: its one-request script calls in flight, and the calls waiting for them by what they share. */
interface SinglesState {
  inFlight: number;
  waiting: Map<string, PendingSingle[]>;
}

/** Per connection and model shard (`shardName`), the {@link SinglesState}. */
const pendingSingles = new WeakMap<Redis, Map<string, SinglesState>>();

/** Send groups of one-request calls, each in one script call; once none is in flight, send what waited meanwhile. */
function sendSingles(redis: Redis, state: SinglesState, groups: Iterable<PendingSingle[]>): void {
  const sent = (): void => {
    if (--state.inFlight > 0 || state.waiting.size === 0) return;
    const waiting = [...state.waiting.values()];
    state.waiting.clear();
    sendSingles(redis, state, waiting);
  };
  for (const group of groups) {
    state.inFlight++;
    if (group.length === 1) {
      const [{ request, resolve, reject }] = group as [PendingSingle];
      enqueueCall(redis, request).then(resolve, reject).finally(sent);
    } else {
      enqueueEach(redis, group)
        .catch((error: unknown) => group.forEach(({ reject }) => reject(error)))
        .finally(sent);
    }
  }
}

/** enqueue-each.lua replies per request; `-3` for them all. */
const EACH_QUEUE_FULL = -1;
const EACH_ID_EXISTS = -2;
const EACH_VERSION_CLOSED = -3;
const EACH_TENANT_FULL = -4;

/** One enqueue-each.lua call for requests that share everything but their job, input and times; settles each. */
async function enqueueEach(redis: Redis, group: readonly PendingSingle[]): Promise<void> {
  const first = (group[0] as PendingSingle).request;
  const { model, version } = first;
  const { shard, tenant, priority, levelStreams, scriptKeys } = admissionKeys(first);
  const args: (string | number | Buffer)[] = [first.max_queue_size, model, version, tenant, first.max_queued ?? 0, first.callback_url ?? '', priority, levelStreams.length];
  for (const { request } of group) {
    const job = request.jobs[0] as { id: string; input: Buffer };
    scriptKeys.push(keys.job(job.id));
    args.push(job.id, job.input, request.created_at, request.deadline_at === undefined ? '' : Math.floor(request.deadline_at));
  }
  scriptKeys.push(keys.tenantQueued(shard), ...levelStreams);
  const reply = await runScript<(string | number)[] | number>(redis, 'enqueue-each', scriptKeys, args);
  group.forEach(({ resolve, reject }, i) => {
    const outcome = Array.isArray(reply) ? reply[i] : reply;
    if (typeof outcome === 'string') resolve({ replayed: false, entryIds: [outcome] });
    else if (outcome === EACH_QUEUE_FULL) reject(queueFullError(model, version, 1, first.max_queue_size));
    else if (outcome === EACH_TENANT_FULL) reject(tenantQueueFullError(tenant, model, 1, first.max_queued ?? 0));
    else if (outcome === EACH_VERSION_CLOSED) reject(versionClosedError(model, version));
    else reject(new InferlineError('internal', outcome === EACH_ID_EXISTS ? `a job id of model "${model}" already exists` : `enqueue-each answered ${String(outcome)}`));
  });
}

/**
 * What enqueue.lua and enqueue-each.lua both start from: the request's shard, tenant ('' = none) and
 * priority level, every level's stream of its version, and the script's first keys (the stream of its
 * level, the admission hash).
 */
function admissionKeys(request: EnqueueJobsRequest): { shard: string; tenant: string; priority: number; levelStreams: string[]; scriptKeys: string[] } {
  const shard = request.shard ?? request.model;
  const priority = request.priority ?? 1;
  return {
    shard,
    tenant: request.tenant ?? '',
    priority,
    levelStreams: keys.requestStreams(shard, request.version, request.levels ?? 1),
    scriptKeys: [keys.requests(shard, request.version, priority), keys.admission(shard)],
  };
}

/** One enqueue.lua call: the requests of one call, all or nothing (see {@link enqueueJobs}). */
async function enqueueCall(redis: Redis, request: EnqueueJobsRequest): Promise<EnqueueOutcome> {
  const { model, version, jobs, idempotency } = request;
  const { shard, tenant, priority, levelStreams, scriptKeys } = admissionKeys(request);
  const args: (string | number | Buffer)[] = [request.max_queue_size, model, version, request.created_at];
  for (const job of jobs) {
    scriptKeys.push(keys.job(job.id));
    args.push(job.id);
  }
  for (const job of jobs) args.push(job.input);
  scriptKeys.push(keys.tenantQueued(shard), idempotency ? keys.idempotency(shard, 'jobs', tenant, idempotency.key) : unusedIdempotencyKey(shard, tenant), ...levelStreams);
  args.push(tenant, request.max_queued ?? 0, request.callback_url ?? '', idempotency?.fingerprint ?? '', idempotency?.ttl_s ?? 0);
  args.push(request.deadline_at === undefined ? '' : Math.floor(request.deadline_at), priority, levelStreams.length);
  const reply = await runScript<string[] | number>(redis, 'enqueue', scriptKeys, args);
  if (Array.isArray(reply) && reply[0] === ENQUEUE_IDEMPOTENT) return { replayed: true, jobIds: (reply[1] ?? '').split('\n') };
  if (reply === ENQUEUE_TENANT_FULL) throw tenantQueueFullError(tenant, model, jobs.length, request.max_queued ?? 0);
  if (reply === ENQUEUE_IDEMPOTENCY_REUSED) throw idempotencyReusedError(idempotency?.key ?? '');
  if (reply === ENQUEUE_QUEUE_FULL) throw queueFullError(model, version, jobs.length, request.max_queue_size);
  if (reply === ENQUEUE_VERSION_CLOSED) throw versionClosedError(model, version);
  if (reply === ENQUEUE_ID_EXISTS || !Array.isArray(reply)) throw new InferlineError('internal', `a job id of model "${model}" already exists`);
  return { replayed: false, entryIds: reply };
}

/**
 * Mark the jobs of a batch running (start.lua, one call) and announce it.
 * @param jobIds jobs of one model (their keys share the model's slot)
 * @param startedAt ms since epoch; a queued job whose `deadline_at` is not after it is not started
 * @returns per job its status before the call: 'queued' or 'running' (to run), a terminal status or
 *   'missing' (to drop without inference), or 'deadline_exceeded' (to settle failed without inference).
 */
export async function startJobs(redis: Redis, jobIds: readonly string[], startedAt: number): Promise<string[]> {
  if (jobIds.length === 0) return [];
  return runScript<string[]>(redis, 'start', jobIds.map((id) => keys.job(id)), [startedAt, JOB_EVENTS_CHANNEL, ...jobIds]);
}

/** One job's result, as {@link settleJobs} writes it. */
export type JobResult =
  | { ok: true; /** JSON bytes of the output (`outputToJson`). */ output: Buffer }
  | { ok: false; code: string; message: string };

/** Figures shared by every request of a batch. */
export interface BatchFigures {
  /** Preprocessing + forward pass + postprocessing of the whole batch, ms. */
  inference_ms: number;
  batch_size: number;
  batch_id: string;
  /** Seconds each record lives once terminal (`result_ttl_s`). */
  result_ttl_s: number;
}

/** One job of a batch to settle. */
export interface JobSettlement {
  jobId: string;
  entryId: string;
  result: JobResult;
  /** From acceptance to the start of its batch, ms. */
  queue_ms: number;
  /** Part of queue_ms spent waiting for its version to load (a lazily loaded version), ms; absent when it did not wait. */
  load_ms?: number;
  /** Priority level of the stream the entry is in (1 = highest); default 1. */
  level?: number;
}

/**
 * Settle the single jobs of one batch of one model version in one script call (settle.lua): write
 * each result unless its job is already terminal, announce it, acknowledge and delete every entry.
 * @param shard the partition the batch was read from (`shardName`; the model for partition 0): the
 *   jobs' ids carry it, and its streams, tenant counts and callbacks due set are settled.
 * @returns per settlement whether this call wrote it (a redelivery of a settled job writes nothing).
 * @throws Error when Redis fails; the entries then stay pending and are reclaimed later.
 */
export async function settleJobs(redis: Redis, shard: string, version: number, batch: BatchFigures, settlements: readonly JobSettlement[]): Promise<boolean[]> {
  if (settlements.length === 0) return [];
  const levels = new Set(settlements.map((s) => s.level ?? 1));
  if (levels.size > 1) {
    // One call per level's stream (each acknowledges its own entries); answered in the given order.
    const byLevel = [...levels].map((level) => settlements.flatMap((s, i) => ((s.level ?? 1) === level ? [{ s, i }] : [])));
    const replies = await Promise.all(byLevel.map((items) => settleJobs(redis, shard, version, batch, items.map(({ s }) => s))));
    const written = new Array<boolean>(settlements.length).fill(false);
    byLevel.forEach((items, l) => items.forEach(({ i }, k) => (written[i] = replies[l]?.[k] ?? false)));
    return written;
  }
  const scriptKeys = [keys.requests(shard, version, settlements[0]?.level ?? 1)];
  const inferenceMs = batch.inference_ms.toFixed(3);
  // The events as settle.lua announces them (`<id>\t<status>\t<queue_ms>\t<load_ms>\t<inference_ms>\t
  // <batch_size>\t<batch_id>\t<output or code\tmessage>`), built here as one message: the script reads
  // each result from it by offset (each output crosses the socket once) and publishes it as it is
  // when it writes every result, instead of building the message in Lua.
  const figures = `\t${inferenceMs}\t${batch.batch_size}\t${batch.batch_id}\t`;
  const eventParts: Buffer[] = [];
  const perJob: string[][] = [];
  for (const { jobId, entryId, result, queue_ms, load_ms } of settlements) {
    scriptKeys.push(keys.job(jobId));
    const status = result.ok ? 'succeeded' : 'failed';
    const queueMs = queue_ms.toFixed(3);
    const loadMs = load_ms === undefined ? '' : load_ms.toFixed(3);
    perJob.push([jobId, entryId, status, queueMs, loadMs]);
    eventParts.push(Buffer.from(`${jobId}\t${status}\t${queueMs}\t${loadMs}${figures}`), result.ok ? result.output : Buffer.from(`${result.code}\t${result.message}`));
  }
  const { message, eventOffsets, tailOffsets } = jobEventsMessage(eventParts);
  const args: (string | number | Buffer)[] = [CONSUMER_GROUP, Date.now(), inferenceMs, batch.batch_size, batch.batch_id, batch.result_ttl_s, JOB_EVENTS_CHANNEL, message];
  perJob.forEach((fields, i) => {
    const value = tailOffsets[i] ?? 0;
    // 1-based and inclusive, as Lua's string.sub takes them (an empty value ends before it starts).
    args.push(...fields, (eventOffsets[i] ?? 0) + 1, value + 1, value + (eventParts[2 * i + 1] as Buffer).length);
  });
  scriptKeys.push(keys.tenantQueued(shard), keys.callbacksDue(shard));
  const written = await runScript<number[]>(redis, 'settle', scriptKeys, args);
  return written.map((flag) => Number(flag) === 1);
}

/** A request moved to the dead-letter stream ({@link deadLetterJob}). */
export interface DeadLetter {
  /** The shard the entry was read from (`shardName`; the model for partition 0). */
  model: string;
  version: number;
  jobId: string;
  entryId: string;
  /** Its delivery count, from the pending entries list. */
  deliveries: number;
  result_ttl_s: number;
  message: string;
  /** Priority level of the stream the entry is in; default 1. */
  level?: number;
}

/**
 * Copy a poison request to the dead-letter stream, fail its job with `poison` unless terminal, and
 * acknowledge + delete the entry (dead-letter.lua).
 * @returns true when this call failed the job.
 */
export async function deadLetterJob(redis: Redis, letter: DeadLetter): Promise<boolean> {
  const { model, version, jobId } = letter;
  const reply = await runScript<number>(redis, 'dead-letter', [
    keys.job(jobId), keys.requests(model, version, letter.level ?? 1), keys.deadLetter(model, version), keys.tenantQueued(model), keys.callbacksDue(model),
  ], [
    CONSUMER_GROUP, letter.entryId, letter.deliveries, Date.now(), letter.result_ttl_s, JOB_EVENTS_CHANNEL, jobId, letter.message,
  ]);
  return Number(reply) === 1;
}

/** What {@link cancelJob} found: `cancelled` by this call, or the state that kept it from being cancelled. */
export type CancelOutcome = 'cancelled' | 'running' | 'finished' | 'missing';

/**
 * Cancel a single job that is still queued (cancel.lua): it becomes `cancelled` (error code
 * `cancelled`), its stream entry is acknowledged and deleted, so no worker runs it and it no longer
 * counts against `max_queue_size`, its tenant's `max_queued` slot is released and its callback (if
 * any) recorded due, and waiters are woken. Reads the job's version and priority level
 * first (they never change) to name its stream.
 * @param result_ttl_s seconds the cancelled record lives (its model's `queue.result_ttl_s`)
 * @returns `cancelled`, or `running` (it runs to its end), `finished` (already terminal), `missing`.
 * @throws Error when Redis fails.
 */
export async function cancelJob(redis: Redis, jobId: string, result_ttl_s: number, message: string): Promise<CancelOutcome> {
  const [model, version, priority] = await redis.hmget(keys.job(jobId), 'model', 'version', 'priority');
  if (model == null || version == null) return 'missing';
  // The job's partition is in its id (the record's `model` is the model's name).
  const shard = idShard(jobId) ?? model;
  const before = await runScript<string>(redis, 'cancel', [
    keys.job(jobId), keys.requests(shard, Number(version), Number(priority ?? 1)), keys.tenantQueued(shard), keys.callbacksDue(shard),
  ], [
    CONSUMER_GROUP, Date.now(), result_ttl_s, JOB_EVENTS_CHANNEL, jobId, message,
  ]);
  if (before === 'queued') return 'cancelled';
  if (before === 'running') return 'running';
  return before === 'missing' ? 'missing' : 'finished';
}
