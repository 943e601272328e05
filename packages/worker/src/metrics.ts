import { createServer, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '@inferline/shared';
import type { ItemResult } from './predict-with-split.ts';

/**
 * A worker's Prometheus metrics (DESIGN.md section 9). Names follow Triton's split
 * (https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/metrics.html):
 * `inferline_inference_count_total` counts requests run and `inferline_batch_executions_total` forward
 * passes, so a dashboard derives the average batch size as their ratio.
 */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'model' | 'version' | 'status'>;
  readonly #inferenceCount: Counter<'model' | 'version'>;
  readonly #batchExecutions: Counter<'model' | 'version'>;
  readonly #queueDuration: Histogram<'model' | 'version'>;
  readonly #computeDuration: Histogram<'model' | 'version'>;
  readonly #batchSize: Histogram<'model' | 'version'>;
  readonly #loads: Counter<'model' | 'version'>;
  readonly #evictions: Counter<'model' | 'version'>;
  readonly #weightBytes: Gauge;

  /** @param backend the TF.js backend in use, exported as `inferline_backend_info{backend} 1`. */
  constructor(backend: string) {
    const registers = [this.registry];
    const labelNames = ['model', 'version'] as const;
    collectProcessMetrics(this.registry);
    this.#requests = new Counter({
      name: 'inferline_requests_total',
      help: 'Requests settled by workers, by outcome (status="succeeded" or the error code).',
      labelNames: ['model', 'version', 'status'] as const,
      registers,
    });
    this.#inferenceCount = new Counter({ name: 'inferline_inference_count_total', help: 'Requests run through a forward pass.', labelNames, registers });
    this.#batchExecutions = new Counter({ name: 'inferline_batch_executions_total', help: 'Forward passes (batches) run.', labelNames, registers });
    this.#queueDuration = new Histogram({
      name: 'inferline_queue_duration_seconds',
      help: 'Time from acceptance by the gateway to the start of the batch that ran the request.',
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#computeDuration = new Histogram({
      name: 'inferline_compute_duration_seconds',
      help: 'Time of one batch: preprocessing, forward pass and postprocessing.',
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#batchSize = new Histogram({
      name: 'inferline_batch_size',
      help: 'Requests per forward pass.',
      labelNames,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.#loads = new Counter({ name: 'inferline_model_loads_total', help: 'Model versions loaded and warmed up by this worker (at start, on demand, or again after an eviction).', labelNames, registers });
    this.#evictions = new Counter({
      name: 'inferline_model_evictions_total',
      help: 'Model versions unloaded to make room under MODEL_MEMORY_BUDGET_MB (least recently used first).',
      labelNames,
      registers,
    });
    this.#weightBytes = new Gauge({ name: 'inferline_model_weights_bytes', help: 'Model instances this worker holds, as the memory budget counts them ((version folder size + INSTANCE_OVERHEAD_MB) × instances).', registers });
    new Gauge({ name: 'inferline_backend_info', help: 'The TF.js backend this worker runs on.', labelNames: ['backend'] as const, registers }).set({ backend }, 1);
  }

  /** Count a version loaded (and warmed up). */
  observeLoad(model: string, version: number): void {
    this.#loads.inc({ model, version: String(version) });
  }

  /** Count a version unloaded to make room under the memory budget. */
  observeEviction(model: string, version: number): void {
    this.#evictions.inc({ model, version: String(version) });
  }

  /** Set the weights held now, bytes. */
  setWeightBytes(bytes: number): void {
    this.#weightBytes.set(bytes);
  }

  /** Record one settled batch: its results, each request's queue time (ms) and the batch's compute time (ms). */
  observeBatch(model: string, version: number, results: readonly ItemResult[], queueMs: readonly number[], computeMs: number): void {
    const labels = { model, version: String(version) };
    this.#inferenceCount.inc(labels, results.length);
    this.#batchExecutions.inc(labels);
    this.#batchSize.observe(labels, results.length);
    this.#computeDuration.observe(labels, computeMs / 1000);
    // One label lookup per batch, not per request (prom-client hashes the label set on every call).
    const queue = this.#queueDuration.labels(labels);
    for (const ms of queueMs) queue.observe(ms / 1000);
    const statuses = new Map<string, number>();
    for (const result of results) {
      const status = result.ok ? 'succeeded' : result.code;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    for (const [status, count] of statuses) this.#requests.inc({ ...labels, status }, count);
  }

  /** Requests failed `deadline_exceeded` without inference: counted in `inferline_requests_total` only. */
  observeExpired(model: string, version: number, count: number): void {
    this.#requests.inc({ model, version: String(version), status: 'deadline_exceeded' }, count);
  }
}

/**
 * Health probes served beside `/metrics` ({@link serveMetrics}): `ready()` returns undefined when the
 * process is ready, else why not (the text of the 503 answer).
 */
export interface HealthChecks {
  ready(): string | undefined;
}

/**
 * Serve on `port` (0 = a free one): `GET /metrics` (Prometheus text format of `registry`); with
 * `health`, also `GET /healthz` (200 while the process serves HTTP: liveness) and `GET /readyz` (200
 * when `health.ready()` says so, else 503 `{"error":{"code":"unavailable","message"}}`, as the
 * gateway's). Anything else answers 404. Resolves once listening.
 * @throws Error when the port cannot be bound.
 */
export async function serveMetrics(registry: Registry, port: number, host = '0.0.0.0', health?: HealthChecks): Promise<Server> {
  const json = (response: ServerResponse, status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer((request, response) => {
    const route = request.method === 'GET' ? request.url : undefined;
    if (route === '/metrics') {
      registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500).end(String(error)),
      );
    } else if (health && route === '/healthz') {
      json(response, 200, { status: 'ok' });
    } else if (health && route === '/readyz') {
      const notReady = health.ready();
      if (notReady === undefined) json(response, 200, { status: 'ready' });
      else json(response, 503, { error: { code: 'unavailable', message: notReady } });
    } else {
      json(response, 404, { error: { code: 'not_found', message: health ? 'GET /metrics, /healthz or /readyz' : 'GET /metrics' } });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
