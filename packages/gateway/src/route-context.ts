import type { ApiKeys, Logger, Redis, Settings } from '@inferline/shared';
import type { JobEvents } from './job-events.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { ModelCatalog } from './model-catalog.ts';

/** What {@link buildApp} needs; the caller opens and closes all of it. */
export interface GatewayDeps {
  /** Command connection, `connectRedis(url, { name, failFast: true })`: fails at once while Redis is away. */
  redis: Redis;
  /** The gateway's job event subscription. */
  events: JobEvents;
  models: ModelCatalog;
  settings: Settings;
  logger: Logger;
  /** The API keys (`loadApiKeys(settings)`); absent = read from `settings` by buildApp. */
  apiKeys?: ApiKeys;
}

/** What every route plugin gets: the deps plus the app's metrics and its shutdown signal. */
export interface RouteContext extends GatewayDeps {
  apiKeys: ApiKeys;
  metrics: GatewayMetrics;
  /** Aborted when the app starts closing: long-polls answer and event streams end at once. */
  shutdown: AbortSignal;
}
