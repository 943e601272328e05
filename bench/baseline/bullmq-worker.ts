/**
 * BullMQ baseline worker for bench/compare.ts: a BullMQ Worker on the queue {@link BASELINE_QUEUE}
 * that loads the model in-process (as inferline's workers do) and runs one forward pass per job,
 * returning the embedding as a plain number array (the job's return value). Env (baseline-env.ts):
 * `REDIS_URL`, `MODEL_DIR`. Sends `{"type":"baseline-ready"}` over IPC once it consumes.
 */
import { Worker } from 'bullmq';
import { announceReady, BASELINE_QUEUE, onStop, requireEnv } from './baseline-env.ts';
import { bullmqConnection, WORKER_CONCURRENCY } from './bullmq-options.ts';
import { loadEmbedder } from './load-embedder.ts';

const embed = await loadEmbedder(requireEnv('MODEL_DIR'));
const worker = new Worker<{ text: string }, number[]>(BASELINE_QUEUE, (job) => embed(job.data.text), {
  connection: bullmqConnection(requireEnv('REDIS_URL')),
  concurrency: WORKER_CONCURRENCY,
});
worker.on('error', (error) => console.error('bullmq-worker: worker error', error));
await worker.waitUntilReady();
onStop(() => worker.close());
announceReady();
