import { connectRedis, loadApiKeys, openAdmissionIfUnset, readLiveVersions, type Logger, type Redis, type Settings } from '@inferline/shared';
import { startGrpcServer, type RunningGrpcServer } from './grpc/server.ts';
import { JobEvents } from './job-events.ts';
import { ModelCatalog } from './model-catalog.ts';
import { buildApp, SHUTDOWN_GRACE_MS } from './server.ts';

export { buildApp, type GatewayApp, type GatewayDeps } from './server.ts';
export { JobEvents, JobWatch, type JobWatchEvent } from './job-events.ts';
export { ModelCatalog, type ResolvedModel, type VersionSelector } from './model-catalog.ts';

/** A running gateway. */
export interface RunningGateway {
  /** `http://host:port` it listens on. */
  address: string;
  /** `host:port` of its gRPC server; undefined when `grpc_port` is 0. */
  grpcAddress: string | undefined;
  /** Stop accepting, finish in-flight requests and calls, close Redis connections. */
  close(): Promise<void>;
}

/**
 * Start the HTTP gateway (fastify) against `settings.redis_url`: a command connection (fail-fast, so
 * requests get 503 while Redis is away), one subscriber connection for job events, the model
 * repository catalog, then listen on `settings.host:settings.port` (HTTP) and, unless `grpc_port` is 0,
 * `settings.host:settings.grpc_port` (gRPC, grpc/server.ts), in the same process.
 *
 * Redis need not be up at start: `/readyz` answers 503 until it is. API keys are read once, at start
 * (`API_KEYS_FILE`, `API_KEYS`); without any, the gateway is open, and says so loudly in its log.
 * @throws InferlineError `invalid_config` when the model repository or the keys cannot be read; an error when the
 *   port cannot be bound.
 */
export async function startGateway(settings: Settings & { redis_url: string }, logger: Logger): Promise<RunningGateway> {
  const apiKeys = loadApiKeys(settings);
  if (apiKeys.enabled) logger.info({ tenants: apiKeys.tenants.size, keys: apiKeys.entries.length }, 'API keys configured: every route but the probes and /docs needs one');
  else logger.warn('NO API KEY CONFIGURED: the gateway is open to anyone who can reach it (set API_KEYS_FILE or API_KEYS; see `inferline keys create`)');
  const redis = connectRedis(settings.redis_url, { name: 'inferline-gateway', failFast: true, enableAutoPipelining: true });
  logConnectionErrors(redis, logger, 'command');
  const subscriber = connectRedis(settings.redis_url, { name: 'inferline-gateway-events' });
  logConnectionErrors(subscriber, logger, 'events');
  const events = new JobEvents(subscriber, logger);
  let models: ModelCatalog | undefined;
  const grpcShutdown = new AbortController();
  try {
    models = await ModelCatalog.open(settings.model_repository, settings.poll_interval_ms, logger, settings.traffic_seed);
    followWorkers(models, redis, settings.heartbeat_interval_ms);
    const app = buildApp({ redis, events, models, settings, logger, apiKeys });
    await app.listen({ host: settings.host, port: settings.port });
    const bound = app.server.address();
    const port = typeof bound === 'object' && bound ? bound.port : settings.port;
    const host = settings.host === '0.0.0.0' || settings.host === '::' ? '127.0.0.1' : settings.host;
    const hostPart = host.includes(':') ? `[${host}]` : host;
    const address = `http://${hostPart}:${port}`;
    let grpcAddress: string | undefined;
    let grpc: RunningGrpcServer | undefined;
    if (settings.grpc_port > 0) {
      try {
        grpc = await startGrpcServer({ redis, events, models, metrics: app.metrics, settings, logger, shutdown: grpcShutdown.signal, apiKeys }, settings.host, settings.grpc_port);
      } catch (error) {
        await app.close();
        throw error;
      }
      grpcAddress = `${hostPart}:${grpc.port}`;
    }
    logger.info({ address, grpc_address: grpcAddress, models: models.list().length }, 'gateway listening');
    const catalog = models;
    return {
      address,
      grpcAddress,
      close: async () => {
        grpcShutdown.abort();
        await Promise.all([app.close(), grpc?.close(SHUTDOWN_GRACE_MS)]);
        catalog.close();
        await events.close();
        await redis.quit().catch(() => redis.disconnect());
      },
    };
  } catch (error) {
    models?.close();
    await events.close();
    redis.disconnect();
    throw error;
  }
}

/**
 * Feed a catalog the workers' announcements from Redis (`readLiveVersions`),
 * re-read every heartbeat period: a version that became AVAILABLE is also seen at once, because a
 * request that would be refused 503 re-reads first; a version closed since is caught by enqueue.lua.
 * For a `scale_to_zero` model with no version AVAILABLE on a live worker, each read also opens the
 * versions its policy selects for admission if no worker ever set them (`openAdmissionIfUnset`), so a
 * deployment that starts at zero workers queues its first request.
 */
export function followWorkers(models: ModelCatalog, redis: Redis, heartbeatIntervalMs: number): void {
  models.followWorkers(async (name) => {
    const { versions } = await readLiveVersions(redis, name, heartbeatIntervalMs);
    const model = models.get(name);
    if (model?.config.scale_to_zero && ![...versions.values()].some((held) => held.state === 'AVAILABLE')) {
      await Promise.all(model.served.map((version) => openAdmissionIfUnset(redis, name, version)));
    }
    return versions;
  }, heartbeatIntervalMs);
}

/**
 * ioredis emits `error` on every failed reconnect attempt; log a change of error once rather than
 * every 2 s, and the recovery.
 */
function logConnectionErrors(redis: Redis, logger: Logger, connection: string): void {
  let last = '';
  redis.on('error', (error: Error) => {
    if (error.message === last) return;
    last = error.message;
    logger.warn({ err: error, connection }, 'Redis connection error');
  });
  redis.on('ready', () => {
    if (last !== '') logger.info({ connection }, 'Redis connection restored');
    last = '';
  });
}
