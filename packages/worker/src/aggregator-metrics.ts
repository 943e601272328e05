import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics, type Logger } from '@inferline/shared';

/** Upper bounds (s) of `inferline_reduce_duration_seconds`: a `mean` of a few members to a large `boxes` picture. */
const REDUCE_DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** BullMQ job states counted by `inferline_reduce_backlog{state}` (https://docs.bullmq.io/guide/jobs). */
export const REDUCE_BACKLOG_STATES = ['waiting', 'active'] as const;

/** What {@link AggregatorMetrics} reads the backlog from: a BullMQ `Queue` (`getJobCounts`). */
export interface JobCounter {
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
}

/**
 * The aggregator's Prometheus metrics (DESIGN.md section 9), on a registry of their own:
 * - `inferline_reduces_total{status}`: reduce attempts by outcome: `succeeded` (output written),
 *   `skipped` (the group was not reducing: gone, cancelled, already reduced), the error code that
 *   failed the group at once (`empty_group`, `reduce_failed`, `invalid_reduce`), or `error` (the
 *   attempt threw, say Redis failed; BullMQ retries it, and the last one fails the group with
 *   `reduce_failed`). Each attempt counts once.
 * - `inferline_reduce_duration_seconds`: time of each attempt, read to write.
 * - `inferline_callbacks_total{outcome}`: callback delivery attempts: `delivered`, `retried`,
 *   `dead_lettered`, `skipped`.
 * - `inferline_reduce_backlog{state}`: jobs of the BullMQ queue `reduce` `waiting` and `active`, read
 *   on each scrape; left out of a scrape when Redis does not answer (the scrape does not fail).
 */
export class AggregatorMetrics {
  readonly registry = new Registry();
  readonly #reduces: Counter<'status'>;
  readonly #duration: Histogram;
  readonly #callbacks: Counter<'outcome'>;

  constructor(queue: JobCounter, logger: Logger) {
    const registers = [this.registry];
    collectProcessMetrics(this.registry);
    this.#reduces = new Counter({
      name: 'inferline_reduces_total',
      help: 'Reduce attempts by outcome: succeeded, skipped, the error code that failed the group, or error (retried).',
      labelNames: ['status'] as const,
      registers,
    });
    this.#duration = new Histogram({
      name: 'inferline_reduce_duration_seconds',
      help: 'Time of one reduce attempt, from reading the member outputs to writing the group output.',
      buckets: REDUCE_DURATION_BUCKETS_S,
      registers,
    });
    this.#callbacks = new Counter({
      name: 'inferline_callbacks_total',
      help: 'Callback delivery attempts by outcome: delivered (2xx), retried (failed, tried again later), dead_lettered (last attempt failed; kept in the failed set), skipped (record expired).',
      labelNames: ['outcome'] as const,
      registers,
    });
    new Gauge({
      name: 'inferline_reduce_backlog',
      help: 'Jobs of the BullMQ queue "reduce" by state (waiting, active): groups whose members all settled, not yet reduced.',
      labelNames: ['state'] as const,
      registers,
      async collect() {
        this.reset();
        try {
          const counts = await queue.getJobCounts(...REDUCE_BACKLOG_STATES);
          for (const state of REDUCE_BACKLOG_STATES) this.set({ state }, counts[state] ?? 0);
        } catch (error) {
          logger.warn({ err: error, metric: 'inferline_reduce_backlog' }, 'metric not collected: Redis did not answer');
        }
      },
    });
  }

  /** Count one callback delivery attempt by its outcome (callbacks.ts `CallbackOutcome`). */
  observeCallback(outcome: string): void {
    this.#callbacks.inc({ outcome });
  }

  /** Record one reduce attempt: its outcome (see the class doc) and its time, seconds. */
  observeReduce(status: string, seconds: number): void {
    this.#reduces.inc({ status });
    this.#duration.observe(seconds);
  }
}
