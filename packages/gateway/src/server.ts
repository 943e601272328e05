import multipart from '@fastify/multipart';
import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { setMaxListeners } from 'node:events';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { InferlineError, loadApiKeys, RATE_LIMIT_PREFIX, type ApiKeys, type Logger, type Redis } from '@inferline/shared';
import { authenticate } from './auth.ts';
import { createErrorHandler, notFoundHandler } from './error-handler.ts';
import type { LogContext } from './log-context.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { registerOpenApi } from './openapi.ts';
import type { GatewayDeps, RouteContext } from './route-context.ts';
import { groupRoutes } from './routes/groups.ts';
import { jobRoutes } from './routes/jobs.ts';
import { modelRoutes } from './routes/models.ts';
import { opsRoutes } from './routes/ops.ts';
import { tfservingRoutes } from './routes/tfserving.ts';
import { v2Routes } from './routes/v2.ts';
import { validatorCompiler } from './validator-compiler.ts';

export type { GatewayDeps } from './route-context.ts';

/** The gateway's fastify instance (TypeBox type provider). */
export type GatewayApp = FastifyInstance<Server, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider> & {
  /** The app's Prometheus metrics (its own registry). */
  metrics: GatewayMetrics;
};

/** How often Node checks open connections against headers_timeout_ms and request_timeout_ms, ms. */
const CONNECTIONS_CHECK_MS = 1_000;

/** Time in-flight requests get to finish once the app closes, before every connection is cut, ms. */
export const SHUTDOWN_GRACE_MS = 2_000;
/** Text fields a multipart `POST /v1/jobs` may carry (`model`, `version`, a text `input`). */
const MULTIPART_MAX_FIELDS = 3;

/** Routes logged at debug level: probes and scrapes would drown the request log. */
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics', '/v2/health/live', '/v2/health/ready']);

/**
 * Build the gateway's HTTP app (not listening; test it with `app.inject`, or `app.listen`). The caller
 * owns `deps` and closes them after `app.close()`; closing the app ends its long-polls and event
 * streams at once (they answer the state they have).
 *
 * Body parsing: JSON only (anything else → 415; the TF Serving routes read any body as JSON, the `/v2`
 * routes any body as bytes, see routes/v2.ts), at most `settings.max_body_bytes` (→ 413); bodies are
 * validated strictly (see validator-compiler.ts). The OpenAPI document of every route is at
 * `/docs/json`, Swagger UI at `/docs` (openapi.ts). One log line per request, with `job_id`, `model`,
 * `version` when known.
 */
export function buildApp(deps: GatewayDeps): GatewayApp {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per request, written by the onResponse hook below with the job context.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.settings.max_body_bytes,
    // Slow clients: headers within headers_timeout_ms, the whole request within request_timeout_ms,
    // checked every CONNECTIONS_CHECK_MS (Node's default check runs only every 30 s).
    requestTimeout: Math.max(deps.settings.request_timeout_ms, deps.settings.headers_timeout_ms),
    http: {
      headersTimeout: deps.settings.headers_timeout_ms,
      connectionsCheckingInterval: Math.min(CONNECTIONS_CHECK_MS, deps.settings.headers_timeout_ms),
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  if (deps.settings.max_connections > 0) app.server.maxConnections = deps.settings.max_connections;
  app.setValidatorCompiler(validatorCompiler);
  app.removeContentTypeParser('text/plain');
  // multipart/form-data (POST /v1/jobs with an uploaded file): fields become body values, the file's
  // bytes a Buffer, so the route's schema and validation apply as for JSON.
  void app.register(multipart, {
    attachFieldsToBody: 'keyValues',
    limits: { fileSize: deps.settings.max_body_bytes, files: 1, fields: MULTIPART_MAX_FIELDS, parts: MULTIPART_MAX_FIELDS + 1 },
  });
  app.setErrorHandler(createErrorHandler(deps.redis, deps.settings.max_body_bytes));
  app.setNotFoundHandler(notFoundHandler);
  // Before any route: every route registered later (in any plugin) is in the document.
  registerOpenApi(app);

  const metrics = createMetrics(deps.redis, deps.models, deps.settings.heartbeat_interval_ms, deps.logger);
  app.decorate('metrics', metrics);
  const shutdown = new AbortController();
  // Every waiting request listens on it (requestSignal): thousands at once is expected, not a leak.
  setMaxListeners(0, shutdown.signal);
  let forceClose: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    shutdown.abort();
    // Requests in flight finish, long-polls and event streams answer at once; a connection still open
    // after the grace is idle (a client's spare keep-alive socket) or stuck, and would hold close() up.
    forceClose = setTimeout(() => app.server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    forceClose.unref();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    clearTimeout(forceClose);
    done();
  });
  // A long-poll answered because of the shutdown would otherwise leave its keep-alive connection
  // open, and close() would wait for it (keepAliveTimeout).
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (shutdown.signal.aborted) reply.header('connection', 'close');
    done(null, payload);
  });

  // A reference-type default would be shared by every request: set a fresh object per request instead.
  app.decorateRequest('logContext', null as unknown as LogContext);
  app.decorateRequest('bodyRead', false);
  app.decorateRequest('tenant', undefined);
  app.addHook('onRequest', (request, _reply, done) => {
    request.logContext = {};
    // A DELETE or GET that names a content type but sends no body (clients that set
    // `content-type: application/json` on every call) has no body to parse, not a malformed one.
    if ((request.method === 'DELETE' || request.method === 'GET') && !hasBody(request.headers)) delete request.headers['content-type'];
    done();
  });
  const apiKeys = deps.apiKeys ?? loadApiKeys(deps.settings);
  app.addHook('onRequest', authenticate(apiKeys, deps.settings.metrics_api_key));
  registerRateLimit(app, apiKeys, deps.redis);
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unknown';
    const seconds = reply.elapsedTime / 1000;
    metrics.requestDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, seconds);
    const level = QUIET_ROUTES.has(route) ? 'debug' : 'info';
    // The line is built only when it is written (LOG_LEVEL=warn writes none).
    if ((request.log as Partial<Logger>).isLevelEnabled?.(level) ?? true) {
      request.log[level]({ method: request.method, url: request.url, status_code: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, ...request.logContext }, 'request');
    }
    done();
  });

  const context: RouteContext = { ...deps, apiKeys, metrics, shutdown: shutdown.signal };
  void app.register(opsRoutes, context);
  void app.register(jobRoutes, context);
  void app.register(groupRoutes, context);
  void app.register(modelRoutes, context);
  void app.register(tfservingRoutes, context);
  void app.register(v2Routes, { ...context, prefix: '/v2' });
  return app as GatewayApp;
}

/** Window of the per-tenant request rate (`rate_limit_rps` counts requests per this window), ms. */
const RATE_LIMIT_WINDOW_MS = 1_000;

/**
 * Per-tenant request rate (`rate_limit_rps` of the tenant's key entries): `@fastify/rate-limit` with
 * its Redis store (a fixed one-second window per tenant, shared by every gateway replica), on every
 * route of an authenticated request. A tenant over its rate gets 429 `rate_limited` with
 * `Retry-After` (seconds to the window's end) and the `x-ratelimit-*` headers. Requests without a
 * tenant (open routes, no key configured) and tenants without `rate_limit_rps` are not counted.
 * https://github.com/fastify/fastify-rate-limit
 */
function registerRateLimit(app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>, apiKeys: ApiKeys, redis: Redis): void {
  if (![...apiKeys.tenants.values()].some((tenant) => tenant.rate_limit_rps !== undefined)) return;
  void app.register(rateLimit, {
    global: true,
    // After authentication (onRequest), before the body is read.
    hook: 'preParsing',
    redis,
    nameSpace: RATE_LIMIT_PREFIX,
    timeWindow: RATE_LIMIT_WINDOW_MS,
    keyGenerator: (request) => request.tenant?.name ?? '',
    allowList: (request) => request.tenant?.rate_limit_rps === undefined,
    max: (request) => request.tenant?.rate_limit_rps ?? 0,
    errorResponseBuilder: (request, context) =>
      new InferlineError('rate_limited', `tenant "${request.tenant?.name ?? ''}" sent more than ${context.max} requests per second (rate_limit_rps); retry in ${context.after}`, {
        retry_after_s: Math.max(1, Math.ceil(context.ttl / 1000)),
      }),
  });
}

/** Whether a request announces a body: a non-zero Content-Length, or a Transfer-Encoding (RFC 9112 section 6). */
function hasBody(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
}
