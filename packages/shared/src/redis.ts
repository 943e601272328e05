import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis as SingleRedis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { SCRIPT_COMMANDS, defineScripts } from './scripts.ts';

/** Default Redis URL when `REDIS_URL` is unset and no private server is started. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * URL scheme of a Redis Cluster: `redis+cluster://[user:password@]host:port,host:port[,...]` (any
 * reachable nodes; the client learns the rest from CLUSTER SLOTS), `rediss+cluster://` for TLS.
 */
export const CLUSTER_SCHEMES = ['redis+cluster:', 'rediss+cluster:'] as const;

/**
 * The one Redis client type of the code: an ioredis `Redis` (one server) or `Cluster` (Redis
 * Cluster, https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/). Every
 * command, script, pipeline and subscription of the protocol works on both: each script's keys are
 * in one slot (`keys.ts`), and pipelines hold keys of one slot or are replaced by auto-pipelining,
 * which ioredis splits per node.
 */
export type Redis = SingleRedis | Cluster;

/** One server's connection, as {@link nodeFor} and {@link masterNodes} return it. */
export type RedisNode = SingleRedis;

/** A cluster URL's seed nodes and credentials. */
export interface ClusterTarget {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls: boolean;
}

/**
 * Read a `redis+cluster://` URL ({@link CLUSTER_SCHEMES}); undefined for any other URL.
 * @throws Error when a node is not `host:port`.
 */
export function parseClusterUrl(url: string): ClusterTarget | undefined {
  const scheme = CLUSTER_SCHEMES.find((s) => url.startsWith(`${s}//`));
  if (!scheme) return undefined;
  let rest = url.slice(scheme.length + 2).replace(/[/?#].*$/, '');
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const auth = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon >= 0 ? auth.slice(0, colon) : '') || undefined;
    password = decodeURIComponent(colon >= 0 ? auth.slice(colon + 1) : auth) || undefined;
  }
  const nodes = rest.split(',').filter((node) => node !== '').map((node) => {
    const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(node);
    if (!match) throw new Error(`cluster node "${node}" is not host:port`);
    return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port: Number(match[2]) };
  });
  if (nodes.length === 0) throw new Error('a redis+cluster:// URL names no node');
  return { nodes, ...(username ? { username } : {}), ...(password ? { password } : {}), tls: scheme === 'rediss+cluster:' };
}

/**
 * Commands whose key ioredis' auto-pipelining cannot find (it takes the first argument, here a
 * subcommand: `XGROUP CREATE <key>`, `XINFO STREAM <key>`), so on a cluster they would join the
 * pipeline of another slot's node and come back MOVED. Sent alone, they follow MOVED to the key's master.
 */
const UNROUTABLE_IN_AUTO_PIPELINE = ['xgroup', 'xinfo'];

/** True when a client is a Redis Cluster client. */
export function isCluster(redis: Redis): redis is Cluster {
  return redis.isCluster;
}

/**
 * Open a Redis connection with the protocol's scripts defined: a `Redis` for `redis://` and
 * `rediss://` URLs, a `Cluster` for `redis+cluster://` ones ({@link parseClusterUrl}; `REDIS_CLUSTER_NODES`
 * becomes such a URL in settings.ts).
 *
 * `failFast` (the gateway's choice) disables ioredis' offline queue: while Redis is unreachable a
 * command fails at once instead of waiting, so the gateway can answer 503 and accept nothing it could
 * not store. Workers keep the offline queue and simply resume when Redis is back.
 *
 * A blocking read (XREADGROUP BLOCK) ties up its connection, on a cluster the connection to the node
 * of the key's slot: give each blocking reader its own client (another call of this function).
 * @throws Error on a malformed cluster URL.
 */
export function connectRedis(url: string, options: { name: string; failFast?: boolean } & RedisOptions): Redis {
  const { failFast = false, name, enableAutoPipelining, ...rest } = options;
  const redisOptions: RedisOptions = {
    connectionName: name,
    enableOfflineQueue: !failFast,
    maxRetriesPerRequest: failFast ? 1 : null,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
    ...rest,
  };
  const cluster = parseClusterUrl(url);
  let redis: Redis;
  if (cluster) {
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: !failFast,
      ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining, autoPipeliningIgnoredCommands: [...SCRIPT_COMMANDS, ...UNROUTABLE_IN_AUTO_PIPELINE] }),
      clusterRetryStrategy: (times) => Math.min(times * 100, 2_000),
      // A master that restarts (or fails over) answers CLUSTERDOWN / TRYAGAIN for a moment: retry.
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      ...(rest.lazyConnect === undefined ? {} : { lazyConnect: rest.lazyConnect }),
      redisOptions: {
        ...redisOptions,
        ...(cluster.username ? { username: cluster.username } : {}),
        ...(cluster.password ? { password: cluster.password } : {}),
        ...(cluster.tls ? { tls: {} } : {}),
      },
    };
    redis = new Cluster(cluster.nodes, clusterOptions);
  } else {
    redis = new SingleRedis(url, { ...redisOptions, ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }) });
  }
  defineScripts(redis);
  return redis;
}

/** Redis Cluster slot (0..16383) of a key: CRC16 of its hash tag (cluster spec, "Keys distribution model"). */
export function keySlot(key: string): number {
  return calculateSlot(key);
}

/**
 * The connection to the server that holds `key`: the client itself on one Redis; on a cluster the
 * master of the key's slot (from the client's slot table). For keyless commands that must reach that
 * server, such as CLIENT ID / CLIENT UNBLOCK of a blocking reader (client ids are per server).
 * @throws Error when the cluster client does not know the slot's master yet (not connected).
 */
export function nodeFor(redis: Redis, key: string): RedisNode {
  if (!isCluster(redis)) return redis;
  const address = (redis.slots[keySlot(key)] ?? [])[0];
  const node = address === undefined ? undefined : redis.nodes('master').find((n) => `${n.options.host ?? ''}:${n.options.port ?? ''}` === address);
  if (!node) throw new Error(`no known master for the slot of ${key} (cluster not connected yet)`);
  return node;
}

/** Every master's connection: the client itself on one Redis (FLUSHALL, INFO, KEYS over a cluster). */
export function masterNodes(redis: Redis): RedisNode[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}

/**
 * Resolve once a client is connected and (on a cluster) knows its slots.
 * @throws Error when it does not get there within `timeoutMs`.
 */
export async function whenConnected(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis not ready after ${timeoutMs} ms (${redis.status})`)), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** True when an error means Redis could not be reached (as opposed to a script or command error). */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const text = `${error.name} ${error.message}`;
  return /Stream isn't writeable|enableOfflineQueue|ECONNREFUSED|ECONNRESET|Connection is closed|MaxRetriesPerRequest|ETIMEDOUT|EPIPE|CLUSTERDOWN|Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready/i.test(text);
}
