import type { InProcessBenchRow } from './in-process.ts';

/** One point of the model's own CPU cost: batch size → µs of one core per request. */
export interface ModelCostPoint {
  batchSize: number;
  /** 1e6 / inputs-per-second of the in-process forward pass (one core), µs per request. */
  us_per_request: number;
}

/** The in-process figures (bench/in-process.ts) as cost points, sorted by batch size. */
export function modelCostPoints(rows: readonly InProcessBenchRow[]): ModelCostPoint[] {
  return rows.map((row) => ({ batchSize: row.batchSize, us_per_request: 1e6 / row.perSecond })).sort((a, b) => a.batchSize - b.batchSize);
}

/**
 * The model's CPU cost per request (µs) at a mean batch size: linear interpolation between the
 * measured batch sizes, clamped to the first and last point outside them.
 * @throws Error when there are no points.
 */
export function modelCostAt(points: readonly ModelCostPoint[], batchSize: number): number {
  const first = points[0];
  const last = points.at(-1);
  if (!first || !last) throw new Error('modelCostAt: no measured batch sizes');
  if (batchSize <= first.batchSize) return first.us_per_request;
  for (let i = 1; i < points.length; i++) {
    const low = points[i - 1] as ModelCostPoint;
    const high = points[i] as ModelCostPoint;
    if (batchSize <= high.batchSize) {
      const share = (batchSize - low.batchSize) / (high.batchSize - low.batchSize);
      return low.us_per_request + share * (high.us_per_request - low.us_per_request);
    }
  }
  return last.us_per_request;
}
