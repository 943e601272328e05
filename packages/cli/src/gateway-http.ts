import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, type Dispatcher } from 'undici';
import { ERROR_STATUS, InferlineError, type ErrorCode } from '@inferline/shared';

/**
 * The HTTP plumbing the gateway's clients share ({@link JobsClient}, {@link GroupsClient}): one undici
 * Pool to one gateway, JSON requests, error replies turned into InferlineErrors, and the `429
 * queue_full` retry loop.
 *
 * Errors:
 * - the API answered with an error `{"error":{"code","message", ...details}}` → InferlineError with the
 *   reply's `code` (unknown codes become `internal`), and in `details` the reply's extra fields plus
 *   `http_status`, `remote_code` and, on 429, `retry_after_ms`; see {@link isApiError};
 * - the gateway could not be reached, or the connection broke before the whole reply was read →
 *   InferlineError `unavailable` without `http_status`; see {@link isTransportError}.
 */

/** Wait before resubmitting after a 429 without a usable `Retry-After` header (ms). */
export const DEFAULT_RETRY_AFTER_MS = 1_000;

export type HttpMethod = 'GET' | 'POST' | 'DELETE';

export interface GatewayHttpOptions {
  /** Sockets to open to the gateway (= requests in flight at once); default 1. */
  connections?: number;
  /** Longest wait for the reply headers of one request (a long-poll included), ms. */
  headersTimeoutMs: number;
}

/** True when `error` is an error reply of the API (as opposed to a transport failure). */
export function isApiError(error: unknown): error is InferlineError & { details: { http_status: number } } {
  return error instanceof InferlineError && typeof error.details?.http_status === 'number';
}

/** True when the gateway could not be reached or the connection broke (no reply was read). */
export function isTransportError(error: unknown): error is InferlineError {
  return error instanceof InferlineError && error.code === 'unavailable' && !isApiError(error);
}

/** `Retry-After` (delta-seconds or HTTP-date) as milliseconds; {@link DEFAULT_RETRY_AFTER_MS} when absent or invalid. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return DEFAULT_RETRY_AFTER_MS;
  if (/^\s*\d+(\.\d+)?\s*$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? DEFAULT_RETRY_AFTER_MS : Math.max(0, date - now);
}

/**
 * Run `attempt` until it is not refused with `429 queue_full`, waiting the reply's `Retry-After`
 * between tries (no limit on the number of tries: the queue drains as workers run). Other errors and
 * an abort of `signal` are thrown.
 */
export async function retryWhileQueueFull<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!(isApiError(error) && error.details.http_status === 429)) throw error;
      await sleep(Number(error.details.retry_after_ms ?? DEFAULT_RETRY_AFTER_MS), undefined, { signal });
    }
  }
}

/** One gateway's connection pool. `close()` it when done. */
export class GatewayHttp {
  readonly origin: string;
  readonly #pool: Pool;
  /** Path prefix of the base URL, without a trailing slash (`''` for `http://host:port`). */
  readonly #prefix: string;

  /** @param baseUrl gateway URL, e.g. `http://localhost:8080` */
  constructor(baseUrl: string, options: GatewayHttpOptions) {
    const url = new URL(baseUrl);
    this.origin = url.origin;
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#pool = new Pool(url.origin, { connections: options.connections ?? 1, headersTimeout: options.headersTimeoutMs });
  }

  /**
   * Send a request (with `body` as JSON unless undefined, and extra `headers`) and parse the JSON reply.
   * @throws InferlineError as described in the module comment; `internal` with `http_status` for a
   *   success reply whose body is not JSON; the abort reason when `signal` aborts.
   */
  async json<T>(method: HttpMethod, path: string, body: unknown, signal: AbortSignal | undefined, headers: Record<string, string> = {}): Promise<T> {
    const reply = await this.#send(method, path, body, signal, headers);
    const text = await this.#read(reply.body.text(), signal);
    const json = parseJson(text);
    if (reply.statusCode >= 400) throw apiError(reply.statusCode, json, text, reply.headers['retry-after']);
    if (json === undefined) {
      throw new InferlineError('internal', `${method} ${path}: HTTP ${reply.statusCode} with a body that is not JSON`, {
        http_status: reply.statusCode,
      });
    }
    return json as T;
  }

  /**
   * `GET path` for a streamed reply (server-sent events): resolves with the body once a success status
   * arrived; the caller iterates it (and ends the request by leaving the loop or aborting `signal`).
   * @param bodyTimeoutMs longest silence between two body chunks before the body errors (0 = none).
   * @throws InferlineError as {@link json} for an error status or a transport failure before the headers.
   */
  async stream(path: string, signal: AbortSignal | undefined, bodyTimeoutMs: number): Promise<AsyncIterable<Buffer>> {
    const reply = await this.#send('GET', path, undefined, signal, { accept: 'text/event-stream' }, bodyTimeoutMs);
    if (reply.statusCode >= 400) {
      const text = await this.#read(reply.body.text(), signal);
      throw apiError(reply.statusCode, parseJson(text), text, reply.headers['retry-after']);
    }
    return reply.body;
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  async #send(
    method: HttpMethod,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    headers: Record<string, string>,
    bodyTimeoutMs?: number,
  ): Promise<Dispatcher.ResponseData> {
    return this.#read(
      this.#pool.request({
        method,
        path: this.#prefix + path,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ?? null,
        ...(bodyTimeoutMs === undefined ? {} : { bodyTimeout: bodyTimeoutMs }),
      }),
      signal,
    );
  }

  /** Await a step of a request; a failure that is not an abort becomes InferlineError `unavailable`. */
  async #read<T>(step: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    try {
      return await step;
    } catch (error) {
      if (signal?.aborted) throw error;
      throw this.transportError(error);
    }
  }

  /** The InferlineError `unavailable` for a failed connection or body read. */
  transportError(error: unknown): InferlineError {
    const reason = error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : String(error);
    return new InferlineError('unavailable', `cannot reach the gateway at ${this.origin}: ${reason}`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Turn an error reply `{"error":{"code","message", ...details}}` into an InferlineError whose
 * `details` hold the reply's extra fields, `http_status`, `remote_code` and (on 429) `retry_after_ms`.
 */
function apiError(status: number, json: unknown, text: string, retryAfter: string | string[] | undefined): InferlineError {
  const error = (json as { error?: Record<string, unknown> } | undefined)?.error;
  const { code: replyCode, message: replyMessage, ...extra } = error ?? {};
  const remoteCode = typeof replyCode === 'string' ? replyCode : `http_${status}`;
  const message = typeof replyMessage === 'string' ? replyMessage : text.slice(0, 200) || `HTTP ${status}`;
  const code: ErrorCode = Object.hasOwn(ERROR_STATUS, remoteCode) ? (remoteCode as ErrorCode) : 'internal';
  return new InferlineError(code, message, {
    ...extra,
    http_status: status,
    remote_code: remoteCode,
    ...(status === 429 ? { retry_after_ms: parseRetryAfter(retryAfter) } : {}),
  });
}
