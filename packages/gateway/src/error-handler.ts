import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { InferlineError, QUEUE_FULL_RETRY_AFTER_S, isConnectionError, isInferlineError, type ErrorReply, type Redis } from '@inferline/shared';
import type {} from './log-context.ts';

/**
 * Map any error raised while handling a request to an {@link InferlineError}:
 * - an InferlineError as it is;
 * - fastify's schema validation errors, malformed or empty JSON → 400 `invalid_input` naming the field;
 * - body over `bodyLimit` → 413 `payload_too_large`; a content type without parser → 415 `unsupported_media_type`;
 * - Redis unreachable (`isConnectionError`, or any ioredis failure while the command connection is not
 *   `ready`) → 503 `unavailable`;
 * - an error raised while a multipart body is read (before the route's preValidation) → 400 `invalid_input`;
 * - any other client error fastify raises (4xx) → 400 `invalid_input`, 404 → `not_found`;
 * - anything else → 500 `internal`, with a message that reveals nothing.
 */
export function toInferlineError(error: unknown, redis: Redis, maxBodyBytes: number, request?: FastifyRequest): InferlineError {
  if (isInferlineError(error)) return error;
  // busboy's errors ("Boundary not found", "Part terminated early", "Malformed part header", ...)
  // carry no status: any error raised while a multipart body is read is the body's fault.
  if (request?.isMultipart() === true && !request.bodyRead && !(error as Partial<FastifyError>).code?.startsWith('FST_')) {
    return new InferlineError('invalid_input', `malformed multipart/form-data body: ${(error as Error).message}`);
  }
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const first = fastifyError.validation[0];
    return new InferlineError('invalid_input', `${fastifyError.validationContext ?? 'request'}: ${first?.message ?? 'is invalid'}`);
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new InferlineError('payload_too_large', `request body is larger than ${maxBodyBytes} bytes (max_body_bytes), or has too many parts`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new InferlineError('unsupported_media_type', 'unsupported content type: send application/json or multipart/form-data');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new InferlineError('invalid_input', 'body is not valid JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new InferlineError('invalid_input', 'body is empty; a JSON object is expected');
  }
  if (isConnectionError(error) || (redis.status !== 'ready' && !fastifyError.code?.startsWith('FST_'))) {
    return new InferlineError('unavailable', 'Redis is unreachable; retry later');
  }
  const status = fastifyError.statusCode ?? 500;
  if (status === 503) return new InferlineError('unavailable', fastifyError.message ?? 'unavailable');
  if (status === 404) return new InferlineError('not_found', fastifyError.message ?? 'not found');
  if (status >= 400 && status < 500) return new InferlineError('invalid_input', fastifyError.message ?? 'bad request');
  return new InferlineError('internal', 'internal error');
}

/** inferline's error body: `{"error":{"code","message", ...details}}`. */
export function nativeErrorBody(error: InferlineError): ErrorReply {
  // Details (`index` of a rejected input, `size` of a group, `retry_after_s`) ride along for clients.
  const details = { ...error.details };
  delete details.version_closed;
  return { error: { ...details, code: error.code, message: error.message } };
}

/**
 * The error body of TF Serving's REST API (and of the Open Inference Protocol): `{"error": "<message>"}`
 * (https://www.tensorflow.org/tfx/serving/api_rest, "In case of error, all APIs will return ...").
 */
export function messageErrorBody(error: InferlineError): { error: string } {
  return { error: error.message };
}

/**
 * The app's error handler: every error answer is `toBody(error)` (default {@link nativeErrorBody})
 * with the status of its code. Server errors are logged with the request's context; `queue_full` and
 * every 429 and 503 carry `Retry-After` (`details.retry_after_s`, else 1 s). A plugin whose routes speak
 * another protocol sets its own with another `toBody` (fastify error handlers are encapsulated).
 */
export function createErrorHandler(redis: Redis, maxBodyBytes: number, toBody: (error: InferlineError) => unknown = nativeErrorBody) {
  return (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const mapped = toInferlineError(error, redis, maxBodyBytes, request);
    if (mapped.code === 'unavailable') {
      // 503 `unavailable` is also a readiness answer (no worker yet) while Redis is fine: say which.
      const redisDown = isConnectionError(error) || redis.status !== 'ready';
      request.log.warn({ code: mapped.code, cause: (error as Error).message, ...request.logContext }, redisDown ? 'request refused: Redis unreachable' : 'request refused: unavailable');
    }
    else if (mapped.statusCode >= 500) request.log.error({ err: error, code: mapped.code, ...request.logContext }, 'request failed');
    else request.log.debug({ code: mapped.code, message: mapped.message, ...request.logContext }, 'request rejected');
    if (mapped.statusCode === 429 || mapped.statusCode === 503) {
      const retryAfter = mapped.details?.retry_after_s;
      reply.header('retry-after', String(typeof retryAfter === 'number' ? retryAfter : QUEUE_FULL_RETRY_AFTER_S));
    }
    return reply.code(mapped.statusCode).type('application/json; charset=utf-8').send(toBody(mapped));
  };
}

/** Unknown route → 404 `not_found` in the common error shape. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const body: ErrorReply = { error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` } };
  return reply.code(404).type('application/json; charset=utf-8').send(body);
}
