import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { nanoid } from 'nanoid';
import type { ServerResponse } from 'node:http';
import { ErrorReply, JobCreateBody, JobView, TERMINAL_STATUSES, type JobView as JobViewType } from '@inferline/shared';
import { enqueueJob } from '../enqueue-jobs.ts';
import { readJob } from '../job-view.ts';
import { openEventStream } from '../event-stream.ts';
import { requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import { waitForJobs } from '../wait-for-jobs.ts';

/** Period of the SSE comment heartbeat that keeps proxies from closing an idle event stream, ms. */
export const SSE_HEARTBEAT_MS = 15_000;

const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/**
 * The native asynchronous API (DESIGN.md section 8):
 * - `POST /v1/jobs` admits one request → `202` + `Location`;
 * - `GET /v1/jobs/:id[?wait=SECONDS]` its state, long-polling up to `wait` s for a terminal state;
 * - `GET /v1/jobs/:id/events` its states as server-sent events, closed after the terminal one.
 */
export const jobRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  app.post(
    '/v1/jobs',
    {
      schema: { body: JobCreateBody, response: { 202: JobView, '4xx': ErrorReply, '5xx': ErrorReply } },
      // A multipart form's fields are text: `version` becomes a number before the schema sees it.
      preValidation: (request, _reply, done) => {
        const body = request.body as Record<string, unknown> | undefined;
        if (request.isMultipart() && typeof body?.version === 'string' && /^[0-9]+$/.test(body.version)) body.version = Number(body.version);
        done();
      },
    },
    async (request, reply) => {
      const { model, version, input } = request.body;
      request.logContext.model = model;
      const target = ctx.models.resolve(model, version);
      request.logContext.version = target.version;
      const id = nanoid();
      const view = await enqueueJob(ctx.redis, ctx.metrics, target, input, id);
      request.logContext.job_id = id;
      return reply.code(202).header('location', `/v1/jobs/${id}`).send(view);
    },
  );

  app.get(
    '/v1/jobs/:id',
    {
      schema: {
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
      const waitS = request.query.wait ?? 0;
      if (waitS === 0) return readJob(ctx.redis, id);
      const watch = ctx.events.watch(id);
      try {
        const [view] = await waitForJobs(ctx.redis, watch, waitS * 1000, requestSignal(reply, ctx.shutdown));
        return view;
      } finally {
        watch.close();
      }
    },
  );

  app.get('/v1/jobs/:id/events', { schema: { params: JobParams } }, async (request, reply) => {
    const { id } = request.params;
    request.logContext.job_id = id;
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
          const next = await readJob(ctx.redis, id);
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
