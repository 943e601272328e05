import { build } from 'hdr-histogram-js';
import { Pool } from 'undici';

/** Largest latency the histogram tracks, µs (longer ones are recorded as this). */
const HISTOGRAM_MAX_US = 300_000_000;
/** Significant digits the histogram keeps. */
const HISTOGRAM_DIGITS = 3;
/** Reply headers must arrive within this (ms): above the longest long-poll `wait` (30 s) with slack. */
const HEADERS_TIMEOUT_MS = 90_000;

/** What one request of {@link runClosedLoop} came to. */
export interface RequestOutcome {
  /** The system answered with a successful result. */
  ok: boolean;
  /** `timings.batch_size` of the result, when the system reports it (inferline). */
  batchSize?: number;
  /** Times it was refused with 429 and sent again after `Retry-After`. */
  retries: number;
  /** Texts this request completed (the bulk form carries many); default 1. Rates and CPU count texts. */
  texts?: number;
}

/** One request of the load: send `text` through `pool` and report the outcome; never rejects. */
export type SendRequest = (pool: Pool, text: string) => Promise<RequestOutcome>;

/** Options of {@link runClosedLoop}. */
export interface ClosedLoopOptions {
  /** Base URL of the system, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Concurrent client loops, one keep-alive socket each. */
  clients: number;
  /** Measured window, ms. */
  durationMs: number;
  /** Request texts, taken round-robin across all clients. */
  texts: readonly string[];
  send: SendRequest;
  /** Called synchronously right before the first request and at the end of the window (CPU samples). */
  onWindowStart?: () => void;
  onWindowEnd?: () => void;
}

/** Figures of one {@link runClosedLoop} run. */
export interface ClosedLoopResult {
  clients: number;
  /** Successful requests, including those that finished after the window. */
  requests: number;
  /** Successful requests finished inside the window. */
  completed_in_window: number;
  /** `completed_in_window` per second of the window. */
  throughput: number;
  /** Latency of the successful requests (429 waits included), ms. */
  p50_ms: number;
  p99_ms: number;
  /** Mean reported batch size over the successful requests; NaN when the system reports none. */
  mean_batch_size: number;
  /** Requests that failed (error reply, failed job, transport error). */
  failed: number;
  /** 429 answers retried. */
  retried: number;
}

/**
 * Closed-loop load: `clients` loops, each sending its next request as soon as the previous one
 * finished, until `durationMs` has passed (requests in flight then are let finish). One undici
 * {@link Pool} with one keep-alive connection per client, so every system sees the same efficient
 * client. Latency goes into an HDR histogram (https://hdrhistogram.github.io/HdrHistogram/), in µs.
 */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const { clients, durationMs, texts, send } = options;
  if (texts.length === 0) throw new Error('runClosedLoop: no texts');
  const pool = new Pool(options.url, { connections: clients, pipelining: 1, headersTimeout: HEADERS_TIMEOUT_MS });
  const histogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: HISTOGRAM_MAX_US, numberOfSignificantValueDigits: HISTOGRAM_DIGITS });
  let requests = 0;
  let completedInWindow = 0;
  let failed = 0;
  let retried = 0;
  let batchSizeSum = 0;
  let batchSizeCount = 0;
  let next = 0;

  options.onWindowStart?.();
  const started = performance.now();
  const deadline = started + durationMs;
  const windowTimer = setTimeout(() => options.onWindowEnd?.(), durationMs);

  const client = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const text = texts[next++ % texts.length] as string;
      const t0 = performance.now();
      const outcome = await send(pool, text);
      const finished = performance.now();
      retried += outcome.retries;
      if (!outcome.ok) {
        failed++;
        continue;
      }
      histogram.recordValue(Math.min(HISTOGRAM_MAX_US, Math.max(1, Math.round((finished - t0) * 1000))));
      requests++;
      // Only what finished inside the window counts toward the rate (the CPU samples cover the window).
      if (finished <= deadline) completedInWindow += outcome.texts ?? 1;
      if (outcome.batchSize !== undefined) {
        batchSizeSum += outcome.batchSize;
        batchSizeCount++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, client));
  } finally {
    clearTimeout(windowTimer);
    await pool.close();
  }
  const result: ClosedLoopResult = {
    clients,
    requests,
    completed_in_window: completedInWindow,
    throughput: (completedInWindow * 1000) / durationMs,
    p50_ms: requests > 0 ? histogram.getValueAtPercentile(50) / 1000 : NaN,
    p99_ms: requests > 0 ? histogram.getValueAtPercentile(99) / 1000 : NaN,
    mean_batch_size: batchSizeCount > 0 ? batchSizeSum / batchSizeCount : NaN,
    failed,
    retried,
  };
  histogram.destroy();
  return result;
}
