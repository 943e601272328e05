import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { connectRedis, masterNodes, whenConnected, type Redis } from '../../packages/shared/src/redis.ts';
import { startRedisServer } from '../../packages/cli/src/redis-server.ts';
import { CONSUMER_GROUP } from '../../packages/shared/src/keys.ts';
import { startTestCluster, type TestCluster } from './redis-cluster.ts';

/**
 * Which Redis the suites run against: `INFERLINE_TEST_REDIS=cluster` starts a 3-master Redis Cluster
 * per suite (`npm run test:cluster`), anything else (the default) one redis-server.
 */
export const TEST_REDIS_CLUSTER = process.env.INFERLINE_TEST_REDIS === 'cluster';

/**
 * A Redis for one test file: its own redis-server, a 3-master cluster under
 * `INFERLINE_TEST_REDIS=cluster`, or `INFERLINE_TEST_REDIS_URL` when set.
 */
export interface TestRedis {
  /** `redis://...`, or `redis+cluster://...` for a cluster (what REDIS_URL takes). */
  url: string;
  /** The cluster, when the suite runs against one. */
  cluster?: TestCluster;
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
  if (TEST_REDIS_CLUSTER) return startClusterRedis(dir);
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

/** A 3-master cluster in `dir` ({@link startTestCluster}) as a TestRedis. */
async function startClusterRedis(dir: string): Promise<TestRedis> {
  const cluster = await startTestCluster(dir);
  return {
    url: cluster.url,
    cluster,
    flush: () => flushAll(cluster.url),
    stop: async () => {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** FLUSHALL on every master (one on a single Redis). */
async function flushAll(url: string): Promise<void> {
  const redis = connectRedis(url, { name: 'test-flush' });
  try {
    await whenConnected(redis);
    await Promise.all(masterNodes(redis).map((node) => node.flushall()));
  } finally {
    redis.disconnect();
  }
}

/** Every key matching `pattern` (KEYS) over every master: a cluster spreads keys over its masters. */
export async function keysEverywhere(redis: Redis, pattern: string): Promise<string[]> {
  await whenConnected(redis);
  return (await Promise.all(masterNodes(redis).map((node) => node.keys(pattern)))).flat();
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
