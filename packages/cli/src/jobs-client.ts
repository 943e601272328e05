import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import {
  ERROR_STATUS,
  InferlineError,
  TERMINAL_STATUSES,
  type ErrorCode,
  type JobCreateBody,
  type JobView,
} from '@inferline/shared';

/**
 * A small client of the gateway's native job API (DESIGN.md section 8): `POST /v1/jobs`, then
 * long-poll `GET /v1/jobs/:id?wait=` until the job is terminal. A `429 queue_full` is retried after
 * its `Retry-After`. Connections come from one undici Pool, so `connections` requests can be in flight.
 *
 * Errors:
 * - the API answered with an error → InferlineError with the reply's `code` (unknown codes become
 *   `internal`) and `details.http_status`; see {@link isApiError};
 * - the gateway could not be reached → InferlineError `unavailable` without `http_status`.
 */

/** Wait before resubmitting after a 429 without a usable `Retry-After` header (ms). */
export const DEFAULT_RETRY_AFTER_MS = 1_000;
/** Time allowed beyond a long-poll's `wait` for the reply headers (ms). */
const LONG_POLL_SLACK_MS = 30_000;

export interface JobsClientOptions {
  /** Sockets to open to the gateway (= useful requests in flight); default 1. */
  connections?: number;
  /** Longest `?wait=` of one long-poll request, seconds; default 60 (the gateway's `max_wait_s`). */
  maxWaitS?: number;
}

/** True when `error` is an error reply of the API (as opposed to a transport failure). */
export function isApiError(error: unknown): error is InferlineError & { details: { http_status: number } } {
  return error instanceof InferlineError && typeof error.details?.http_status === 'number';
}

/** `Retry-After` (delta-seconds or HTTP-date) as milliseconds; {@link DEFAULT_RETRY_AFTER_MS} when absent or invalid. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return DEFAULT_RETRY_AFTER_MS;
  if (/^\s*\d+(\.\d+)?\s*$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? DEFAULT_RETRY_AFTER_MS : Math.max(0, date - now);
}

/** Client of one gateway. `close()` it when done. */
export class JobsClient {
  readonly #pool: Pool;
  readonly #origin: string;
  /** Path prefix of the base URL, without a trailing slash (`''` for `http://host:port`). */
  readonly #prefix: string;
  readonly #maxWaitS: number;

  /** @param baseUrl gateway URL, e.g. `http://localhost:8080` */
  constructor(baseUrl: string, options: JobsClientOptions = {}) {
    const url = new URL(baseUrl);
    this.#origin = url.origin;
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#maxWaitS = options.maxWaitS ?? 60;
    this.#pool = new Pool(url.origin, {
      connections: options.connections ?? 1,
      headersTimeout: this.#maxWaitS * 1000 + LONG_POLL_SLACK_MS,
    });
  }

  /** `POST /v1/jobs`; on `429` (`queue_full`) waits `Retry-After` and submits again until accepted. */
  async create(body: JobCreateBody, signal?: AbortSignal): Promise<JobView> {
    for (;;) {
      try {
        return await this.#request<JobView>('POST', '/v1/jobs', body, signal);
      } catch (error) {
        if (!(isApiError(error) && error.details.http_status === 429)) throw error;
        await sleep(Number(error.details.retry_after_ms ?? DEFAULT_RETRY_AFTER_MS), undefined, { signal });
      }
    }
  }

  /** `GET /v1/jobs/:id?wait=waitS`: answers when the job is terminal or after `waitS` seconds. */
  async get(id: string, waitS: number, signal?: AbortSignal): Promise<JobView> {
    const wait = Math.max(0, Math.min(Math.ceil(waitS), this.#maxWaitS));
    return this.#request<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}?wait=${wait}`, undefined, signal);
  }

  /**
   * Submit a job and long-poll it until it is terminal or `timeoutS` seconds have passed since the
   * submission was accepted. Returns the last view (not terminal on timeout; check {@link isTerminal}).
   */
  async run(body: JobCreateBody, timeoutS: number, signal?: AbortSignal): Promise<JobView> {
    let job = await this.create(body, signal);
    const deadline = Date.now() + timeoutS * 1000;
    while (!isTerminal(job)) {
      const remainingS = (deadline - Date.now()) / 1000;
      if (remainingS <= 0) break;
      job = await this.get(job.id, remainingS, signal);
    }
    return job;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  async #request<T>(method: 'GET' | 'POST', path: string, body: unknown, signal: AbortSignal | undefined): Promise<T> {
    let reply;
    try {
      reply = await this.#pool.request({
        method,
        path: this.#prefix + path,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ?? null,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      const reason = error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : String(error);
      throw new InferlineError('unavailable', `cannot reach the gateway at ${this.#origin}: ${reason}`);
    }
    const text = await reply.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (reply.statusCode >= 400) throw apiError(reply.statusCode, json, text, reply.headers['retry-after']);
    if (json === undefined) {
      throw new InferlineError('internal', `${method} ${path}: HTTP ${reply.statusCode} with a body that is not JSON`, {
        http_status: reply.statusCode,
      });
    }
    return json as T;
  }
}

/** True when the job reached a terminal state (`succeeded`, `failed`, `cancelled`, `expired`). */
export function isTerminal(job: JobView): boolean {
  return TERMINAL_STATUSES.has(job.status);
}

/** Turn an error reply `{"error":{"code","message"}}` into an InferlineError with `details.http_status`. */
function apiError(status: number, json: unknown, text: string, retryAfter: string | string[] | undefined): InferlineError {
  const error = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const remoteCode = typeof error?.code === 'string' ? error.code : `http_${status}`;
  const message = typeof error?.message === 'string' ? error.message : text.slice(0, 200) || `HTTP ${status}`;
  const code: ErrorCode = Object.hasOwn(ERROR_STATUS, remoteCode) ? (remoteCode as ErrorCode) : 'internal';
  return new InferlineError(code, message, {
    http_status: status,
    remote_code: remoteCode,
    ...(status === 429 ? { retry_after_ms: parseRetryAfter(retryAfter) } : {}),
  });
}
