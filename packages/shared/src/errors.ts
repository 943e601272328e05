/**
 * Stable, machine-readable error codes and their HTTP statuses. The gateway's error handler turns an
 * {@link InferlineError} into `{"error":{"code","message"}}` with this status; workers store the same
 * `code` on a failed job. Codes never change meaning once published (DESIGN.md section 2).
 */
export const ERROR_STATUS = {
  invalid_input: 400,
  invalid_image: 400,
  invalid_config: 500,
  invalid_reduce: 400,
  /** A `callback_url` that is not http(s), does not resolve, or resolves to a non-public address. */
  invalid_callback_url: 400,
  /** No API key, or one that no entry lists (`WWW-Authenticate: Bearer`). */
  unauthorized: 401,
  /** The same `Idempotency-Key` with another request body. */
  idempotency_key_reused: 422,
  empty_group: 400,
  job_not_found: 404,
  group_not_found: 404,
  model_not_found: 404,
  version_not_found: 404,
  not_found: 404,
  payload_too_large: 413,
  unsupported_media_type: 415,
  queue_full: 429,
  /** The tenant sent more than its `rate_limit_rps`. */
  rate_limited: 429,
  /** The tenant has `max_queued` requests waiting or running in the model's queue. */
  tenant_queue_full: 429,
  unavailable: 503,
  /** No live worker has the version AVAILABLE yet (loading, or no worker); retry after `Retry-After`. */
  model_unavailable: 503,
  /** The version was removed from the repository or its policy while the request waited; retry without a version. */
  version_unloaded: 503,
  deadline_exceeded: 504,
  inference_failed: 500,
  poison: 500,
  cancelled: 409,
  /** DELETE of a job that is running: it runs to its end and keeps its result. */
  not_cancellable: 409,
  /** DELETE of a job that is already terminal. */
  job_finished: 409,
  group_closed: 409,
  group_finished: 409,
  index_conflict: 409,
  member_failed: 500,
  reduce_failed: 500,
  internal: 500,
} as const;

/** One of the stable error codes of {@link ERROR_STATUS}. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** The error type of the whole project: a stable `code`, its HTTP `statusCode`, a human message. */
export class InferlineError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  /** Extra machine-readable detail (for example `retry_after_s` on `queue_full`). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'InferlineError';
    this.code = code;
    this.statusCode = ERROR_STATUS[code];
    this.details = details;
  }
}

/** True when `value` is an {@link InferlineError}. */
export function isInferlineError(value: unknown): value is InferlineError {
  return value instanceof InferlineError;
}
