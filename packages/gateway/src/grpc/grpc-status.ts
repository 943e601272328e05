import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { InferlineError, isConnectionError, isInferlineError, QUEUE_FULL_RETRY_AFTER_S, type Logger } from '@inferline/shared';

/**
 * The gRPC status code of an inferline error (codes per grpc/doc/statuscodes.md, as Triton and TF
 * Serving use them): 400 → INVALID_ARGUMENT (413 too), 404 → NOT_FOUND, `queue_full` →
 * RESOURCE_EXHAUSTED, 503 → UNAVAILABLE, `deadline_exceeded` → DEADLINE_EXCEEDED, `cancelled` →
 * CANCELLED, 409 → FAILED_PRECONDITION, the rest INTERNAL.
 */
export function grpcCode(error: InferlineError): status {
  if (error.code === 'queue_full') return status.RESOURCE_EXHAUSTED;
  if (error.code === 'deadline_exceeded') return status.DEADLINE_EXCEEDED;
  if (error.code === 'cancelled') return status.CANCELLED;
  if (error.code === 'unauthorized') return status.UNAUTHENTICATED;
  if (error.statusCode === 429) return status.RESOURCE_EXHAUSTED;
  switch (error.statusCode) {
    case 400:
    case 413:
    case 415:
      return status.INVALID_ARGUMENT;
    case 404:
      return status.NOT_FOUND;
    case 409:
      return status.FAILED_PRECONDITION;
    case 503:
      return status.UNAVAILABLE;
    default:
      return status.INTERNAL;
  }
}

/**
 * A gRPC error for anything a handler threw: an InferlineError with its code and message (and a
 * `retry-after` trailer, seconds, on RESOURCE_EXHAUSTED and UNAVAILABLE), a Redis connection failure as
 * UNAVAILABLE, anything else INTERNAL with a message that reveals nothing (logged with `context`).
 */
export function toServiceError(error: unknown, logger: Logger, context: Record<string, unknown>): Partial<ServiceError> {
  let mapped: InferlineError;
  if (isInferlineError(error)) mapped = error;
  else if (isConnectionError(error)) mapped = new InferlineError('unavailable', 'Redis is unreachable; retry later');
  else {
    logger.error({ err: error, ...context }, 'gRPC call failed');
    mapped = new InferlineError('internal', 'internal error');
  }
  const code = grpcCode(mapped);
  const metadata = new Metadata();
  if (code === status.RESOURCE_EXHAUSTED || code === status.UNAVAILABLE) {
    const retryAfter = mapped.details?.retry_after_s;
    metadata.set('retry-after', String(typeof retryAfter === 'number' ? retryAfter : QUEUE_FULL_RETRY_AFTER_S));
  }
  if (code !== status.INTERNAL) logger.debug({ code: mapped.code, message: mapped.message, ...context }, 'gRPC call refused');
  return { code, details: mapped.message, metadata };
}
