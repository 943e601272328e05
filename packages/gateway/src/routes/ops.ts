import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { InferlineError, readLiveVersions } from '@inferline/shared';
import type { RouteContext } from '../route-context.ts';

/**
 * Operations routes:
 * - `GET /healthz`: 200 while the process serves HTTP (liveness; never looks at Redis);
 * - `GET /readyz`: 200 when Redis answers PING, the job event subscription is active, and every model
 *   of the repository that has a version to serve has one AVAILABLE on a live worker; else 503
 *   `unavailable` saying what is missing (readiness: a load balancer sends no work to a gateway whose
 *   requests could not be stored or would not be served). Models whose config is invalid, or without
 *   any version folder, are not waited for.
 * - `GET /metrics`: Prometheus text of the app's registry.
 */
export const opsRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', tags: ['Operations'] } }, () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'Readiness: Redis answers and every model has a version AVAILABLE on a live worker', tags: ['Operations'] } }, async () => {
    await ctx.redis.ping();
    if (!ctx.events.subscribed) throw new InferlineError('unavailable', 'job event subscription is not active');
    const models = ctx.models.list().filter((model) => model.served.length > 0);
    const live = await Promise.all(models.map((model) => readLiveVersions(ctx.redis, model.config.name, ctx.settings.heartbeat_interval_ms)));
    const waiting = models.filter((_model, i) => ![...(live[i]?.versions.values() ?? [])].some((version) => version.state === 'AVAILABLE')).map((model) => model.config.name);
    if (waiting.length > 0) {
      throw new InferlineError('unavailable', `no live worker has a version AVAILABLE yet for: ${waiting.join(', ')}`, { models_unavailable: waiting });
    }
    return { status: 'ready', models: models.map((model) => model.config.name) };
  });

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)', tags: ['Operations'] } }, async (_request, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });

  done();
};
