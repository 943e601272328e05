import { TERMINAL_STATUSES, type JobCreateBody, type JobList, type JobView } from '@inferline/shared';
import { GatewayHttp, retryWhileQueueFull } from './gateway-http.ts';

export { DEFAULT_RETRY_AFTER_MS, isApiError, parseRetryAfter } from './gateway-http.ts';

/**
 * A small client of the gateway's native job API (DESIGN.md section 8): `POST /v1/jobs` with
 * `Prefer: wait=N` (one round trip when the job finishes within N s), then, only if it did not,
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

  /**
   * `POST /v1/jobs` of one input; on `429` (`queue_full`) waits `Retry-After` and submits again until
   * accepted. With `waitS` > 0 it sends `Prefer: wait=<waitS>` (capped at maxWaitS): the reply is then
   * the terminal view when the job finished in time.
   */
  async create(body: JobCreateBody, signal?: AbortSignal, waitS = 0): Promise<JobView> {
    const headers = this.#prefer(waitS);
    return retryWhileQueueFull(() => this.#http.json<JobView>('POST', '/v1/jobs', body, signal, headers), signal);
  }

  /**
   * The bulk form: `POST /v1/jobs` with `inputs` (each its own job; stored all or nothing), as
   * {@link create}. Returns one view per input, in input order.
   */
  async createMany(body: { model: string; version?: number; inputs: unknown[] }, signal?: AbortSignal, waitS = 0): Promise<JobView[]> {
    const headers = this.#prefer(waitS);
    const reply = await retryWhileQueueFull(() => this.#http.json<JobList>('POST', '/v1/jobs', body, signal, headers), signal);
    return reply.jobs;
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
    const deadline = Date.now() + timeoutS * 1000;
    let job = await this.create(body, signal, timeoutS);
    while (!isTerminal(job)) {
      const remainingS = (deadline - Date.now()) / 1000;
      if (remainingS <= 0) break;
      job = await this.get(job.id, remainingS, signal);
    }
    return job;
  }

  /**
   * {@link run} for many inputs in one bulk request, then long-polls the ones not yet terminal.
   * Returns the last view of each, in input order.
   */
  async runMany(body: { model: string; version?: number; inputs: unknown[] }, timeoutS: number, signal?: AbortSignal): Promise<JobView[]> {
    const deadline = Date.now() + timeoutS * 1000;
    const jobs = await this.createMany(body, signal, timeoutS);
    for (const [i, first] of jobs.entries()) {
      let job = first;
      while (!isTerminal(job)) {
        const remainingS = (deadline - Date.now()) / 1000;
        if (remainingS <= 0) break;
        job = await this.get(job.id, remainingS, signal);
      }
      jobs[i] = job;
    }
    return jobs;
  }

  /** The `Prefer: wait=N` header for a wait of `waitS` s (none for 0). */
  #prefer(waitS: number): Record<string, string> {
    const wait = Math.min(Math.ceil(waitS), this.#maxWaitS);
    return wait > 0 ? { prefer: `wait=${wait}` } : {};
  }

  async close(): Promise<void> {
    await this.#http.close();
  }
}

/** True when the job reached a terminal state (`succeeded`, `failed`, `cancelled`, `expired`). */
export function isTerminal(job: JobView): boolean {
  return TERMINAL_STATUSES.has(job.status);
}
