export { startAggregator, reduceGroup, sweepAbandonedGroups, sweepReadyGroups, type AggregatorOptions } from './aggregator.ts';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import {
  InferlineError,
  connectRedis,
  createReduceQueue,
  enqueueReduce,
  keys,
  scanRepository,
  type Logger,
  type RepositoryModel,
  type RepositoryScan,
  type Settings,
} from '@inferline/shared';
import { initBackend } from './runtime/backend.ts';
import { loadServable, type Servable } from './runtime/servable.ts';
import { WorkerMetrics, serveMetrics } from './metrics.ts';
import { VersionConsumer, consumerName } from './version-consumer.ts';

/** Options of one worker process. */
export interface WorkerOptions {
  settings: Settings & { redis_url: string };
  /** Models to serve; empty = every model of the repository. */
  models: string[];
  logger: Logger;
  /** Abort to stop: the batch in hand is finished and acknowledged, then startWorker resolves. */
  signal: AbortSignal;
}

/** Heartbeats older than this many periods are pruned from a model's worker set. */
const HEARTBEAT_PRUNE_PERIODS = 10;

/**
 * Pick the repository models to serve: the named ones, or every valid one (an invalid config is logged
 * and skipped).
 * @throws InferlineError `model_not_found` naming a requested model the repository lacks or cannot
 *   serve (with its config error), when a model has no complete version folder (run
 *   `npm run models`), or when no model is left to serve.
 */
export function selectModels(scan: RepositoryScan, names: readonly string[], logger: Logger): RepositoryModel[] {
  for (const failure of scan.failures) logger.error({ model: failure.name, error: failure.message }, 'model config invalid; not served');
  const chosen = names.length === 0 ? [...scan.models] : names.map((name) => {
    const found = scan.models.find((model) => model.config.name === name);
    const failure = scan.failures.find((candidate) => candidate.name === name);
    if (!found) throw new InferlineError('model_not_found', failure ? `model "${name}" cannot be served: ${failure.message}` : `model "${name}" is not in the repository`);
    return found;
  });
  if (chosen.length === 0) throw new InferlineError('model_not_found', 'the model repository holds no model to serve');
  for (const model of chosen) {
    if (model.served.length === 0) {
      throw new InferlineError('model_not_found', `model "${model.config.name}" has no version to serve in ${model.dir} (run \`npm run models\`)`);
    }
  }
  return chosen;
}

/** Warm-up batch sizes: every allowed batch size, else 1 and max_batch_size. */
function warmupSizes(model: RepositoryModel): number[] {
  const { allowed_batch_sizes, max_batch_size } = model.config.batching;
  return allowed_batch_sizes.length > 0 ? allowed_batch_sizes : [...new Set([1, max_batch_size])];
}

/** Announce this worker and the versions it serves (read by the gateway's model status). */
async function heartbeat(redis: Redis, consumer: string, servables: readonly Servable[], intervalMs: number, loadedAt: number): Promise<void> {
  const now = Date.now();
  const pipeline = redis.pipeline();
  for (const servable of servables) {
    const workers = keys.workers(servable.name);
    pipeline.zadd(workers, now, consumer);
    pipeline.zremrangebyscore(workers, 0, now - HEARTBEAT_PRUNE_PERIODS * intervalMs);
    pipeline.hset(
      keys.versionStatus(servable.name),
      String(servable.version),
      JSON.stringify({ state: 'AVAILABLE', backend: servable.backend, loaded_at: new Date(loadedAt).toISOString() }),
    );
  }
  await pipeline.exec();
}

/**
 * Run a worker until `signal` aborts: pick the runtime backend, load and warm up the served version of
 * each model (the highest, per its version policy), then consume every version's request stream.
 * @throws InferlineError when a model cannot be found or loaded.
 */
export async function startWorker(options: WorkerOptions): Promise<void> {
  const { settings, logger, signal } = options;
  const backend = await initBackend();
  logger.info({ backend }, 'runtime backend');
  const models = selectModels(await scanRepository(settings.model_repository), options.models, logger);

  const servables: { model: RepositoryModel; servable: Servable }[] = [];
  for (const model of models) {
    const version = model.served.at(-1) as number;
    const started = performance.now();
    const servable = await loadServable(model.config, join(model.dir, String(version)), version);
    await servable.warmup(warmupSizes(model));
    servables.push({ model, servable });
    logger.info({ model: model.config.name, version, backend, load_ms: Math.round(performance.now() - started) }, 'model version loaded and warmed up');
  }

  const metrics = new WorkerMetrics(backend);
  const metricsServer = settings.metrics_port > 0 ? await serveMetrics(metrics.registry, settings.metrics_port, settings.host) : undefined;
  if (metricsServer) logger.info({ port: settings.metrics_port }, 'worker metrics on /metrics');
  const consumer = consumerName();
  const redis = connectRedis(settings.redis_url, { name: `worker:${consumer}`, enableAutoPipelining: true });
  const readers = servables.map(() => connectRedis(settings.redis_url, { name: `worker-reader:${consumer}` }));
  for (const connection of [redis, ...readers]) {
    connection.on('error', (error: Error) => logger.warn({ err: error }, 'redis connection error'));
  }
  const loadedAt = Date.now();
  const beat = (): void => {
    heartbeat(redis, consumer, servables.map((s) => s.servable), settings.heartbeat_interval_ms, loadedAt).catch((error: unknown) =>
      logger.warn({ err: error }, 'heartbeat failed'),
    );
  };
  beat();
  const timer = setInterval(beat, settings.heartbeat_interval_ms);
  // A stop that cannot finish (Redis unreachable: ioredis keeps commands queued while it reconnects)
  // ends after stop_grace_ms anyway; the unacknowledged requests stay pending and are reclaimed.
  let graceOver = false;
  const grace = new Promise<void>((resolve) => {
    signal.addEventListener('abort', () => setTimeout(() => ((graceOver = true), resolve()), settings.stop_grace_ms).unref(), { once: true });
  });
  const reduceQueue = createReduceQueue(redis, (error) => logger.debug({ err: error }, 'reduce queue: redis connection error'));
  const onGroupReady = (groupId: string): Promise<void> => enqueueReduce(reduceQueue, groupId, settings);
  logger.info({ consumer, models: servables.map((s) => `${s.servable.name}:${s.servable.version}`) }, 'worker ready');

  try {
    const consumers = Promise.all(
      servables.map(({ model, servable }, i) =>
        new VersionConsumer({
          config: model.config,
          servable,
          redis,
          reader: readers[i] as Redis,
          consumer,
          idle_block_ms: settings.idle_block_ms,
          logger,
          metrics,
          onGroupReady,
        }).run(signal),
      ),
    );
    await Promise.race([consumers, grace]);
    // Past the grace period the consumers are abandoned mid-call; their late failure is expected.
    if (graceOver) consumers.catch(() => undefined);
  } finally {
    clearInterval(timer);
    if (graceOver) {
      reduceQueue.close().catch(() => undefined);
      logger.warn({ stop_grace_ms: settings.stop_grace_ms }, 'stop grace period over; leaving unsettled requests pending for another worker');
      for (const connection of [redis, ...readers]) connection.disconnect();
    } else {
      await Promise.all(servables.map(({ servable }) => redis.zrem(keys.workers(servable.name), consumer))).catch(() => undefined);
      await reduceQueue.close().catch((error: unknown) => logger.warn({ err: error }, 'closing the reduce queue failed'));
      await Promise.all([redis, ...readers].map((connection) => connection.quit().catch(() => undefined)));
    }
    for (const { servable } of servables) servable.dispose();
    metricsServer?.close();
    logger.info({ consumer }, 'worker stopped');
  }
}
