import { TERMINAL_STATUSES, type JobCreateBody, type JobView } from '@inferline/shared';
import { GatewayHttp, retryWhileQueueFull } from './gateway-http.ts';

export { DEFAULT_RETRY_AFTER_MS, isApiError, parseRetryAfter } from './gateway-http.ts';

/**
 * A small client of the gateway's native job API (DESIGN.md section 8): `POST /v1/jobs`, then
 * long-poll `GET /v1/jobs/:id?wait=` until the job is terminal. A `429 queue_full` is retried after
 * its `Retry-After`. Connections come from one undici Pool, so `connections` requests can be in flight.
 *
 * Errors (see `gateway-http.ts`):
 * - the API answered with an error → InferlineError with the reply's `code` (unknown codes become
 *   `internal`) and `details.http_status`; see {@link isApiError};
 * - the gateway could not be reached → InferlineError `unavailable` without `http_status`.
 */

/** Time allowed beyond a long-poll's `wait` for the reply headers (ms). */
export const LONG_POLL_SLACK_MS = 30_000;

export interface JobsClientOptions {
  /** Sockets to open to the gateway (= useful requests in flight); default 1. */
  connections?: number;
  /** Longest `?wait=` of one long-poll request, seconds; default 60 (the gateway's `max_wait_s`). */
  maxWaitS?: number;
}

/** Client of one gateway. `close()` it when done. */
export class JobsClient {
  readonly #http: GatewayHttp;
  readonly #maxWaitS: number;

  /** @param baseUrl gateway URL, e.g. `http://localhost:8080` */
  constructor(baseUrl: string, options: JobsClientOptions = {}) {
    this.#maxWaitS = options.maxWaitS ?? 60;
    this.#http = new GatewayHttp(baseUrl, {
      connections: options.connections ?? 1,
      headersTimeoutMs: this.#maxWaitS * 1000 + LONG_POLL_SLACK_MS,
    });
  }

  /** `POST /v1/jobs`; on `429` (`queue_full`) waits `Retry-After` and submits again until accepted. */
  async create(body: JobCreateBody, signal?: AbortSignal): Promise<JobView> {
    return retryWhileQueueFull(() => this.#http.json<JobView>('POST', '/v1/jobs', body, signal), signal);
  }

  /** `GET /v1/jobs/:id?wait=waitS`: answers when the job is terminal or after `waitS` seconds. */
  async get(id: string, waitS: number, signal?: AbortSignal): Promise<JobView> {
    const wait = Math.max(0, Math.min(Math.ceil(waitS), this.#maxWaitS));
    return this.#http.json<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}?wait=${wait}`, undefined, signal);
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
    await this.#http.close();
  }
}

/** True when the job reached a terminal state (`succeeded`, `failed`, `cancelled`, `expired`). */
export function isTerminal(job: JobView): boolean {
  return TERMINAL_STATUSES.has(job.status);
}
