import { build } from 'hdr-histogram-js';
import type { JobView } from '@inferline/shared';
import { JobsClient } from '../packages/cli/src/jobs-client.ts';

/** Longest a single request may take before it counts as failed, s. */
const JOB_TIMEOUT_S = 120;

/** Figures of one end-to-end run at a fixed number of concurrent clients. */
export interface EndToEndResult {
  concurrency: number;
  requests: number;
  /** Requests completed per second within the measured window. */
  throughput: number;
  /** Submit-to-result latency, ms. */
  p50_ms: number;
  p99_ms: number;
  /** Mean `timings.batch_size` over the completed jobs. */
  mean_batch_size: number;
  failed: number;
}

/**
 * Closed-loop load: `concurrency` clients, each submitting `POST /v1/jobs` and long-polling
 * `GET /v1/jobs/:id?wait=` until the result (the `inferline submit` client, {@link JobsClient}), for
 * `durationMs`. A request refused, or not finished within JOB_TIMEOUT_S, counts as failed. Latency is recorded in an HDR histogram
 * (https://hdrhistogram.github.io/HdrHistogram/).
 */
export async function benchEndToEnd(options: {
  url: string;
  /** The model of every request, or a function choosing each request's model. */
  model: string | (() => string);
  /** `input` values of the request bodies (texts; `{"b64": ...}` images), taken round-robin. */
  inputs: readonly unknown[];
  concurrency: number;
  durationMs: number;
}): Promise<EndToEndResult> {
  const jobs = new JobsClient(options.url, { connections: options.concurrency });
  const histogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let requests = 0;
  let completedInWindow = 0;
  let failed = 0;
  let batchSizeSum = 0;
  let next = 0;
  const started = performance.now();
  const deadline = started + options.durationMs;

  const client = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const input = options.inputs[next++ % options.inputs.length];
      const t0 = performance.now();
      let job: JobView;
      try {
        job = await jobs.run({ model: typeof options.model === 'string' ? options.model : options.model(), input }, JOB_TIMEOUT_S);
      } catch {
        failed++;
        continue;
      }
      const finished = performance.now();
      histogram.recordValue(Math.max(1, Math.round((finished - t0) * 1000)));
      requests++;
      // Throughput counts what finished inside the window: with slow models the clients' last requests
      // finish well after it, and counting them over the longer time would understate the rate.
      if (finished <= deadline) completedInWindow++;
      if (job.status !== 'succeeded') failed++;
      batchSizeSum += job.timings?.batch_size ?? 0;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, client));
  await jobs.close();
  const result: EndToEndResult = {
    concurrency: options.concurrency,
    requests,
    throughput: (completedInWindow * 1000) / options.durationMs,
    p50_ms: histogram.getValueAtPercentile(50) / 1000,
    p99_ms: histogram.getValueAtPercentile(99) / 1000,
    mean_batch_size: requests > 0 ? batchSizeSum / requests : 0,
    failed,
  };
  histogram.destroy();
  return result;
}
