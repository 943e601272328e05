import type { Logger, Settings } from '@inferline/shared';

/** Options of one worker process. */
export interface WorkerOptions {
  settings: Settings & { redis_url: string };
  /** Models to serve; empty = every model of the repository. */
  models: string[];
  logger: Logger;
  /** Abort to stop: the batch in hand is finished and acknowledged, then startWorker resolves. */
  signal: AbortSignal;
}

/** Run a worker until `signal` aborts. */
export async function startWorker(options: WorkerOptions): Promise<void> {
  await Promise.resolve();
  throw new Error(`not implemented ${options.models.join(',')}`);
}
