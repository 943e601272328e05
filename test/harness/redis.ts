import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { connectRedis } from '../../packages/shared/src/redis.ts';
import { startRedisServer } from '../../packages/cli/src/redis-server.ts';
import { CONSUMER_GROUP } from '../../packages/shared/src/keys.ts';

/** A Redis for one test file: its own redis-server, or `INFERLINE_TEST_REDIS_URL` when set. */
export interface TestRedis {
  url: string;
  /** Remove every key (between tests). */
  flush(): Promise<void>;
  /** Stop the server (when this harness started it) and remove its data folder. */
  stop(): Promise<void>;
}

/**
 * Start a private redis-server on a random port for a test suite. Never skips: when no Redis can be
 * had, this throws and the suite fails loudly.
 */
export async function startTestRedis(): Promise<TestRedis> {
  const external = process.env.INFERLINE_TEST_REDIS_URL;
  if (external) {
    return { url: external, flush: () => flushAll(external), stop: () => Promise.resolve() };
  }
  const dir = await mkdtemp(join(tmpdir(), 'inferline-test-redis-'));
  const server = await startRedisServer({ dir, appendonly: false });
  return {
    url: server.url,
    flush: () => flushAll(server.url),
    stop: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * For one `describe` block: start a test Redis ({@link startTestRedis}) and a connection to it
 * (`connectRedis`, scripts defined) before its tests, and stop both after them. Read `server` and
 * `redis` from the returned object inside hooks and tests (they are set once `before` ran).
 */
export function useTestRedis(): { readonly server: TestRedis; readonly redis: Redis } {
  let server: TestRedis | undefined;
  let redis: Redis | undefined;
  before(async () => {
    server = await startTestRedis();
    redis = connectRedis(server.url, { name: 'test' });
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });
  const need = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useTestRedis: read inside a hook or a test, after before() ran');
    return value;
  };
  return {
    get server() {
      return need(server);
    },
    get redis() {
      return need(redis);
    },
  };
}

async function flushAll(url: string): Promise<void> {
  const redis = new Redis(url);
  await redis.flushall();
  redis.disconnect();
}

/**
 * Poll XPENDING of a request stream (every `intervalMs`, at most `attempts` times) until it holds at
 * least `count` delivered, unacknowledged entries; answers the last count seen. A missing consumer
 * group (NOGROUP, before the worker created it) counts as 0.
 */
export async function waitForPending(redis: Redis, stream: string, count: number, attempts = 200, intervalMs = 20): Promise<number> {
  let pending = 0;
  for (let attempt = 0; attempt < attempts && pending < count; attempt++) {
    pending = await redis.xpending(stream, CONSUMER_GROUP).then((reply) => Number((reply as [number])[0]), () => 0);
    if (pending < count) await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return pending;
}
