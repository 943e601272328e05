import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { InferlineError } from '@inferline/shared';
import type { RouteContext } from '../route-context.ts';

/**
 * Operations routes:
 * - `GET /healthz`: 200 while the process serves HTTP (liveness; never looks at Redis);
 * - `GET /readyz`: 200 when Redis answers PING and the job event subscription is active, else 503
 *   `unavailable` (readiness: a load balancer stops sending work to a gateway that cannot store it);
 * - `GET /metrics`: Prometheus text of the app's registry.
 */
export const opsRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.get('/healthz', () => ({ status: 'ok' }));

  app.get('/readyz', async () => {
    await ctx.redis.ping();
    if (!ctx.events.subscribed) throw new InferlineError('unavailable', 'job event subscription is not active');
    return { status: 'ready' };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });

  done();
};
