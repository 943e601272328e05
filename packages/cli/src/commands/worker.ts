import { createLogger, DEFAULT_REDIS_URL, loadSettings } from '@inferline/shared';
import { startWorker } from '@inferline/worker';
import { trapStopSignals } from '../signals.ts';

/** Options of `inferline worker`. */
export interface WorkerCommandOptions {
  /** Comma-separated model names; unset = every model of the repository. */
  models?: string;
}

/** Split `--models a,b` into names (empty list = every model). */
export function parseModelList(list: string | undefined): string[] {
  return (list ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '');
}

/**
 * `inferline worker [--models a,b]`: consume the models' streams against `REDIS_URL` (default
 * {@link DEFAULT_REDIS_URL}) until SIGINT/SIGTERM; the batch in hand is finished and acknowledged first.
 */
export async function runWorker(options: WorkerCommandOptions): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger('worker');
  const signal = trapStopSignals({ onStop: (cause) => logger.info({ cause }, 'stopping worker') });
  const models = parseModelList(options.models);
  await startWorker({ settings: { ...settings, redis_url: settings.redis_url ?? DEFAULT_REDIS_URL }, models, logger, signal });
}
