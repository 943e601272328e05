import { join } from 'node:path';
import { loadModelConfig } from '../packages/shared/src/config.ts';
import { memoryFigures, warmupSizes } from '../packages/worker/src/repository/follower.ts';
import { createLogger } from '../packages/shared/src/logger.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { InstancePool } from '../packages/worker/src/runtime/instance-pool.ts';

/** Figures of one moment: TF.js tensors held by the version's instances and their bytes (`tf.memory()` in each), process RSS. */
async function line(label: string, pool?: InstancePool): Promise<string> {
  const { tensors, tensor_bytes } = pool ? await pool.memory() : { tensors: 0, tensor_bytes: 0 };
  const { rss_bytes } = memoryFigures();
  return `${label.padEnd(18)} tensors ${String(tensors).padStart(3)}   tensor MB ${(tensor_bytes / 1e6).toFixed(1).padStart(6)}   RSS MB ${(rss_bytes / 1e6).toFixed(0).padStart(5)}`;
}

/**
 * `npm run bench -- --version-memory [--model glove-embed --rounds 3]`: load, warm up and unload one
 * version of a model `rounds` times in this process, as a worker does when a version enters and
 * leaves its policy (its instance threads started, then ended), and print the instances' `tf.memory()`
 * and the process RSS after each step: RSS must come back down after each unload (an ended thread
 * frees its wasm heap) and not grow per round.
 * @throws Error when the model's version 1 is not built (`npm run models`).
 */
export async function benchVersionMemory(options: { repository: string; model: string; rounds: number }): Promise<void> {
  const backend = await initBackend();
  const modelDir = join(options.repository, options.model);
  const config = await loadModelConfig(modelDir);
  console.log(`${options.model} v1 on ${backend}: load → warm up → unload, ${options.rounds} rounds`);
  const gc = (globalThis as { gc?: () => void }).gc;
  const logger = createLogger('bench', 'warn');
  console.log(await line('before any load'));
  for (let round = 1; round <= options.rounds; round++) {
    const pool = await InstancePool.start({ config, versionDir: join(modelDir, '1'), version: 1, backend, count: 1, warmupSizes: warmupSizes(config), logger });
    console.log(await line(`round ${round} loaded`, pool));
    await pool.dispose();
    gc?.();
    console.log(await line(`round ${round} unloaded`));
  }
  if (!gc) console.log('(run node with --expose-gc for RSS figures after a full collection)');
}
