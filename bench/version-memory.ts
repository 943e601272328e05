import { join } from 'node:path';
import { loadModelConfig } from '../packages/shared/src/config.ts';
import { memoryFigures, warmupSizes } from '../packages/worker/src/repository/follower.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';

/** Figures of one moment: TF.js tensors held and their bytes (`tf.memory()`), process RSS. */
function line(label: string): string {
  const { tensors, tensor_bytes, rss_bytes } = memoryFigures();
  return `${label.padEnd(18)} tensors ${String(tensors).padStart(3)}   tensor MB ${(tensor_bytes / 1e6).toFixed(1).padStart(6)}   RSS MB ${(rss_bytes / 1e6).toFixed(0).padStart(5)}`;
}

/**
 * `npm run bench -- --version-memory [--model glove-embed --rounds 3]`: load, warm up and unload one
 * version of a model `rounds` times in this process, as a worker does when a version enters and
 * leaves its policy, and print `tf.memory()` and RSS after each step: tensors must return to the
 * pre-load count, RSS must stay bounded (no growth per round).
 * @throws Error when the model's version 1 is not built (`npm run models`).
 */
export async function benchVersionMemory(options: { repository: string; model: string; rounds: number }): Promise<void> {
  const backend = await initBackend();
  const modelDir = join(options.repository, options.model);
  const config = await loadModelConfig(modelDir);
  console.log(`${options.model} v1 on ${backend}: load → warm up → unload, ${options.rounds} rounds`);
  const gc = (globalThis as { gc?: () => void }).gc;
  console.log(line('before any load'));
  for (let round = 1; round <= options.rounds; round++) {
    const servable = await loadServable(config, join(modelDir, '1'), 1);
    await servable.warmup(warmupSizes(config));
    console.log(line(`round ${round} loaded`));
    servable.dispose();
    gc?.();
    console.log(line(`round ${round} unloaded`));
  }
  if (!gc) console.log('(run node with --expose-gc for RSS figures after a full collection)');
}
