import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServerResponse } from 'node:http';
import {
  ErrorReply,
  InferlineError,
  JobCreateBody,
  JobList,
  JobView,
  TERMINAL_STATUSES,
  cancelJob,
  jobIdModel,
  newJobId,
  QueueConfig,
  type JobRecord,
  type JobView as JobViewType,
} from '@inferline/shared';
import { Value } from '@sinclair/typebox/value';
import { requireJobOwner } from '../auth.ts';
import { acceptCallbackUrl } from '../callback-url.ts';
import { admitJobs, checkBulkSize } from '../enqueue-jobs.ts';
import { idempotencyKey, requestFingerprint } from '../idempotency.ts';
import { jobListJson, jobViewJson, readJob, readJobRecord, sendJsonBytes } from '../job-view.ts';
import { openEventStream } from '../event-stream.ts';
import { chooseShard } from '../partition-choice.ts';
import { whenRedisReady } from '../redis-ready.ts';
import { closeWithRequest, requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import type { JobWatch } from '../job-events.ts';
import { waitForJobs } from '../wait-for-jobs.ts';

/** `queue.result_ttl_s` of a model no longer in the repository (its cancelled record still expires). */
const DEFAULT_RESULT_TTL_S = (Value.Default(QueueConfig, {}) as { result_ttl_s: number }).result_ttl_s;

/** Period of the SSE comment heartbeat that keeps proxies from closing an idle event stream, ms. */
export const SSE_HEARTBEAT_MS = 15_000;

/** A job id: `<model>~<nanoid>` or `<model>~<partition>~<nanoid>` (`newJobId`), at most 64 + 1 + 3 + 1 + 21 characters. */
const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });

/**
 * The preference `wait=N` of a `Prefer` header (RFC 7240 section 4.3: seconds the client is willing to
 * wait for the final answer), or undefined when absent or malformed (a preference that cannot be
 * honoured is ignored, as the RFC says).
 */
export function preferredWaitS(header: string | string[] | undefined): number | undefined {
  const text = Array.isArray(header) ? header.join(',') : header;
  if (!text) return undefined;
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The native asynchronous API (DESIGN.md section 8):
 * - `POST /v1/jobs` admits one request (`input`) → `202` + `Location`, or many (`inputs`, the bulk
 *   form) → `202` `{"jobs": [...]}` in input order, stored all or nothing. With `Prefer: wait=N`
 *   (RFC 7240) it waits up to N s (at most `max_wait_s`) and answers `200` with the terminal view(s)
 *   when they finish in time, else `202` as without it; `Preference-Applied: wait=N` either way.
 * - `GET /v1/jobs/:id[?wait=SECONDS]` its state, long-polling up to `wait` s for a terminal state;
 * - `GET /v1/jobs/:id/events` its states as server-sent events, closed after the terminal one;
 * - `DELETE /v1/jobs/:id` cancels a queued job → `200` with its `cancelled` view (no worker runs it;
 *   waiters end at once); a running one → `409 not_cancellable` (it runs to its end and keeps its
 *   result); a terminal one → `409 job_finished`.
 *
 * `priority` (1 = highest) and `timeout_ms` (queue deadline, ms) in the POST body apply to every job
 * of the call (DESIGN.md sections 2 and 3).
 */
export const jobRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.post(
    '/v1/jobs',
    {
      schema: {
        summary: 'Submit one input (`input`) or many (`inputs`, one job each)',
        description: 'Answers 202 with the job (or `{"jobs"}`), or 200 with the finished job(s) when `Prefer: wait=N` is given and they finish within N s. Also takes `multipart/form-data` (fields `model`, `version`, file `input`).',
        tags: ['Jobs'],
        body: JobCreateBody,
        headers: Type.Object({
          prefer: Type.Optional(Type.String({ description: 'RFC 7240, e.g. `wait=10`: answer 200 with the result if it is ready within 10 s.' })),
          'idempotency-key': Type.Optional(Type.String({ description: 'IETF httpapi Idempotency-Key: a retry with the same key and body answers the first request\'s job(s) (`Idempotent-Replayed: true`); another body is 422.' })),
        }),
        response: { 200: Type.Union([JobView, JobList]), 202: Type.Union([JobView, JobList]), '4xx': ErrorReply, '5xx': ErrorReply },
      },
      // A multipart form's fields are text: `version` becomes a number before the schema sees it.
      preValidation: (request, _reply, done) => {
        request.bodyRead = true;
        const body = request.body as Record<string, unknown> | undefined;
        if (request.isMultipart() && typeof body?.version === 'string' && /^[0-9]+$/.test(body.version)) body.version = Number(body.version);
        done();
      },
    },
    async (request, reply) => {
      const { model, version, label, input, inputs, priority, timeout_ms: timeoutMs, callback_url: callbackUrl } = request.body;
      request.logContext.model = model;
      const key = idempotencyKey(request.headers['idempotency-key']);
      if ((input === undefined) === (inputs === undefined)) {
        throw new InferlineError('invalid_input', 'body: exactly one of "input" (one request) or "inputs" (a list, one job each) is required');
      }
      if (version !== undefined && label !== undefined) throw new InferlineError('invalid_input', 'body: give "version" or "label", not both');
      if (inputs) checkBulkSize(inputs.length, ctx.settings.max_bulk_inputs, 'inputs');
      // Fail fast on an unknown model before any id is made or any watch opened.
      const { config } = ctx.models.require(model);
      const callback = await acceptCallbackUrl(callbackUrl, request.tenant, ctx.settings);
      const values = inputs ?? [input];
      const shard = chooseShard(config, key === undefined ? undefined : { tenant: request.tenant?.name ?? '', key });
      let ids = values.map(() => newJobId(shard));
      if (inputs) request.logContext.jobs = ids.length;
      else request.logContext.job_id = ids[0];
      const preferred = preferredWaitS(request.headers.prefer);
      const waitS = preferred === undefined ? 0 : Math.min(preferred, ctx.settings.max_wait_s);
      // Watch before enqueueing: a job can finish before the enqueue call returns. The watch is
      // closed (its wait ended) when the client goes away or the gateway shuts down.
      const watchJobs = (jobIds: string[]): JobWatch => {
        const opened = ctx.events.watch(jobIds, { terminalOnly: true });
        closeWithRequest(opened, reply, ctx.shutdown);
        return opened;
      };
      let watch = waitS > 0 ? watchJobs(ids) : undefined;
      let records: JobRecord[];
      let replayed = false;
      try {
        const policy = { ...(priority === undefined ? {} : { priority }), ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }) };
        const admitted = await admitJobs(ctx.models, ctx.redis, ctx.metrics, {
          model,
          selector: { version, label },
          inputs: values,
          jobIds: ids,
          policy,
          ...(request.tenant ? { tenant: request.tenant } : {}),
          ...(callback === undefined ? {} : { callback_url: callback }),
          ...(key === undefined ? {} : { idempotency: { key, fingerprint: requestFingerprint('POST /v1/jobs', request.body) } }),
        });
        request.logContext.version = admitted.target.version;
        records = admitted.records;
        replayed = admitted.replayed;
        if (replayed) {
          // The first request's jobs: watch those instead of the ids made for this one.
          ids = records.map((record) => record.id);
          watch?.close();
          watch = waitS > 0 ? watchJobs(ids) : undefined;
        }
        if (watch) records = await waitForJobs(ctx.redis, watch, waitS * 1000, undefined, records);
      } finally {
        watch?.close();
      }
      const finished = records.every((record) => TERMINAL_STATUSES.has(record.status));
      // A replay answers the first request's jobs as they are now: 200 once they are all terminal.
      reply.code((watch || replayed) && finished ? 200 : 202);
      if (replayed) reply.header('idempotent-replayed', 'true');
      if (watch) reply.header('preference-applied', `wait=${waitS}`);
      if (!inputs) return sendJsonBytes(reply.header('location', `/v1/jobs/${ids[0] ?? ''}`), jobViewJson(records[0] as JobRecord));
      return sendJsonBytes(reply, jobListJson(records));
    },
  );

  app.get(
    '/v1/jobs/:id',
    {
      schema: {
        summary: 'A job\'s state and output (`?wait=` long-polls)',
        tags: ['Jobs'],
        params: JobParams,
        querystring: Type.Object({
          wait: Type.Optional(Type.Number({ minimum: 0, maximum: ctx.settings.max_wait_s, description: 'Long-poll: seconds to wait for a terminal state.' })),
        }),
        response: { 200: JobView, '4xx': ErrorReply, '5xx': ErrorReply },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      request.logContext.job_id = id;
      await requireJobOwner(ctx.redis, id, request.tenant);
      const waitS = request.query.wait ?? 0;
      if (waitS === 0) return sendJsonBytes(reply, jobViewJson(await readJobRecord(ctx.redis, id)));
      const watch = ctx.events.watch(id, { terminalOnly: true });
      closeWithRequest(watch, reply, ctx.shutdown);
      try {
        const [record] = await waitForJobs(ctx.redis, watch, waitS * 1000);
        return sendJsonBytes(reply, jobViewJson(record as JobRecord));
      } finally {
        watch.close();
      }
    },
  );

  app.delete(
    '/v1/jobs/:id',
    {
      schema: {
        summary: 'Cancel a queued job',
        description: 'A queued job becomes `cancelled` and never runs (200). A running job runs to its end: 409 `not_cancellable`; a finished one: 409 `job_finished`; another tenant\'s job: 404 `job_not_found`.',
        tags: ['Jobs'],
        params: JobParams,
        response: { 200: JobView, '4xx': ErrorReply, '5xx': ErrorReply },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      request.logContext.job_id = id;
      const model = jobIdModel(id);
      if (model) request.logContext.model = model;
      // Another tenant's job is not found (404), as for GET; its tenant never changes once stored.
      await requireJobOwner(ctx.redis, id, request.tenant);
      const resultTtlS = (model ? ctx.models.get(model)?.config.queue.result_ttl_s : undefined) ?? DEFAULT_RESULT_TTL_S;
      const outcome = await cancelJob(ctx.redis, id, resultTtlS, 'cancelled by DELETE /v1/jobs/:id');
      if (outcome === 'missing') throw new InferlineError('job_not_found', `job "${id}" does not exist or has expired`);
      if (outcome === 'running') {
        throw new InferlineError('not_cancellable', `job "${id}" is running: it runs to its end and keeps its result; GET /v1/jobs/${id}?wait=N for it`, { status: 'running' });
      }
      const record = await readJobRecord(ctx.redis, id);
      if (outcome === 'finished') throw new InferlineError('job_finished', `job "${id}" has already finished (${record.status})`, { status: record.status });
      return sendJsonBytes(reply, jobViewJson(record));
    },
  );

  app.get('/v1/jobs/:id/events', { schema: { summary: 'A job\'s states as server-sent events', tags: ['Jobs'], params: JobParams } }, async (request, reply) => {
    const { id } = request.params;
    request.logContext.job_id = id;
    await requireJobOwner(ctx.redis, id, request.tenant);
    const watch = ctx.events.watch(id);
    try {
      let view = await readJob(ctx.redis, id);
      request.logContext.model = view.model;
      const signal = requestSignal(reply, ctx.shutdown);
      const res = openEventStream(reply);
      try {
        writeEvent(res, view);
        while (!TERMINAL_STATUSES.has(view.status)) {
          const event = await watch.next(SSE_HEARTBEAT_MS, signal);
          if ('closed' in event) break;
          if ('timeout' in event) {
            res.write(': heartbeat\n\n');
            continue;
          }
          // After a re-subscription the command connection may still be reconnecting: wait for it.
          const next = await whenRedisReady(ctx.redis, () => readJob(ctx.redis, id), Date.now() + ctx.settings.max_wait_s * 1000, signal);
          if (next.status !== view.status) writeEvent(res, next);
          view = next;
        }
      } catch (error) {
        // Headers are sent: the stream just ends; the client sees no terminal event and may retry.
        request.log.warn({ err: error, ...request.logContext }, 'job event stream ended early');
      }
      res.end();
    } finally {
      watch.close();
    }
  });

  done();
};

/** One SSE event: `event: <status>` with the job view as data. */
function writeEvent(res: ServerResponse, view: JobViewType): void {
  res.write(`event: ${view.status}\ndata: ${JSON.stringify(view)}\n\n`);
}
