import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import {
  BULLMQ_PREFIX,
  CALLBACKS_QUEUE,
  checkCallbackUrl,
  DELIVERY_HEADER,
  isInferlineError,
  jobViewJson,
  keys,
  parseJobRecord,
  SIGNATURE_HEADER,
  signCallback,
  toGroupView,
  type ApiKeys,
  type CallbackJobData,
  type Logger,
  type Settings,
  type Redis,
} from '@inferline/shared';

/**
 * Callback delivery (DESIGN.md section 8), run by the aggregator.
 *
 * Nothing is lost when a process dies: the script that writes a job's or group's terminal state
 * (settle.lua, dead-letter.lua, the group scripts) records its id in a "callbacks due" sorted set in
 * the same atomic call (`keys.callbacksDue(model)`, `keys.groupCallbacksDue(model)`: each model has
 * its own, in its slot). The aggregator drains the sets of every model ({@link drainDueCallbacks}): it
 * adds one BullMQ job per id to the queue `callbacks` (job id `<kind>-<id>`, so adding it again is a no-op while BullMQ keeps the job), then
 * removes the ids from the set. A crash between the two adds the same job id again: no duplicate.
 * The BullMQ worker ({@link startCallbackWorker}) POSTs the terminal view, signed; a failed attempt
 * (network error, timeout, a non-2xx answer) is retried with exponential backoff, and after
 * `callback_attempts` the job stays in the queue's failed set (the dead letters), logged and counted.
 * Delivery is at least once: a worker that dies after the POST but before BullMQ records it sends it
 * again, so receivers deduplicate on `Inferline-Delivery`.
 */

/** Ids taken from one due set per drain round. */
const DRAIN_BATCH = 500;
/** Completed deliveries BullMQ keeps (so that re-adding one after a crash is a no-op), seconds. */
const KEEP_COMPLETED_S = 86_400;

/**
 * Deliveries one aggregator runs at once per `aggregator_concurrency` slot: a delivery waits on the
 * network (up to callback_timeout_ms), not on the CPU, so a slow receiver must not hold the others up.
 */
const DELIVERIES_PER_SLOT = 8;

/** What happened to one delivery attempt, as `inferline_callbacks_total{outcome}` counts it. */
export type CallbackOutcome = 'delivered' | 'retried' | 'dead_lettered' | 'skipped';

/** The BullMQ job id of a delivery. */
function deliveryJobId(data: CallbackJobData): string {
  return `${data.kind}-${data.id}`;
}

/**
 * Move the ids of every due set onto the queue `callbacks`, then out of their set.
 * @param models the shards whose job and group due sets to drain: every partition of the repository's models (`modelShards`)
 * @returns how many ids were moved.
 * @throws Error when Redis fails (the ids stay in their sets; the next round takes them).
 */
export async function drainDueCallbacks(redis: Redis, queue: Queue<CallbackJobData>, models: readonly string[], retry: Pick<Settings, 'callback_attempts' | 'callback_backoff_ms'>): Promise<number> {
  const sets: { key: string; kind: CallbackJobData['kind'] }[] = models.flatMap((model) => [
    { key: keys.callbacksDue(model), kind: 'job' as const },
    { key: keys.groupCallbacksDue(model), kind: 'group' as const },
  ]);
  let moved = 0;
  // Every set is read at once: on an auto-pipelining connection that is one write per round (per
  // node on a cluster), where reading them one after the other made a round trip per set, most of
  // an idle aggregator's CPU.
  const due = await Promise.all(sets.map(({ key }) => redis.zrange(key, 0, DRAIN_BATCH - 1)));
  for (const [i, { key, kind }] of sets.entries()) {
    const ids = due[i] ?? [];
    if (ids.length === 0) continue;
    await queue.addBulk(
      ids.map((id) => ({
        name: CALLBACKS_QUEUE,
        data: { kind, id },
        opts: {
          jobId: deliveryJobId({ kind, id }),
          attempts: retry.callback_attempts,
          backoff: { type: 'exponential', delay: retry.callback_backoff_ms },
          removeOnComplete: { age: KEEP_COMPLETED_S },
          removeOnFail: false,
        },
      })),
    );
    await redis.zrem(key, ...ids);
    moved += ids.length;
  }
  return moved;
}

/** What one delivery sends: the terminal view, where, and the tenant whose secret signs it. */
interface Delivery {
  url: string;
  tenant: string | undefined;
  body: Buffer;
}

/** Read the record of a due job or group into what to send; undefined when it expired meanwhile, or has no callback_url. */
async function readDelivery(redis: Redis, data: CallbackJobData): Promise<Delivery | undefined> {
  if (data.kind === 'job') {
    const raw = await redis.hgetallBuffer(keys.job(data.id));
    const record = parseJobRecord(raw);
    const url = raw.callback_url?.toString();
    if (!record || !url) return undefined;
    return { url, tenant: raw.tenant?.toString(), body: jobViewJson(record) };
  }
  const raw = await redis.hgetallBuffer(keys.group(data.id));
  const view = toGroupView(raw);
  const url = raw.callback_url?.toString();
  if (!view || !url) return undefined;
  return { url, tenant: raw.tenant?.toString(), body: Buffer.from(JSON.stringify(view)) };
}

/**
 * POST one terminal view to its callback_url, signed ({@link signCallback}) with the tenant's
 * `callback_secret`, else `callback_secret` of the settings.
 * @returns 'delivered' on a 2xx answer, 'skipped' when the record expired or has no callback_url.
 * @throws UnrecoverableError (no retry) when no secret is configured any more or the URL now resolves
 *   to a refused address; Error on a network failure, a timeout or a non-2xx answer (retried).
 */
export async function deliverCallback(
  redis: Redis,
  data: CallbackJobData,
  apiKeys: ApiKeys,
  settings: Pick<Settings, 'callback_secret' | 'callback_allow_private' | 'callback_timeout_ms'>,
): Promise<'delivered' | 'skipped'> {
  const delivery = await readDelivery(redis, data);
  if (!delivery) return 'skipped';
  const secret = (delivery.tenant === undefined ? undefined : apiKeys.tenants.get(delivery.tenant)?.callback_secret) ?? settings.callback_secret;
  if (secret === undefined) throw new UnrecoverableError(`no callback secret for tenant "${delivery.tenant ?? ''}" (callback_secret, CALLBACK_SECRET)`);
  try {
    await checkCallbackUrl(delivery.url, settings.callback_allow_private);
  } catch (error) {
    if (isInferlineError(error)) throw new UnrecoverableError(error.message);
    throw error;
  }
  const response = await fetch(delivery.url, {
    method: 'POST',
    body: delivery.body,
    redirect: 'manual',
    signal: AbortSignal.timeout(settings.callback_timeout_ms),
    headers: {
      'content-type': 'application/json',
      'user-agent': 'inferline-callbacks',
      [SIGNATURE_HEADER]: signCallback(secret, delivery.body, Math.floor(Date.now() / 1000)),
      [DELIVERY_HEADER]: `${data.kind}:${data.id}`,
    },
  });
  await response.body?.cancel();
  if (response.status < 200 || response.status > 299) throw new Error(`${delivery.url} answered ${response.status}`);
  return 'delivered';
}

/**
 * The BullMQ worker of the queue `callbacks` (https://docs.bullmq.io/guide/workers): each job is one
 * delivery ({@link deliverCallback}). Every attempt's outcome goes to `observe`; the last failed attempt
 * of a job is logged as an error and counted `dead_lettered` (the job stays in the failed set).
 */
export function startCallbackWorker(
  redis: Redis,
  apiKeys: ApiKeys,
  settings: Pick<Settings, 'callback_secret' | 'callback_allow_private' | 'callback_timeout_ms' | 'aggregator_concurrency'>,
  log: Logger,
  observe: (outcome: CallbackOutcome) => void,
): Worker<CallbackJobData> {
  const worker = new Worker<CallbackJobData>(
    CALLBACKS_QUEUE,
    async (job: Job<CallbackJobData>) => {
      const outcome = await deliverCallback(redis, job.data, apiKeys, settings);
      observe(outcome);
      log.info({ [`${job.data.kind}_id`]: job.data.id, outcome, attempt: job.attemptsMade + 1 }, 'callback');
    },
    { connection: redis, prefix: BULLMQ_PREFIX, concurrency: settings.aggregator_concurrency * DELIVERIES_PER_SLOT },
  );
  worker.on('error', (error) => log.warn({ err: error }, 'callback worker error'));
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    const last = job.attemptsMade >= attempts || error instanceof UnrecoverableError || error.name === 'UnrecoverableError';
    observe(last ? 'dead_lettered' : 'retried');
    const context = { [`${job.data.kind}_id`]: job.data.id, err: error, attempt: job.attemptsMade, attempts };
    if (last) log.error(context, 'callback dead-lettered: kept in the failed set of the queue "callbacks"');
    else log.warn(context, 'callback attempt failed; retrying');
  });
  return worker;
}
