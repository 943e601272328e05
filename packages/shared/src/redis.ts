import { Redis, type RedisOptions } from 'ioredis';
import { defineScripts } from './scripts.ts';

/** Default Redis URL when `REDIS_URL` is unset and no private server is started. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * Open a Redis connection with the protocol's scripts defined.
 *
 * `failFast` (the gateway's choice) disables ioredis' offline queue: while Redis is unreachable a
 * command fails at once instead of waiting, so the gateway can answer 503 and accept nothing it could
 * not store. Workers keep the offline queue and simply resume when Redis is back.
 */
export function connectRedis(url: string, options: { name: string; failFast?: boolean } & RedisOptions): Redis {
  const { failFast = false, name, ...rest } = options;
  const redis = new Redis(url, {
    connectionName: name,
    enableOfflineQueue: !failFast,
    maxRetriesPerRequest: failFast ? 1 : null,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    ...rest,
  });
  defineScripts(redis);
  return redis;
}

/** True when an error means Redis could not be reached (as opposed to a script or command error). */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const text = `${error.name} ${error.message}`;
  return /Stream isn't writeable|enableOfflineQueue|ECONNREFUSED|ECONNRESET|Connection is closed|MaxRetriesPerRequest|ETIMEDOUT|EPIPE/i.test(text);
}

export type { Redis };
