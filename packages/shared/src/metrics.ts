import { collectDefaultMetrics, type Registry } from 'prom-client';

/**
 * Sampling period of the event-loop delay histogram (`nodejs_eventloop_lag_*`), ms. prom-client's
 * default (10 ms) wakes an idle process 100 times a second, most of an idle stack's CPU; at 1 s the
 * lag metrics still show a stalled loop.
 */
export const EVENT_LOOP_MONITORING_PRECISION_MS = 1_000;

/** Register prom-client's process metrics (CPU, memory, event loop, GC) on a registry. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS });
}
