import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { checkReady } from '../readiness.ts';
import type { RouteContext } from '../route-context.ts';

/**
 * Operations routes:
 * - `GET /healthz`: 200 while the process serves HTTP (liveness; never looks at Redis);
 * - `GET /readyz`: 200 when the gateway is ready ({@link checkReady}), else 503 `unavailable` saying what
 *   is missing (readiness: a load balancer sends no work to a gateway whose requests could not be
 *   stored or would not be served).
 * - `GET /metrics`: Prometheus text of the app's registry.
 */
export const opsRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', tags: ['Operations'] } }, () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { summary: 'Readiness: Redis answers and every model has a version AVAILABLE on a live worker', tags: ['Operations'] } }, async () => ({
    status: 'ready',
    models: await checkReady(ctx),
  }));

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)', tags: ['Operations'] } }, async (_request, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });

  done();
};
