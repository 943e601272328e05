import type { Dispatcher, Pool } from 'undici';
import { TERMINAL_STATUSES, type JobView } from '@inferline/shared';
import type { RequestOutcome, SendRequest } from './closed-loop.ts';

/**
 * The requests of the comparison benchmark (bench/compare.ts), one {@link SendRequest} per way in:
 * - {@link predictRequest}: the baselines' `POST /predict {"text"}` → `200 {"embedding":[...]}`;
 * - {@link inferlineRequest} `two-call`: `POST /v1/jobs` → `202 {id}`, then `GET /v1/jobs/:id?wait=`
 *   until the job is terminal;
 * - {@link inferlineRequest} `one-call`: `POST /v1/jobs` with `Prefer: wait=` (RFC 7240): `200` with
 *   the terminal job when it finished in time, else `202` and the same long-poll as `two-call`.
 * A `429` is sent again after its `Retry-After`; any other error reply makes the request fail.
 */

/** Long-poll `wait` of `GET /v1/jobs/:id?wait=` and of `Prefer: wait=`, s. */
export const LONG_POLL_WAIT_S = 30;
/** A job not terminal this long after its submission counts as failed, s. */
const JOB_TIMEOUT_S = 120;
/** Wait after a 429 whose `Retry-After` is missing or not delta-seconds, s. */
const DEFAULT_RETRY_AFTER_S = 1;
const HTTP_OK = 200;
const HTTP_ACCEPTED = 202;
const HTTP_TOO_MANY_REQUESTS = 429;
const JSON_HEADERS = ['content-type', 'application/json'];

/** The two ways into inferline's job API measured by the comparison. */
export type InferlinePath = 'one-call' | 'two-call';

interface JsonReply {
  status: number;
  body: unknown;
}

/** `Retry-After` as seconds (delta-seconds only; an HTTP-date or nothing gives the default). */
function retryAfterSeconds(header: string | undefined): number {
  const value = Number(header);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_RETRY_AFTER_S;
}

/** A request of {@link requestJson}: headers as a flat `[name, value, ...]` list, as undici takes them. */
interface JsonRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: string[];
  body?: string;
}

/** Status, `Retry-After` and body text of one exchange ({@link exchange}). */
interface RawReply {
  status: number;
  retryAfter: string | undefined;
  text: string;
}

/**
 * One exchange through undici's `dispatch` with a minimal handler: the body's chunks are gathered and
 * decoded once at the end. `pool.request` builds a Readable body stream and a headers object per reply;
 * on a 2-core machine the load client shares the cores with the systems it measures, so its own cost
 * per request lowers every figure (`request` + `body.text()`: ~70–90 µs of client CPU per request,
 * `dispatch`: ~50–65 µs, 32 clients against a fixed reply). https://undici.nodejs.org/#/docs/api/Dispatcher
 */
function exchange(pool: Pool, request: JsonRequest): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let status = 0;
    let retryAfter: string | undefined;
    const options: Dispatcher.DispatchOptions = { method: request.method, path: request.path, headers: request.headers ?? [] };
    if (request.body !== undefined) options.body = request.body;
    pool.dispatch(options, {
      onConnect: () => undefined,
      onHeaders: (statusCode, headers) => {
        status = statusCode;
        if (statusCode === HTTP_TOO_MANY_REQUESTS) {
          for (let i = 0; i + 1 < headers.length; i += 2) {
            if (String(headers[i]).toLowerCase() === 'retry-after') retryAfter = String(headers[i + 1]);
          }
        }
        return true;
      },
      onData: (chunk) => {
        chunks.push(chunk);
        return true;
      },
      onComplete: () => resolve({ status, retryAfter, text: (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)).toString() }),
      onError: reject,
    });
  });
}

/**
 * One request with a JSON body (or none), sent again after `Retry-After` while it is refused with
 * 429. Resolves with the final status and parsed body (undefined when it is not JSON).
 */
async function requestJson(pool: Pool, request: JsonRequest, counter: { retries: number }): Promise<JsonReply> {
  for (;;) {
    const reply = await exchange(pool, request);
    if (reply.status === HTTP_TOO_MANY_REQUESTS) {
      counter.retries++;
      await new Promise((resolve) => setTimeout(resolve, retryAfterSeconds(reply.retryAfter) * 1000));
      continue;
    }
    return { status: reply.status, body: parseJsonOrUndefined(reply.text) };
  }
}

/** `JSON.parse(text)`, or undefined when the text is not JSON (an error page, an empty body). */
export function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `POST /predict {"text"}`: ok on `200` with an `embedding` array. */
export const predictRequest: SendRequest = async (pool, text) => {
  const counter = { retries: 0 };
  try {
    const reply = await requestJson(pool, { method: 'POST', path: '/predict', headers: JSON_HEADERS, body: JSON.stringify({ text }) }, counter);
    const ok = reply.status === HTTP_OK && Array.isArray((reply.body as { embedding?: unknown } | undefined)?.embedding);
    return { ok, retries: counter.retries };
  } catch {
    return { ok: false, retries: counter.retries };
  }
};

function isJobView(body: unknown): body is JobView {
  return typeof body === 'object' && body !== null && typeof (body as JobView).id === 'string' && typeof (body as JobView).status === 'string';
}

/** Submit `text` to `model` by `path` and follow the job until it is terminal (see the file header). */
async function runInferlineJob(pool: Pool, model: string, path: InferlinePath, text: string, counter: { retries: number }): Promise<JobView | undefined> {
  const headers = path === 'one-call' ? [...JSON_HEADERS, 'prefer', `wait=${LONG_POLL_WAIT_S}`] : JSON_HEADERS;
  const created = await requestJson(pool, { method: 'POST', path: '/v1/jobs', headers, body: JSON.stringify({ model, input: text }) }, counter);
  if ((created.status !== HTTP_OK && created.status !== HTTP_ACCEPTED) || !isJobView(created.body)) return undefined;
  let job = created.body;
  const deadline = performance.now() + JOB_TIMEOUT_S * 1000;
  while (!TERMINAL_STATUSES.has(job.status)) {
    if (performance.now() > deadline) return undefined;
    const polled = await requestJson(pool, { method: 'GET', path: `/v1/jobs/${encodeURIComponent(job.id)}?wait=${LONG_POLL_WAIT_S}` }, counter);
    if (polled.status !== HTTP_OK || !isJobView(polled.body)) return undefined;
    job = polled.body;
  }
  return job;
}

/** A {@link SendRequest} for inferline's job API: ok when the job `succeeded`; reports its batch size. */
export function inferlineRequest(model: string, path: InferlinePath): SendRequest {
  return async (pool, text) => {
    const counter = { retries: 0 };
    try {
      const job = await runInferlineJob(pool, model, path, text, counter);
      if (job?.status !== 'succeeded') return { ok: false, retries: counter.retries };
      const outcome: RequestOutcome = { ok: true, retries: counter.retries };
      if (job.timings) outcome.batchSize = job.timings.batch_size;
      return outcome;
    } catch {
      return { ok: false, retries: counter.retries };
    }
  };
}

/** Inputs per request of the bulk path. */
export const BULK_SIZE = 64;

/**
 * A {@link SendRequest} for inferline's bulk form: `POST /v1/jobs` with `inputs` (`text` and the next
 * BULK_SIZE - 1 texts of `corpus`) and `Prefer: wait`; ok when every job `succeeded`; reports
 * BULK_SIZE texts and the mean batch size of its jobs.
 */
export function inferlineBulkRequest(model: string, corpus: readonly string[]): SendRequest {
  let next = 0;
  return async (pool, text) => {
    const counter = { retries: 0 };
    const inputs = [text, ...Array.from({ length: BULK_SIZE - 1 }, () => corpus[next++ % corpus.length] as string)];
    try {
      const headers = [...JSON_HEADERS, 'prefer', `wait=${LONG_POLL_WAIT_S}`];
      const reply = await requestJson(pool, { method: 'POST', path: '/v1/jobs', headers, body: JSON.stringify({ model, inputs }) }, counter);
      const jobs = (reply.body as { jobs?: JobView[] } | undefined)?.jobs ?? [];
      const ok = reply.status === HTTP_OK && jobs.length === BULK_SIZE && jobs.every((job) => job.status === 'succeeded');
      const batchSize = jobs.reduce((sum, job) => sum + (job.timings?.batch_size ?? 0), 0) / Math.max(1, jobs.length);
      return { ok, retries: counter.retries, texts: BULK_SIZE, batchSize };
    } catch {
      return { ok: false, retries: counter.retries };
    }
  };
}
