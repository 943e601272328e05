import { resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InferlineError } from './errors.ts';

/**
 * Process settings, read from the environment (each variable is the upper-case field name, e.g.
 * `PORT`, `REDIS_URL`). Model behaviour (batching, queue) lives in each model's `config.json`, not here.
 */
export const Settings = Type.Object({
  /** Redis to use; unset under `inferline start` = start a private redis-server under `.inferline/`. */
  redis_url: Type.Optional(Type.String()),
  /**
   * Redis Cluster seed nodes, `host:port,host:port` (any reachable masters; the client learns the rest):
   * the same as `REDIS_URL=redis+cluster://host:port,host:port`. Set one of the two.
   */
  redis_cluster_nodes: Type.Optional(Type.String({ pattern: '^[^,\\s]+:[0-9]+(,[^,\\s]+:[0-9]+)*$' })),
  /** Gateway TCP port. */
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
  /**
   * Gateway gRPC port (OIP `inference.GRPCInferenceService`, TF Serving's `PredictionService` and
   * `ModelService`), on the same bind address; 8001 is Triton's. 0 = no gRPC server.
   */
  grpc_port: Type.Integer({ minimum: 0, maximum: 65535, default: 8001 }),
  /** Gateway bind address. */
  host: Type.String({ default: '0.0.0.0' }),
  /** Model repository folder (`<name>/config.json`, `<name>/<version>/model.json`). */
  model_repository: Type.String({ default: 'models' }),
  /** Cache for fetched npm packages (model sources). */
  cache_dir: Type.String({ default: '.cache' }),
  /** State of `inferline start` (private Redis data). */
  state_dir: Type.String({ default: '.inferline' }),
  /** Largest accepted HTTP body, bytes (413 above): room for a base64 photo; each model bounds its own inputs further. */
  max_body_bytes: Type.Integer({ minimum: 1024, default: 16_777_216 }),
  /**
   * Most inputs in one bulk `POST /v1/jobs` (`inputs`) or one `:predict` call: they are stored by one
   * Lua call, which blocks Redis while it runs.
   */
  max_bulk_inputs: Type.Integer({ minimum: 1, default: 1_000 }),
  /**
   * Longest time a client may take to send a request's headers, ms (Node's `headersTimeout`): a
   * connection that trickles its headers (slowloris) is answered 408 and closed.
   */
  headers_timeout_ms: Type.Integer({ minimum: 100, default: 10_000 }),
  /**
   * Longest time a client may take to send a whole request, body included, ms (Node's
   * `requestTimeout`; waiting for an answer, as a long-poll does, does not count). Must be at least
   * headers_timeout_ms.
   */
  request_timeout_ms: Type.Integer({ minimum: 100, default: 60_000 }),
  /** Most open connections a gateway accepts; further ones are refused at once (Node's `maxConnections`). 0 = no limit. */
  max_connections: Type.Integer({ minimum: 0, default: 10_000 }),
  /** Longest `?wait=` of a long-poll and `Prefer: wait=` of a submission, seconds. */
  max_wait_s: Type.Number({ minimum: 0, default: 60 }),
  /**
   * How often the gateway and each worker re-read the model repository, ms: a new version folder, a
   * changed version policy, labels, traffic or batching apply within one period.
   */
  poll_interval_ms: Type.Integer({ minimum: 100, default: 5_000 }),
  /**
   * After a version leaves its version policy (or the repository), how long its workers keep serving
   * what was queued for it before failing the rest with `version_unloaded`, ms.
   */
  drain_timeout_ms: Type.Integer({ minimum: 0, default: 60_000 }),
  /**
   * Seed of the traffic split's weighted draw (`traffic` in config.json); unset = Math.random. For
   * tests and reproducible experiments.
   */
  traffic_seed: Type.Optional(Type.Integer()),
  /** Worker heartbeat period, ms (the gateway counts a worker alive for 3 periods). */
  heartbeat_interval_ms: Type.Integer({ minimum: 100, default: 2_000 }),
  /**
   * Longest XREADGROUP BLOCK while idle, ms (a read returns as soon as a request arrives, and a stop
   * request unblocks it at once). Each idle read is a wake-up: long blocks keep an idle stack near 0 %
   * of a core. A read never blocks past the next look for stale pending entries.
   */
  idle_block_ms: Type.Integer({ minimum: 10, default: 10_000 }),
  /**
   * Worker: megabytes its loaded model instances may take (a version counts, per instance, its
   * folder's size plus instance_overhead_mb); 0 = no budget, every served version loaded at start.
   * With a budget, a version loads on its first request (or at start with `preload: true`), and the
   * least recently used idle versions are unloaded to make room.
   */
  model_memory_budget_mb: Type.Number({ minimum: 0, default: 0 }),
  /**
   * Worker: what the memory budget counts for one instance thread besides its weights, MB: its V8
   * isolate, its copy of the runtime's modules and its wasm heap (measured on the wasm backend: about
   * 60 to 100 MB per thread, see the README's instances benchmark).
   */
  instance_overhead_mb: Type.Number({ minimum: 0, default: 80 }),
  /**
   * Worker: instances (threads) of each version it serves, for models whose config.json sets no
   * `instance_group`. `inferline start` sets it to the number of cores unless it is set.
   */
  instance_count: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
  /**
   * After a stop request, how long a worker may take to finish and settle its batch, ms. Past it (say,
   * Redis is unreachable) it drops its connections and exits; its unacknowledged requests stay pending
   * and another worker claims them after visibility_timeout_ms.
   */
  stop_grace_ms: Type.Integer({ minimum: 0, default: 5_000 }),
  /**
   * Port of a worker's Prometheus `/metrics` (batches, inference counts, compute time) and its
   * `/healthz` and `/readyz` probes (ready once the versions selected at start are loaded); 0 = none.
   * Under `inferline start`, worker n listens on metrics_port + n - 1.
   */
  metrics_port: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
  /**
   * Port of the aggregator's Prometheus `/metrics` (reduces by outcome, reduce time, reduce backlog)
   * and its `/healthz` and `/readyz` probes; 0 = none. Apart from metrics_port so that both can be set
   * in one environment (`inferline start` passes its environment to every child).
   */
  aggregator_metrics_port: Type.Integer({ minimum: 0, maximum: 65535, default: 0 }),
  /** Worker processes `inferline start` runs; 0 = one (its instance threads use the cores, INSTANCE_COUNT). */
  workers: Type.Integer({ minimum: 0, default: 0 }),
  /**
   * Most inputs in one group request (`POST /v1/groups`, `POST /v1/groups/:id/inputs`); each request is
   * stored by one Lua call, which blocks Redis while it runs. Larger groups are fed in chunks.
   */
  max_group_inputs: Type.Integer({ minimum: 1, default: 10_000 }),
  /** Most members of a `boxes` group: every image is tiled into one picture held in memory. */
  max_boxes_inputs: Type.Integer({ minimum: 1, default: 256 }),
  /** Least time between two progress events of `GET /v1/groups/:id/events`, ms. */
  group_progress_interval_ms: Type.Integer({ minimum: 10, default: 250 }),
  /** Member outputs the aggregator reads per round trip (HMGET), in index order. */
  reduce_chunk_size: Type.Integer({ minimum: 1, default: 1_000 }),
  /** Attempts of one reduce job (BullMQ `attempts`) before its group fails with `reduce_failed`. */
  reduce_attempts: Type.Integer({ minimum: 1, default: 3 }),
  /** First retry delay of a failed reduce, ms (BullMQ exponential backoff: doubles per attempt). */
  reduce_backoff_ms: Type.Integer({ minimum: 0, default: 1_000 }),
  /**
   * How often the aggregator re-adds the reduce job of a group that has been ready this long without
   * finishing (its job was lost: the process that should have added it died first), ms.
   */
  reduce_sweep_interval_ms: Type.Integer({ minimum: 100, default: 5_000 }),
  /**
   * A group left open (no chunk, no close) this long is cancelled by the aggregator's sweep, s: its
   * client went away, and its members must not wait forever.
   */
  open_group_ttl_s: Type.Integer({ minimum: 1, default: 3_600 }),
  /** Reduces one aggregator runs at once (BullMQ worker `concurrency`). */
  aggregator_concurrency: Type.Integer({ minimum: 1, default: 1 }),
  /**
   * File of API keys (`{tenant, key_sha256, rate_limit_rps?, max_queued?, callback_secret?}` as a JSON
   * array or JSON lines, api-keys.ts); with any key configured, every route but the probes needs one.
   */
  api_keys_file: Type.Optional(Type.String()),
  /** API key entries inline, in the format of api_keys_file (added to its entries). */
  api_keys: Type.Optional(Type.String()),
  /**
   * Bearer token `GET /metrics` needs while API keys are configured (tenant keys never read metrics:
   * they span every tenant); unset = `/metrics` answers 401 while keys are configured.
   */
  metrics_api_key: Type.Optional(Type.String({ minLength: 16 })),
  /** Secret of the callback signature when no API key is configured, or for a tenant without `callback_secret`. */
  callback_secret: Type.Optional(Type.String({ minLength: 16 })),
  /** Accept `callback_url`s that resolve to loopback, private, link-local or other non-public addresses (tests, a private network). */
  callback_allow_private: Type.Boolean({ default: false }),
  /** Attempts of one callback delivery (BullMQ `attempts`) before it is dead-lettered (kept in the queue's failed set). */
  callback_attempts: Type.Integer({ minimum: 1, default: 8 }),
  /** First retry delay of a failed callback, ms (BullMQ exponential backoff: doubles per attempt). */
  callback_backoff_ms: Type.Integer({ minimum: 0, default: 1_000 }),
  /** Longest time one callback POST may take (connect + answer), ms; past it the attempt failed. */
  callback_timeout_ms: Type.Integer({ minimum: 100, default: 10_000 }),
  /** How often the aggregator moves due callbacks (settled jobs and groups with a callback_url) onto the queue `callbacks`, ms. */
  callback_poll_interval_ms: Type.Integer({ minimum: 10, default: 250 }),
});
export type Settings = Static<typeof Settings>;

/** `true`/`1`/`yes` → true, `false`/`0`/`no` → false, anything else as it is (the schema then names the variable). */
function parseBoolean(value: string): boolean | string {
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  return value;
}

/**
 * Read settings from an environment (default `process.env`), convert numbers, apply defaults and
 * resolve folders against the current directory. `REDIS_CLUSTER_NODES` becomes `redis_url`
 * `redis+cluster://<nodes>` (redis.ts).
 * @throws InferlineError `invalid_config` naming the variable when a value is invalid.
 */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const raw: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(Settings.properties)) {
    const value = env[name.toUpperCase()];
    if (value === undefined || value === '') continue;
    const type = 'type' in schema ? schema.type : undefined;
    raw[name] = type === 'integer' || type === 'number' ? Number(value) : type === 'boolean' ? parseBoolean(value) : value;
  }
  const settings = Value.Default(Settings, raw) as Settings;
  const first = Value.Errors(Settings, settings).First();
  if (first) {
    throw new InferlineError('invalid_config', `environment variable ${first.path.slice(1).toUpperCase()}: ${first.message}`);
  }
  if (settings.redis_cluster_nodes !== undefined) {
    if (settings.redis_url !== undefined) throw new InferlineError('invalid_config', 'environment variables REDIS_URL and REDIS_CLUSTER_NODES: set one, not both');
    settings.redis_url = `redis+cluster://${settings.redis_cluster_nodes}`;
  }
  settings.model_repository = resolve(settings.model_repository);
  settings.cache_dir = resolve(settings.cache_dir);
  settings.state_dir = resolve(settings.state_dir);
  return settings;
}
