import { status, type handleUnaryCall, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from '@inferline/shared';
import type { SyncJobsDeps } from '../sync-jobs.ts';
import { toServiceError } from './grpc-status.ts';

/** What the gRPC services need: the gateway's connections, catalog and metrics, its logger, its shutdown signal. */
export interface GrpcDeps extends SyncJobsDeps {
  logger: Logger;
  /** Aborted when the gateway starts closing: waiting calls answer at once. */
  shutdown: AbortSignal;
}

/** What a handler gets of its call besides the request. */
export interface CallContext {
  /** How long the call may wait for its jobs, ms: until the call's gRPC deadline, at most `max_wait_s`. */
  waitMs: number;
  /** Aborts when the client cancels the call (or its deadline passes) or the gateway shuts down. */
  signal: AbortSignal;
}

/**
 * A grpc-js unary handler around an async function: errors become gRPC statuses
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
    new Promise<Response>((resolve) => resolve(handler(call.request, { waitMs, signal: controller.signal }))).then(
      (response) => finish(null, response),
      (error: unknown) => finish(toServiceError(error, deps.logger, { grpc_method: method })),
    );
  };
}
