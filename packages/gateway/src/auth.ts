import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { bearerToken, InferlineError, keys, tenantOfKey, type ApiKeys, type Redis, type Tenant } from '@inferline/shared';
import { DOCS_PREFIX } from './openapi.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of the request's API key; undefined on an open route, or when no key is configured. */
    tenant: Tenant | undefined;
  }
}

/**
 * Routes that answer without a key: the probes a load balancer or kubelet calls (they reveal nothing
 * but liveness and readiness). `/docs` (Swagger UI and the OpenAPI document) stays open too: it shows
 * the API's shape, which this project publishes anyway, and "Try it out" sends the key the user
 * enters under "Authorize".
 */
const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/v2/health/live', '/v2/health/ready']);

/** The `WWW-Authenticate` challenge of a 401 (RFC 6750 section 3: `error="invalid_token"` when a key was given but is unknown). */
function challenge(tokenGiven: boolean): string {
  return tokenGiven ? 'Bearer realm="inferline", error="invalid_token"' : 'Bearer realm="inferline"';
}

/** Whether `presented` equals `expected`, in time that depends on neither (both hashed first, then `timingSafeEqual`). */
function sameSecret(presented: string, expected: string): boolean {
  const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/**
 * The app's authentication hook (`onRequest`). With no key configured it does nothing: every request
 * is anonymous (`request.tenant` undefined). With keys, every route but {@link OPEN_ROUTES} and
 * `/docs` needs `Authorization: Bearer <key>` of a configured entry; `/metrics` needs
 * `metrics_api_key` instead (tenant keys do not read metrics: they span every tenant).
 * @throws InferlineError `unauthorized` (401, with `WWW-Authenticate: Bearer`).
 */
export function authenticate(apiKeys: ApiKeys, metricsApiKey: string | undefined) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    request.tenant = undefined;
    if (!apiKeys.enabled) return;
    const route = request.routeOptions.url;
    if (route !== undefined && (OPEN_ROUTES.has(route) || route === DOCS_PREFIX || route.startsWith(`${DOCS_PREFIX}/`))) return;
    const token = bearerToken(request.headers.authorization);
    if (route === '/metrics') {
      if (token !== undefined && metricsApiKey !== undefined && sameSecret(token, metricsApiKey)) return;
      reply.header('www-authenticate', challenge(token !== undefined));
      throw new InferlineError('unauthorized', 'GET /metrics needs Authorization: Bearer <METRICS_API_KEY>');
    }
    const tenant = token === undefined ? undefined : tenantOfKey(apiKeys, token);
    if (!tenant) {
      reply.header('www-authenticate', challenge(token !== undefined));
      throw new InferlineError('unauthorized', token === undefined ? 'this route needs an API key: Authorization: Bearer <key>' : 'unknown API key');
    }
    request.tenant = tenant;
    request.logContext.tenant = tenant.name;
  };
}

/**
 * Check that a job belongs to the caller's tenant. Another tenant's job answers as a job that does not
 * exist (404, never 403: its existence is not revealed). Nothing to check without a tenant (no key
 * configured).
 * @throws InferlineError `job_not_found`.
 */
export async function requireJobOwner(redis: Redis, jobId: string, tenant: Tenant | undefined): Promise<void> {
  if (!tenant) return;
  if ((await redis.hget(keys.job(jobId), 'tenant')) !== tenant.name) throw new InferlineError('job_not_found', `job "${jobId}" does not exist or has expired`);
}

/** {@link requireJobOwner} for a group. @throws InferlineError `group_not_found`. */
export async function requireGroupOwner(redis: Redis, groupId: string, tenant: Tenant | undefined): Promise<void> {
  if (!tenant) return;
  if ((await redis.hget(keys.group(groupId), 'tenant')) !== tenant.name) throw new InferlineError('group_not_found', `group "${groupId}" does not exist or has expired`);
}
