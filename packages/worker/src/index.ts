export { startAggregator, reduceGroup, sweepAbandonedGroups, sweepReadyGroups, type AggregatorOptions } from './aggregator.ts';
import { hostname } from 'node:os';
import { connectRedis, createReduceQueue, enqueueReduce, type Logger, type Settings } from '@inferline/shared';
import { initBackend } from './runtime/backend.ts';
import { WorkerMetrics, serveMetrics } from './metrics.ts';
import { RepositoryFollower } from './repository/follower.ts';
import { consumerName } from './version-consumer.ts';
export { RepositoryFollower, memoryFigures, warmupSizes } from './repository/follower.ts';
// What `npm run models` needs to compute, at build time, the features a served embedding-bag computes.
export { initBackend } from './runtime/backend.ts';
export { EmbeddingBag } from './runtime/embedding-bag.ts';
export { tokenize } from './pipelines/glove-tokenizer.ts';

/** Options of one worker process. */
export interface WorkerOptions {
  settings: Settings & { redis_url: string };
  /** Models to serve; empty = every model of the repository. */
  models: string[];
  logger: Logger;
  /** Abort to stop: the batch in hand is finished and acknowledged, then startWorker resolves. */
  signal: AbortSignal;
}

/**
 * Run a worker until `signal` aborts: pick the runtime backend, then follow the model repository
 * ({@link RepositoryFollower}): load, warm up and serve every version the policies select, drain and
 * unload the ones that leave. Logs "worker ready" once the versions selected at start are loaded (or
 * failed to load).
 * @throws InferlineError `model_not_found` when a model named in `options.models` is not in the repository.
 */
export async function startWorker(options: WorkerOptions): Promise<void> {
  const { settings, logger, signal } = options;
  const backend = await initBackend();
  logger.info({ backend }, 'runtime backend');
  const metrics = new WorkerMetrics(backend);
  // /readyz answers 200 once the versions selected at start are loaded (or failed to load): what a
  // rolling update waits for before it stops an old worker.
  let ready = false;
  const health = { ready: () => (ready ? undefined : 'loading the model versions selected at start') };
  const metricsServer = settings.metrics_port > 0 ? await serveMetrics(metrics.registry, settings.metrics_port, settings.host, health) : undefined;
  if (metricsServer) logger.info({ port: settings.metrics_port }, 'worker metrics on /metrics, probes on /healthz and /readyz');
  const consumer = consumerName();
  logger.info({ consumer, host: hostname(), pid: process.pid }, 'worker consumer');
  const redis = connectRedis(settings.redis_url, { name: `worker:${consumer}`, enableAutoPipelining: true });
  redis.on('error', (error: Error) => logger.warn({ err: error }, 'redis connection error'));
  const reduceQueue = createReduceQueue(redis, (error) => logger.debug({ err: error }, 'reduce queue: redis connection error'));
  const onGroupReady = (groupId: string): Promise<void> => enqueueReduce(reduceQueue, groupId, settings);
  const follower = new RepositoryFollower({ settings, models: options.models, backend, consumer, redis, logger, metrics, onGroupReady });

  // A stop that cannot finish (Redis unreachable: ioredis keeps commands queued while it reconnects)
  // ends after stop_grace_ms anyway; the unacknowledged requests stay pending and are reclaimed.
  let graceOver = false;
  const grace = new Promise<void>((resolve) => {
    signal.addEventListener('abort', () => setTimeout(() => ((graceOver = true), resolve()), settings.stop_grace_ms).unref(), { once: true });
  });
  try {
    const running = follower.run(signal, () => {
      ready = true;
      logger.info({ consumer }, 'worker ready');
    });
    await Promise.race([running, grace]);
    // Past the grace period the consumers are abandoned mid-call; their late failure is expected.
    if (graceOver) running.catch(() => undefined);
  } finally {
    if (graceOver) {
      reduceQueue.close().catch(() => undefined);
      logger.warn({ stop_grace_ms: settings.stop_grace_ms }, 'stop grace period over; leaving unsettled requests pending for another worker');
      follower.disconnect();
      redis.disconnect();
    } else {
      await reduceQueue.close().catch((error: unknown) => logger.warn({ err: error }, 'closing the reduce queue failed'));
      await redis.quit().catch(() => undefined);
    }
    metricsServer?.close();
    logger.info({ consumer }, 'worker stopped');
  }
}
