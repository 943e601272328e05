import { status, type handleUnaryCall, type Metadata, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { bearerToken, InferlineError, tenantOfKey, type ApiKeys, type Logger, type Tenant } from '@inferline/shared';
import type { SyncJobsDeps } from '../sync-jobs.ts';
import { toServiceError } from './grpc-status.ts';

/** What the gRPC services need: the gateway's connections, catalog and metrics, its logger, its shutdown signal. */
export interface GrpcDeps extends SyncJobsDeps {
  logger: Logger;
  /** Aborted when the gateway starts closing: waiting calls answer at once. */
  shutdown: AbortSignal;
  /** The API keys; with any configured, every method but {@link OPEN_METHODS} needs one. */
  apiKeys: ApiKeys;
}

/** Methods that answer without a key: the health probes, as `/v2/health/*` over HTTP. */
const OPEN_METHODS = new Set(['ServerLive', 'ServerReady']);

/**
 * The tenant of a call's metadata `authorization: Bearer <key>` (the gRPC form of the HTTP header);
 * undefined when no key is configured or the method is open.
 * @throws InferlineError `unauthorized` (→ UNAUTHENTICATED) without a known key.
 */
export function callTenant(apiKeys: ApiKeys, method: string, metadata: Metadata): Tenant | undefined {
  if (!apiKeys.enabled || OPEN_METHODS.has(method)) return undefined;
  const values = metadata.get('authorization');
  const token = bearerToken(typeof values[0] === 'string' ? values[0] : undefined);
  const tenant = token === undefined ? undefined : tenantOfKey(apiKeys, token);
  if (!tenant) throw new InferlineError('unauthorized', token === undefined ? 'this method needs an API key: metadata authorization: Bearer <key>' : 'unknown API key');
  return tenant;
}

/** What a handler gets of its call besides the request. */
export interface CallContext {
  /** How long the call may wait for its jobs, ms: until the call's gRPC deadline, at most `max_wait_s`. */
  waitMs: number;
  /** Aborts when the client cancels the call (or its deadline passes) or the gateway shuts down. */
  signal: AbortSignal;
  /** The caller's tenant (callTenant). */
  tenant: Tenant | undefined;
}

/**
 * A grpc-js unary handler around an async function: the caller's key is checked first
 * ({@link callTenant}), errors become gRPC statuses
 * ({@link toServiceError}), one log line per call (method, status, ms).
 */
export function unary<Request, Response>(
  deps: GrpcDeps,
  method: string,
  handler: (request: Request, call: CallContext) => Promise<Response>,
): handleUnaryCall<Request, Response> {
  return (call: ServerUnaryCall<Request, Response>, callback) => {
    const started = performance.now();
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    if (deps.shutdown.aborted) abort();
    deps.shutdown.addEventListener('abort', abort, { once: true });
    call.once('cancelled', abort);
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const waitMs = Math.max(0, Math.min(deps.settings.max_wait_s * 1000, deadlineMs - Date.now()));
    const finish = (error: Partial<ServiceError> | null, response?: Response): void => {
      deps.shutdown.removeEventListener('abort', abort);
      const ms = Math.round((performance.now() - started) * 10) / 10;
      deps.logger.info({ grpc_method: method, grpc_code: error?.code ?? status.OK, ms }, 'grpc call');
      callback(error, response);
    };
    // A handler that throws before its first await rejects too.
    new Promise<Response>((resolve) => resolve(handler(call.request, { waitMs, signal: controller.signal, tenant: callTenant(deps.apiKeys, method, call.metadata) }))).then(
      (response) => finish(null, response),
      (error: unknown) => finish(toServiceError(error, deps.logger, { grpc_method: method })),
    );
  };
}
