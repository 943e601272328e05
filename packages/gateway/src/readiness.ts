import { InferlineError, readLiveVersions } from '@inferline/shared';
import type { GatewayDeps } from './route-context.ts';

/**
 * The gateway's readiness rule, shared by `GET /readyz`, OIP's `GET /v2/health/ready` and gRPC
 * `ServerReady`: Redis answers PING, the job event subscription is active, and every model of the
 * repository that has a version to serve has one AVAILABLE on a live worker. Models whose config is
 * invalid, or without any version folder, are not waited for, nor are `scale_to_zero` models (at zero
 * workers they are still served: their requests queue until an autoscaler starts a worker).
 * @returns the names of the models waited for (all of them served).
 * @throws InferlineError `unavailable` saying what is missing (with `details.models_unavailable`); a
 *   Redis error as it is (the callers map it to unavailable).
 */
export async function checkReady(deps: Pick<GatewayDeps, 'redis' | 'events' | 'models' | 'settings'>): Promise<string[]> {
  await deps.redis.ping();
  if (!deps.events.subscribed) throw new InferlineError('unavailable', 'job event subscription is not active');
  const models = deps.models.list().filter((model) => model.served.length > 0 && !model.config.scale_to_zero);
  const live = await Promise.all(models.map((model) => readLiveVersions(deps.redis, model.config.name, deps.settings.heartbeat_interval_ms)));
  const waiting = models.filter((_model, i) => ![...(live[i]?.versions.values() ?? [])].some((version) => version.state === 'AVAILABLE')).map((model) => model.config.name);
  if (waiting.length > 0) {
    throw new InferlineError('unavailable', `no live worker has a version AVAILABLE yet for: ${waiting.join(', ')}`, { models_unavailable: waiting });
  }
  return models.map((model) => model.config.name);
}
