import { Worker, type Job } from 'bullmq';
import {
  BULLMQ_PREFIX,
  connectRedis,
  modelShards,
  createReduceQueue,
  decode,
  encode,
  enqueueReduce,
  groupCancel,
  groupFinish,
  createCallbacksQueue,
  isInferlineError,
  keys,
  loadApiKeys,
  scanRepository,
  REDUCE_QUEUE,
  type Logger,
  type ReduceJobData,
  type ReducerName,
  type Settings,
  type Redis,
} from '@inferline/shared';
import { AggregatorMetrics } from './aggregator-metrics.ts';
import { drainDueCallbacks, startCallbackWorker } from './callbacks.ts';
import { serveMetrics } from './metrics.ts';
import { createReducer } from './reducers/index.ts';

/** Options of {@link startAggregator}. */
export interface AggregatorOptions {
  settings: Settings & { redis_url: string };
  logger: Logger;
  /** Abort to stop: the reduces in hand finish first (BullMQ `Worker.close`). */
  signal: AbortSignal;
}

/** What {@link reduceGroup} did. */
export type ReduceOutcome =
  | { reduced: true; size: number; failed_indexes: number[] }
  | { reduced: false; reason: string };

/**
 * Reduce one group whose members all settled (status `reducing`): read the member outputs in index
 * order, `chunkSize` per round trip (HMGET on the group's results hash, and its inputs hash for a
 * reducer that draws on them), feed them to the group's reducer, and write the output with
 * group-finish.lua, which also drops the member results and lets the record expire `result_ttl_s` later.
 * Memory is O(chunkSize + reducer state), not O(group size).
 *
 * A member with no result failed (`on_item_error: "skip"`; under `"fail"` the group would have
 * failed already) and is reported in `failed_indexes`.
 *
 * Returns `{reduced: false}` without writing when the group is not reducing (gone, cancelled, or
 * already reduced by an earlier run of the same job).
 * @throws InferlineError `reduce_failed` / `empty_group` when the member outputs do not fit the reducer,
 *   `invalid_reduce` when the record names no reducer (the caller fails the group: retrying cannot
 *   help); Redis errors as they are (retried).
 */
export async function reduceGroup(redis: Redis, groupId: string, chunkSize: number): Promise<ReduceOutcome> {
  const groupKey = keys.group(groupId);
  const [status, reduce, outputName, sizeText, keepInputs] = await redis.hmget(groupKey, 'status', 'reduce', 'output_name', 'size', 'keep_inputs');
  if (status !== 'reducing') return { reduced: false, reason: status ? `group is ${status}` : 'group does not exist' };
  await redis.hincrby(groupKey, 'reduce_runs', 1);
  const size = Number(sizeText ?? 0);
  const reducer = createReducer(reduce as ReducerName, { output: outputName ?? '', size });
  const withInputs = keepInputs === '1';
  const failedIndexes: number[] = [];
  for (let start = 0; start < size; start += chunkSize) {
    const indexes = Array.from({ length: Math.min(chunkSize, size - start) }, (_, i) => start + i);
    const pipeline = redis.pipeline().hmgetBuffer(keys.groupResults(groupId), ...indexes.map(String));
    if (withInputs) pipeline.hmgetBuffer(keys.groupInputs(groupId), ...indexes.map(String));
    const replies = (await pipeline.exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const outputs = replies[0]?.[1] as (Buffer | null)[];
    const inputs = withInputs ? (replies[1]?.[1] as (Buffer | null)[]) : [];
    for (const [i, index] of indexes.entries()) {
      const output = outputs[i];
      if (!output) {
        failedIndexes.push(index);
        continue;
      }
      // Inputs are kept as the gateway stored them in the stream entry: MessagePack of the image bytes.
      const input = inputs[i];
      await reducer.add(decode(output), index, input ? Buffer.from(decode<Uint8Array>(input)) : undefined);
    }
  }
  const output = await reducer.finish();
  const written = await groupFinish(redis, groupId, {
    status: 'succeeded',
    output: encode(output),
    failed_indexes: failedIndexes.length > 0 ? encode(failedIndexes) : '',
  });
  if (!written) return { reduced: false, reason: 'group stopped reducing meanwhile (cancelled)' };
  return { reduced: true, size, failed_indexes: failedIndexes };
}

/**
 * Re-add the reduce job of every group that has been ready (all members settled) for at least `ageMs`
 * without finishing: the process that should have added it died first. Adding a job that exists is a
 * no-op (job id = group id). Each shard keeps its own ready set (keys.ts), so every shard in `shards`
 * is visited (at most {@link SWEEP_BATCH} groups each per sweep).
 * @param shards the shards to sweep: the models of the repository (a shard is a model's name today)
 * @returns how many groups it looked at.
 * @throws Error when Redis fails (the next sweep looks again).
 */
export async function sweepReadyGroups(redis: Redis, shards: readonly string[], add: (groupId: string) => Promise<void>, ageMs: number): Promise<number> {
  let seen = 0;
  for (const shard of shards) {
    const ids = await redis.zrangebyscore(keys.groupsReady(shard), '-inf', Date.now() - ageMs, 'LIMIT', 0, SWEEP_BATCH);
    for (const id of ids) await add(id);
    seen += ids.length;
  }
  return seen;
}

/** Groups one sweep looks at, at most, per set. */
const SWEEP_BATCH = 1_000;

/**
 * Cancel every group left open (no chunk, no close) for at least `ttlMs`: its client went away.
 * Groups are taken from each shard's open set (group-add.lua scores each by its last call); one that
 * finished meanwhile is only taken out of the set.
 * @param shards the shards to sweep, as for {@link sweepReadyGroups}
 * @returns the ids of the groups cancelled.
 * @throws Error when Redis fails (the next sweep looks again).
 */
export async function sweepAbandonedGroups(redis: Redis, shards: readonly string[], ttlMs: number): Promise<string[]> {
  const cancelled: string[] = [];
  for (const shard of shards) {
    const open = keys.groupsOpen(shard);
    const ids = await redis.zrangebyscore(open, '-inf', Date.now() - ttlMs, 'LIMIT', 0, SWEEP_BATCH);
    for (const id of ids) {
      const outcome = await groupCancel(redis, id, `abandoned: open with no new input or close for ${Math.round(ttlMs / 1000)} s (open_group_ttl_s)`);
      // A chunk landing between the read above and this cancel loses: a window of one round trip, on a
      // group that was idle for ttlMs.
      if (outcome === 'cancelled') cancelled.push(id);
      await redis.zrem(open, id);
    }
  }
  return cancelled;
}

/**
 * How far the callbacks drain backs off while its rounds find nothing: at most this many
 * `callback_poll_interval_ms` between rounds (so an idle aggregator reads the due sets once a second
 * by default, and the first callback after a quiet spell waits at most that long).
 */
const CALLBACK_IDLE_BACKOFF = 4;

/**
 * Run the aggregator (DESIGN.md section 1) until `signal` aborts: a BullMQ worker on queue `reduce`
 * (https://docs.bullmq.io/guide/workers) whose jobs each reduce one group ({@link reduceGroup}), with
 * `aggregator_concurrency` reduces at once. A reduce that throws is retried `reduce_attempts` times
 * with exponential backoff; an output that does not fit the reducer fails the group at once, and the
 * last failed attempt fails it with `reduce_failed`. Every `reduce_sweep_interval_ms` it re-adds lost
 * reduce jobs ({@link sweepReadyGroups}) and cancels groups left open longer than `open_group_ttl_s`
 * ({@link sweepAbandonedGroups}), visiting the sets of every model the repository lists (re-read every
 * `poll_interval_ms`; a model once seen stays visited). It also delivers callbacks (callbacks.ts): every
 * `callback_poll_interval_ms` (up to {@link CALLBACK_IDLE_BACKOFF} times that while none are due) it moves the ids of finished jobs and groups with a callback_url from
 * their due sets onto the BullMQ queue `callbacks`, whose worker POSTs each signed terminal view,
 * retried with exponential backoff. With `aggregator_metrics_port` set it serves `/metrics`
 * ({@link AggregatorMetrics}), `/healthz` and `/readyz` (ready while its Redis connection is).
 * @throws Error when aggregator_metrics_port cannot be bound.
 */
export async function startAggregator(options: AggregatorOptions): Promise<void> {
  const { settings, logger, signal } = options;
  const log = logger;
  const apiKeys = loadApiKeys(settings);
  const redis = connectRedis(settings.redis_url, { name: 'aggregator' });
  redis.on('error', (error: Error) => log.warn({ err: error }, 'redis connection error'));
  const queue = createReduceQueue(redis, (error) => log.debug({ err: error }, 'reduce queue: redis connection error'));
  const metrics = new AggregatorMetrics(queue, log);
  const health = { ready: () => (redis.status === 'ready' ? undefined : `redis connection is ${redis.status}`) };
  const port = settings.aggregator_metrics_port;
  const metricsServer =
    port > 0
      ? await serveMetrics(metrics.registry, port, settings.host, health).catch(async (error: unknown) => {
          await queue.close();
          redis.disconnect();
          throw error;
        })
      : undefined;
  if (metricsServer) log.info({ port }, 'aggregator metrics on /metrics, probes on /healthz and /readyz');

  const processor = async (job: Job<ReduceJobData>): Promise<void> => {
    const groupId = job.data.group;
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    try {
      const outcome = await reduceGroup(redis, groupId, settings.reduce_chunk_size);
      metrics.observeReduce(outcome.reduced ? 'succeeded' : 'skipped', seconds());
      const ms = Math.round(seconds() * 1000);
      if (outcome.reduced) log.info({ group_id: groupId, size: outcome.size, failed: outcome.failed_indexes.length, ms }, 'group reduced');
      else log.info({ group_id: groupId, reason: outcome.reason }, 'reduce skipped');
    } catch (error) {
      metrics.observeReduce(isInferlineError(error) ? error.code : 'error', seconds());
      if (!isInferlineError(error)) throw error;
      // The member outputs do not fit the reducer: another attempt would fail the same way.
      log.warn({ group_id: groupId, err: error }, 'reduce failed; group failed');
      await groupFinish(redis, groupId, { status: 'failed', code: error.code, message: error.message });
    }
  };
  const worker = new Worker<ReduceJobData>(REDUCE_QUEUE, processor, {
    connection: redis,
    prefix: BULLMQ_PREFIX,
    concurrency: settings.aggregator_concurrency,
  });
  worker.on('error', (error) => log.warn({ err: error }, 'reduce worker error'));
  worker.on('failed', (job, error) => {
    if (!job) return;
    const attempts = job.opts.attempts ?? 1;
    log.warn({ group_id: job.data.group, err: error, attempt: job.attemptsMade, attempts }, 'reduce attempt failed');
    if (job.attemptsMade < attempts) return;
    groupFinish(redis, job.data.group, { status: 'failed', code: 'reduce_failed', message: `reduce failed ${attempts} times; last error: ${error.message}` }).catch(
      (finishError: unknown) => log.error({ err: finishError, group_id: job.data.group }, 'cannot mark the group failed'),
    );
  });

  // The models whose per-model sets (due callbacks, ready and open groups) the loops below visit:
  // the repository's, re-read at most every poll_interval_ms, plus every model read before (a model
  // just removed from the repository still has its groups swept and callbacks drained).
  const models = new Set<string>();
  let modelsReadAt = Number.NEGATIVE_INFINITY;
  const readModels = async (): Promise<string[]> => {
    if (Date.now() - modelsReadAt >= settings.poll_interval_ms) {
      const scan = await scanRepository(settings.model_repository);
      // A folder whose config fails to load is still visited: its groups and callbacks may be waiting.
      // Every partition of a model is a shard with its own callbacks due set (its groups are on partition 0).
      const shards = [...scan.models.flatMap((model) => modelShards(model.config.name, model.config.partitions)), ...scan.failures.map((failure) => failure.name)];
      for (const name of shards) models.add(name);
      modelsReadAt = Date.now();
    }
    return [...models];
  };

  // Callbacks: drain the due sets every callback_poll_interval_ms onto the queue `callbacks`
  // (callbacks.ts); each model has its own due sets.
  const callbacksQueue = createCallbacksQueue(redis, (error) => log.debug({ err: error }, 'callbacks queue: redis connection error'));
  // The due sets are read on a connection of their own that auto-pipelines, so a round's reads of
  // every set go out in one write (per node on a cluster); the main connection carries BullMQ's
  // scripts, which are kept off auto-pipelining.
  const drainRedis = connectRedis(settings.redis_url, { name: 'aggregator-callbacks', enableAutoPipelining: true });
  drainRedis.on('error', (error: Error) => log.debug({ err: error }, 'callbacks drain: redis connection error'));
  const callbackWorker = startCallbackWorker(redis, apiKeys, settings, log, (outcome) => metrics.observeCallback(outcome));
  // While rounds find nothing, the next waits twice as long, up to CALLBACK_IDLE_BACKOFF × the interval;
  // a round that moves anything (or fails) brings it back to callback_poll_interval_ms.
  let quietRounds = 0;
  let drainTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const drain = (): void => {
    (async () => drainDueCallbacks(drainRedis, callbacksQueue, await readModels(), settings))()
      .then(
        (moved) => {
          quietRounds = moved > 0 ? 0 : quietRounds + 1;
        },
        (error: unknown) => {
          quietRounds = 0;
          log.warn({ err: error }, 'drain of due callbacks failed');
        },
      )
      .finally(() => {
        if (stopped) return;
        const factor = Math.min(2 ** quietRounds, CALLBACK_IDLE_BACKOFF);
        drainTimer = setTimeout(drain, settings.callback_poll_interval_ms * factor);
      });
  };
  drain();

  const sweep = (): void => {
    // A ready group whose job still exists (waiting, running, retrying) needs nothing; count re-adds.
    let readded = 0;
    const add = async (groupId: string): Promise<void> => {
      if (await queue.getJob(groupId)) return;
      await enqueueReduce(queue, groupId, settings);
      readded++;
    };
    readModels().then(
      (shards) => {
        sweepReadyGroups(redis, shards, add, settings.reduce_sweep_interval_ms).then(
          () => {
            if (readded > 0) log.warn({ groups: readded }, 'sweep re-added lost reduce jobs of ready groups');
          },
          (error: unknown) => log.warn({ err: error }, 'sweep of ready groups failed'),
        );
        sweepAbandonedGroups(redis, shards, settings.open_group_ttl_s * 1000).then(
          (ids) => {
            if (ids.length > 0) log.warn({ group_ids: ids, open_group_ttl_s: settings.open_group_ttl_s }, 'cancelled groups left open too long');
          },
          (error: unknown) => log.warn({ err: error }, 'sweep of open groups failed'),
        );
      },
      (error: unknown) => log.warn({ err: error }, 'sweep of groups failed: cannot read the model repository'),
    );
  };
  sweep();
  const timer = setInterval(sweep, settings.reduce_sweep_interval_ms);
  log.info({ concurrency: settings.aggregator_concurrency }, 'aggregator ready');
  try {
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    clearInterval(timer);
    stopped = true;
    clearTimeout(drainTimer);
    await Promise.all([worker.close(), callbackWorker.close()]);
    await callbacksQueue.close();
    metricsServer?.close();
    await queue.close();
    await drainRedis.quit().catch(() => drainRedis.disconnect());
    await redis.quit().catch(() => redis.disconnect());
    log.info('aggregator stopped');
  }
}
