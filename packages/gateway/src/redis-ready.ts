import { isConnectionError, type Redis } from '@inferline/shared';

/** Between two attempts while the connection says `ready` but a command failed to reach Redis, ms. */
const RETRY_MS = 100;

/**
 * Run `read` on the gateway's fail-fast command connection; when it fails because that connection is
 * not back yet (after a Redis outage it may reconnect later than the event connection that woke the
 * caller), wait for its `ready` and run it again, until `deadline`.
 * @param deadline ms since epoch
 * @throws the last error when the connection is not back by `deadline` or `signal` aborts (the error
 *   handler answers 503), or at once when `read` failed for another reason.
 */
export async function whenRedisReady<T>(redis: Redis, read: () => Promise<T>, deadline: number, signal?: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await read();
    } catch (error) {
      if (!isConnectionError(error) && redis.status === 'ready') throw error;
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted === true) throw error;
      await (redis.status === 'ready' ? delay(Math.min(RETRY_MS, left)) : readyOrTimeout(redis, left, signal));
    }
  }
}

/** Resolves when `redis` emits `ready`, after `ms`, or when `signal` aborts, whichever comes first. */
function readyOrTimeout(redis: Redis, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      redis.off('ready', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
