import { createLogger, DEFAULT_REDIS_URL, loadSettings } from '@inferline/shared';
import { startAggregator } from '@inferline/worker';
import { trapStopSignals } from '../signals.ts';

/**
 * `inferline aggregator`: run the reducers of aggregation groups (the BullMQ worker of queue `reduce`,
 * DESIGN.md section 5) against `REDIS_URL` (default {@link DEFAULT_REDIS_URL}) until SIGINT/SIGTERM.
 * Any number may run; each group is reduced once.
 */
export async function runAggregator(): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger('aggregator');
  const signal = trapStopSignals({ onStop: (cause) => logger.info({ cause }, 'stopping aggregator') });
  await startAggregator({ settings: { ...settings, redis_url: settings.redis_url ?? DEFAULT_REDIS_URL }, logger, signal });
}
