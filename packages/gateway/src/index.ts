import type { Logger, Settings } from '@inferline/shared';

/** A running gateway. */
export interface RunningGateway {
  /** `http://host:port` it listens on. */
  address: string;
  /** Stop accepting, finish in-flight requests, close Redis connections. */
  close(): Promise<void>;
}

/** Start the HTTP gateway (fastify) against `settings.redis_url`. */
export async function startGateway(settings: Settings & { redis_url: string }, logger: Logger): Promise<RunningGateway> {
  await Promise.resolve();
  throw new Error(`not implemented ${settings.port} ${logger.level}`);
}
