import { join } from 'node:path';
import { loadModelConfig } from '@inferline/shared';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';

/** Options of {@link benchInProcess}. */
export interface InProcessBenchOptions {
  /** `models/<name>` (holds `config.json` and the version folder). */
  modelDir: string;
  version: number;
  /** Batch sizes to measure, in order. */
  batchSizes: number[];
  /** Model inputs as the worker passes them to predict (texts; decoded images), taken round-robin. */
  inputs: readonly unknown[];
  /** Measured time per batch size (ms), after warm-up. */
  durationMs: number;
}

/** One figure of {@link benchInProcess}. */
export interface InProcessBenchRow {
  batchSize: number;
  /** Inputs run per second of wall time (one core, no queue, no serialization). */
  perSecond: number;
}

/**
 * Throughput of a model's forward pass alone: pick the backend (`initBackend`), load the version through
 * `loadServable`, warm up at every batch size, then for each batch size call `predict` back to back for
 * `durationMs` (at least once) over consecutive slices of `inputs` and report inputs/s. The same code path a worker runs
 * per batch, minus Redis and the codec.
 */
export async function benchInProcess(options: InProcessBenchOptions): Promise<InProcessBenchRow[]> {
  const { modelDir, version, batchSizes, inputs, durationMs } = options;
  if (inputs.length === 0) throw new Error('benchInProcess: no inputs');
  await initBackend();
  const config = await loadModelConfig(modelDir);
  const servable = await loadServable(config, join(modelDir, String(version)), version);
  try {
    await servable.warmup(batchSizes);
    const rows: InProcessBenchRow[] = [];
    for (const batchSize of batchSizes) {
      // Pre-slice the batches so the loop measures predict() only.
      const batches: unknown[][] = [];
      for (let start = 0; start < inputs.length; start += batchSize) {
        const batch = inputs.slice(start, start + batchSize);
        while (batch.length < batchSize) batch.push(inputs[(start + batch.length) % inputs.length]);
        batches.push(batch);
      }
      let done = 0;
      const started = performance.now();
      let elapsed = 0;
      for (let i = 0; elapsed < durationMs; i++) {
        await servable.predict(batches[i % batches.length] as unknown[]);
        done += batchSize;
        elapsed = performance.now() - started;
      }
      rows.push({ batchSize, perSecond: (done * 1000) / elapsed });
    }
    return rows;
  } finally {
    servable.dispose();
  }
}
