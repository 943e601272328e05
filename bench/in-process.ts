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
  /** Inputs, taken round-robin (e.g. {@link loadMobyDickParagraphs}); each batch is a ragged slice of them. */
  texts: string[];
  /** Measured time per batch size (ms), after warm-up. */
  durationMs: number;
}

/** One figure of {@link benchInProcess}. */
export interface InProcessBenchRow {
  batchSize: number;
  /** Texts embedded per second of wall time (one core, no queue, no serialization). */
  textsPerSecond: number;
}

/**
 * Throughput of a model's forward pass alone: pick the backend (`initBackend`), load the version through
 * `loadServable`, warm up at every batch size, then for each batch size call `predict` back to back for
 * `durationMs` over consecutive slices of `texts` and report texts/s. The same code path a worker runs
 * per batch, minus Redis and the codec.
 */
export async function benchInProcess(options: InProcessBenchOptions): Promise<InProcessBenchRow[]> {
  const { modelDir, version, batchSizes, texts, durationMs } = options;
  if (texts.length === 0) throw new Error('benchInProcess: no texts');
  await initBackend();
  const config = await loadModelConfig(modelDir);
  const servable = await loadServable(config, join(modelDir, String(version)), version);
  try {
    await servable.warmup(batchSizes);
    const rows: InProcessBenchRow[] = [];
    for (const batchSize of batchSizes) {
      // Pre-slice the batches so the loop measures predict() only.
      const batches: string[][] = [];
      for (let start = 0; start < texts.length; start += batchSize) {
        const batch = texts.slice(start, start + batchSize);
        while (batch.length < batchSize) batch.push(texts[(start + batch.length) % texts.length] as string);
        batches.push(batch);
      }
      let done = 0;
      const started = performance.now();
      let elapsed = 0;
      for (let i = 0; elapsed < durationMs; i++) {
        await servable.predict(batches[i % batches.length] as string[]);
        done += batchSize;
        elapsed = performance.now() - started;
      }
      rows.push({ batchSize, textsPerSecond: (done * 1000) / elapsed });
    }
    return rows;
  } finally {
    servable.dispose();
  }
}
