import { join } from 'node:path';
import { loadModelConfig } from '@inferline/shared';
import { initBackend } from '../../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../../packages/worker/src/runtime/servable.ts';

/** Batch sizes a baseline warms up before it serves (it only ever runs batch 1). */
const WARMUP_SIZES = [1];

/** Embeds one text: the model's `embedding` output as a plain array of numbers. */
export type Embedder = (text: string) => Promise<number[]>;

/**
 * Load version 1 of an embedding model (`glove-embed`) in this process the way inferline's workers do
 * (`initBackend`, `loadServable`, warm-up), for the hand-built baselines, which run one forward pass per
 * request. `modelDir` is `models/<name>`.
 * @throws InferlineError when the model cannot be loaded.
 */
export async function loadEmbedder(modelDir: string): Promise<Embedder> {
  await initBackend();
  const config = await loadModelConfig(modelDir);
  const servable = await loadServable(config, join(modelDir, '1'), 1);
  await servable.warmup(WARMUP_SIZES);
  const outputName = config.signature.outputs[0]?.name ?? 'embedding';
  return async (text) => {
    const [output] = await servable.predict([text]);
    const embedding = output?.[outputName];
    if (!(embedding instanceof Float32Array)) throw new Error(`${config.name}: output "${outputName}" is not a Float32Array`);
    return Array.from(embedding);
  };
}
