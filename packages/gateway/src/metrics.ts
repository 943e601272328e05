import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics, keys, type Logger, type Redis } from '@inferline/shared';
import type { ModelCatalog } from './model-catalog.ts';

/** Upper bounds (s) of `inferline_request_duration_seconds`; long-polls and sync calls reach tens of seconds. */
const REQUEST_DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The gateway's Prometheus metrics (DESIGN.md section 9), on a registry of their own per app. */
export interface GatewayMetrics {
  registry: Registry;
  /** Requests admitted or rejected by the gateway; `status` = `accepted` or the error code (`queue_full`, `invalid_input`, ...). */
  requests: Counter<'model' | 'version' | 'status'>;
  /** Time spent handling each HTTP request, by route pattern. */
  requestDuration: Histogram<'method' | 'route' | 'status_code'>;
}

/**
 * Create the registry and metrics of one app. `inferline_queue_depth{model}` (XLEN summed over the
 * model's served versions: entries waiting + in flight), `inferline_dead_letters{model}` (XLEN of its
 * dead-letter streams) and `inferline_workers{model}` (workers that
 * heartbeat within `3 * heartbeatIntervalMs`) and `inferline_groups{state}` (open and ready aggregation
 * groups, summed over the per-model sets of the repository's models) are read from Redis on each scrape; when Redis cannot be
 * reached they are left out of that scrape rather than failing it.
 */
export function createMetrics(redis: Redis, models: ModelCatalog, heartbeatIntervalMs: number, logger: Logger): GatewayMetrics {
  const registry = new Registry();
  collectProcessMetrics(registry);

  const requests = new Counter({
    name: 'inferline_requests_total',
    help: 'Inference requests admitted (status="accepted") or rejected (status=<error code>) by the gateway.',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [registry],
  });
  const requestDuration = new Histogram({
    name: 'inferline_request_duration_seconds',
    help: 'Time the gateway spent handling an HTTP request, from arrival to the last byte.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: REQUEST_DURATION_BUCKETS_S,
    registers: [registry],
  });
  new Gauge({
    name: 'inferline_queue_depth',
    help: 'Requests waiting or in flight in the streams of a model (XLEN over its served versions and their priority levels).',
    labelNames: ['model'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const served = models.list().map((m) => ({ name: m.config.name, streams: m.served.flatMap((v) => keys.requestStreams(m.config.name, v, m.config.batching.priority_levels)) }));
      const pipeline = redis.pipeline();
      for (const m of served) for (const stream of m.streams) pipeline.xlen(stream);
      const replies = await readPipeline(pipeline, logger, 'inferline_queue_depth');
      if (!replies) return;
      let i = 0;
      for (const m of served) {
        let depth = 0;
        for (let n = 0; n < m.streams.length; n++) depth += Number(replies[i++] ?? 0);
        this.set({ model: m.name }, depth);
      }
    },
  });
  new Gauge({
    name: 'inferline_dead_letters',
    help: 'Requests kept in the dead-letter streams of a model (XLEN over its served versions): delivered more than max_deliveries times and failed with "poison". Only an operator removes them.',
    labelNames: ['model'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const served = models.list().map((m) => ({ name: m.config.name, versions: m.served }));
      const pipeline = redis.pipeline();
      for (const m of served) for (const v of m.versions) pipeline.xlen(keys.deadLetter(m.name, v));
      const replies = await readPipeline(pipeline, logger, 'inferline_dead_letters');
      if (!replies) return;
      let i = 0;
      for (const m of served) {
        let count = 0;
        for (let n = 0; n < m.versions.length; n++) count += Number(replies[i++] ?? 0);
        this.set({ model: m.name }, count);
      }
    },
  });
  new Gauge({
    name: 'inferline_model_scale_to_zero',
    help: 'Whether a model is configured scale_to_zero (1) or not (0): admitted with no live worker, its workers started by an autoscaler on queue depth.',
    labelNames: ['model'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const m of models.list()) this.set({ model: m.config.name }, m.config.scale_to_zero ? 1 : 0);
    },
  });
  new Gauge({
    name: 'inferline_workers',
    help: 'Workers whose heartbeat for a model is recent (within 3 heartbeat periods).',
    labelNames: ['model'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const names = models.list().map((m) => m.config.name);
      const pipeline = redis.pipeline();
      const since = Date.now() - 3 * heartbeatIntervalMs;
      for (const name of names) pipeline.zcount(keys.workers(name), since, '+inf');
      const replies = await readPipeline(pipeline, logger, 'inferline_workers');
      if (!replies) return;
      names.forEach((name, i) => this.set({ model: name }, Number(replies[i] ?? 0)));
    },
  });
  new Gauge({
    name: 'inferline_groups',
    help: 'Aggregation groups by state: "open" (taking chunks), "ready" (every member settled, reduce waiting or running). A "ready" count that only grows means no aggregator is keeping up.',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      // Each model (shard) keeps its own sets, in its slot (keys.ts): sum over the repository's models.
      const names = models.list().map((m) => m.config.name);
      const pipeline = redis.pipeline();
      for (const name of names) pipeline.zcard(keys.groupsOpen(name)).zcard(keys.groupsReady(name));
      const replies = await readPipeline(pipeline, logger, 'inferline_groups');
      if (!replies) return;
      let open = 0;
      let ready = 0;
      names.forEach((_, i) => {
        open += Number(replies[2 * i] ?? 0);
        ready += Number(replies[2 * i + 1] ?? 0);
      });
      this.set({ state: 'open' }, open);
      this.set({ state: 'ready' }, ready);
    },
  });
  return { registry, requests, requestDuration };
}

/** Replies of a pipeline, or undefined (logged) when it failed. */
async function readPipeline(pipeline: ReturnType<Redis['pipeline']>, logger: Logger, metric: string): Promise<unknown[] | undefined> {
  try {
    const results = (await pipeline.exec()) ?? [];
    const failed = results.find(([error]) => error)?.[0];
    if (failed) throw failed;
    return results.map(([, value]) => value);
  } catch (error) {
    logger.warn({ err: error, metric }, 'metric not collected: Redis did not answer');
    return undefined;
  }
}
