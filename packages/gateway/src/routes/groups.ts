import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ServerResponse } from 'node:http';
import {
  closeQueue,
  createReduceQueue,
  decode,
  ErrorReply,
  GroupCreateBody,
  GroupInputsBody,
  GroupView,
  InferlineError,
  keys,
  newGroupId,
  priorityLevel,
  REDUCERS_KEEPING_INPUTS,
  type GroupView as GroupViewType,
  type ReducerName,
} from '@inferline/shared';
import { requireGroupOwner } from '../auth.ts';
import { acceptCallbackUrl } from '../callback-url.ts';
import { queueDeadline, readInputs } from '../enqueue-jobs.ts';
import { idempotencyKey, requestFingerprint } from '../idempotency.ts';
import { addToGroup, cancelGroup } from '../group-store.ts';
import { readGroup, TERMINAL_GROUP_STATUSES } from '../group-view.ts';
import type { ResolvedModel } from '../model-catalog.ts';
import { resolveReduceOutput } from '../reduce-output.ts';
import { openEventStream } from '../event-stream.ts';
import { requestSignal } from '../request-signal.ts';
import type { RouteContext } from '../route-context.ts';
import { SSE_HEARTBEAT_MS } from './jobs.ts';

/**
 * A group id: `<model>~<nanoid>` (`newGroupId`), at most 64 + 1 + 21 characters (128 leaves room for a
 * partition suffix). An id without a model part is well-formed here and reads as not found (404).
 */
const GroupParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
const Replies = { '4xx': ErrorReply, '5xx': ErrorReply };

/**
 * Aggregation groups (DESIGN.md sections 5 and 8): many inputs, one reduced output.
 * - `POST /v1/groups` creates a group, with its inputs (closed at once) or empty and `open` for chunks;
 * - `POST /v1/groups/:id/inputs` appends a chunk, `POST /v1/groups/:id/close` closes it;
 * - `GET /v1/groups/:id[?wait=SECONDS]` its state (long-poll to a terminal state), `/events` its
 *   progress as server-sent events, `/output.png` the picture of a `boxes` group;
 * - `DELETE /v1/groups/:id` cancels it.
 * Members are ordinary requests on the model's stream; workers settle them into the group and the
 * aggregator reduces the group once every member settled.
 */
export const groupRoutes: FastifyPluginCallbackTypebox<RouteContext> = (app, ctx, done) => {
  const { redis, settings } = ctx;
  const queue = createReduceQueue(redis, (error) => ctx.logger.debug({ err: error }, 'reduce queue: redis connection error'));
  app.addHook('onClose', async () => {
    await closeQueue(queue);
  });

  /** Validate a request's inputs (at most max_group_inputs) and turn them into stored values. */
  const readGroupInputs = async (target: ResolvedModel, inputs: readonly unknown[], reduce: ReducerName, sizeBefore: number): Promise<unknown[]> => {
    if (inputs.length > settings.max_group_inputs) {
      throw new InferlineError('payload_too_large', `${inputs.length} inputs in one request, more than ${settings.max_group_inputs} (MAX_GROUP_INPUTS): send them in chunks to POST /v1/groups/:id/inputs`);
    }
    if (inputs.length > target.config.batching.max_queue_size) {
      throw new InferlineError('payload_too_large', `${inputs.length} inputs in one request, more than model "${target.config.name}" queues (max_queue_size ${target.config.batching.max_queue_size}): send smaller chunks`);
    }
    if (reduce === 'boxes' && sizeBefore + inputs.length > settings.max_boxes_inputs) {
      throw new InferlineError('payload_too_large', `a "boxes" group takes at most ${settings.max_boxes_inputs} images (MAX_BOXES_INPUTS); this one would hold ${sizeBefore + inputs.length}`);
    }
    return readInputs(target, inputs);
  };

  const createHeaders = Type.Object({
    'idempotency-key': Type.Optional(Type.String({ description: 'IETF httpapi Idempotency-Key: a retry with the same key and body answers the group the first request created (`Idempotent-Replayed: true`); another body is 422.' })),
  });
  app.post('/v1/groups', { schema: { summary: 'Create a group (closed when it carries inputs, else open for chunks)', tags: ['Groups'], headers: createHeaders, body: GroupCreateBody, response: { 200: GroupView, 202: GroupView, ...Replies } } }, async (request, reply) => {
    const { model, version, label, inputs, reduce, output, on_item_error: onItemError = 'fail', priority: asked, timeout_ms: timeoutMs, callback_url: callbackUrl } = request.body;
    request.logContext.model = model;
    const key = idempotencyKey(request.headers['idempotency-key']);
    if (version !== undefined && label !== undefined) throw new InferlineError('invalid_input', 'body: give "version" or "label", not both');
    const target = await ctx.models.resolve(model, { version, label });
    request.logContext.version = target.version;
    const outputName = resolveReduceOutput(target.config, reduce, output);
    const priority = priorityLevel(target.config.batching, asked);
    const deadline = queueDeadline(target, Date.now(), timeoutMs);
    const callback = await acceptCallbackUrl(callbackUrl, request.tenant, settings);
    const stored = inputs ? await readGroupInputs(target, inputs, reduce, 0) : [];
    // In the model's slot, with its members' stream and its model's group sets (keys.ts).
    let id = newGroupId(target.config.name);
    request.logContext.group_id = id;
    request.logContext.inputs = stored.length;
    const keepInputs = REDUCERS_KEEPING_INPUTS.has(reduce);
    const added = await addToGroup(redis, queue, settings, {
      groupId: id,
      target,
      inputs: stored,
      create: {
        id,
        target,
        reduce,
        output_name: outputName,
        on_item_error: onItemError,
        keep_inputs: keepInputs,
        priority,
        ...(deadline === undefined ? {} : { deadline_at: deadline }),
        ...(callback === undefined ? {} : { callback_url: callback }),
        ...(key === undefined ? {} : { idempotency: { key, fingerprint: requestFingerprint('POST /v1/groups', request.body) } }),
      },
      close: inputs !== undefined,
      keep_inputs: keepInputs,
      priority,
      ...(request.tenant ? { tenant: request.tenant } : {}),
    });
    if (added.replayed_group !== undefined) {
      // A retry of a create that was stored: answer that group as it is now (200 once terminal).
      id = added.replayed_group;
      request.logContext.group_id = id;
      const view = await readGroup(redis, id, true);
      const code = TERMINAL_GROUP_STATUSES.has(view.status) ? 200 : 202;
      return reply.code(code).header('location', `/v1/groups/${id}`).header('idempotent-replayed', 'true').send(code === 200 ? await readGroup(redis, id) : view);
    }
    countAccepted(target, stored.length);
    return reply.code(202).header('location', `/v1/groups/${id}`).send(await readGroup(redis, id, true));
  });

  app.post(
    '/v1/groups/:id/inputs',
    { schema: { summary: 'Append a chunk of inputs to an open group', tags: ['Groups'], params: GroupParams, body: GroupInputsBody, response: { 202: GroupView, ...Replies } } },
    async (request, reply) => {
      const { id } = request.params;
      request.logContext.group_id = id;
      await requireGroupOwner(redis, id, request.tenant);
      const group = await readGroup(redis, id, true);
      request.logContext.model = group.model;
      if (group.status !== 'open') throw new InferlineError('group_closed', `group "${id}" is ${group.status}: it takes no more inputs`, { status: group.status, size: group.size });
      const target = await ctx.models.resolve(group.model, { version: group.version });
      request.logContext.version = target.version;
      const { inputs, start } = request.body;
      const stored = await readGroupInputs(target, inputs, group.reduce, group.size);
      request.logContext.inputs = stored.length;
      await addToGroup(redis, queue, settings, {
        groupId: id,
        target,
        inputs: stored,
        close: false,
        ...(start === undefined ? {} : { start }),
        keep_inputs: REDUCERS_KEEPING_INPUTS.has(group.reduce),
        // The level the group was created at (above the model's levels after a config change: its lowest).
        priority: Math.min(Number((await redis.hget(keys.group(id), 'priority')) ?? 1), target.config.batching.priority_levels),
        ...(request.tenant ? { tenant: request.tenant } : {}),
      });
      countAccepted(target, stored.length);
      return reply.code(202).send(await readGroup(redis, id, true));
    },
  );

  app.post('/v1/groups/:id/close', { schema: { summary: 'Close a group: no more inputs', tags: ['Groups'], params: GroupParams, response: { 200: GroupView, ...Replies } } }, async (request) => {
    const { id } = request.params;
    request.logContext.group_id = id;
    await requireGroupOwner(redis, id, request.tenant);
    const group = await readGroup(redis, id, true);
    request.logContext.model = group.model;
    // Closing twice (a retried close) answers the current state.
    if (group.status !== 'open') return group;
    // A close stores no request: the group's version need not be loaded, or even served, any more.
    const model = ctx.models.get(group.model);
    if (!model) throw new InferlineError('model_not_found', `model "${group.model}" is not in the model repository`);
    const target: ResolvedModel = { model, config: model.config, version: group.version };
    try {
      await addToGroup(redis, queue, settings, { groupId: id, target, inputs: [], close: true, keep_inputs: false, priority: 1 });
    } catch (error) {
      // A close racing another close (or a cancel) lost: answer what won.
      if (!(error instanceof InferlineError && error.code === 'group_closed')) throw error;
    }
    return readGroup(redis, id, true);
  });

  app.get(
    '/v1/groups/:id',
    {
      schema: {
        summary: 'A group\'s state and output (`?wait=` long-polls)',
        tags: ['Groups'],
        params: GroupParams,
        querystring: Type.Object({
          wait: Type.Optional(Type.Number({ minimum: 0, maximum: settings.max_wait_s, description: 'Long-poll: seconds to wait for a terminal state.' })),
        }),
        response: { 200: GroupView, ...Replies },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      request.logContext.group_id = id;
      await requireGroupOwner(redis, id, request.tenant);
      const waitS = request.query.wait ?? 0;
      if (waitS === 0) return readGroup(redis, id);
      return waitForGroup(id, waitS * 1000, requestSignal(reply, ctx.shutdown));
    },
  );

  app.get('/v1/groups/:id/output.png', { schema: { summary: 'The picture of a succeeded boxes group (image/png)', tags: ['Groups'], params: GroupParams } }, async (request, reply) => {
    const { id } = request.params;
    request.logContext.group_id = id;
    await requireGroupOwner(redis, id, request.tenant);
    const [status, reduce, output] = await redis.hmgetBuffer(keys.group(id), 'status', 'reduce', 'output');
    if (!status) throw new InferlineError('group_not_found', `group "${id}" does not exist or has expired`);
    const image = output && output.length > 0 ? decode<{ image?: unknown }>(output).image : undefined;
    if (!Buffer.isBuffer(image) && !(image instanceof Uint8Array)) {
      throw new InferlineError('not_found', `group "${id}" has no picture: it is ${status.toString()}, reduce "${reduce?.toString() ?? ''}" (only a succeeded "boxes" group has one)`);
    }
    return reply.type('image/png').send(Buffer.from(image));
  });

  app.delete('/v1/groups/:id', { schema: { summary: 'Cancel a group', tags: ['Groups'], params: GroupParams, response: { 200: GroupView, ...Replies } } }, async (request) => {
    const { id } = request.params;
    request.logContext.group_id = id;
    await requireGroupOwner(redis, id, request.tenant);
    await cancelGroup(redis, id);
    return readGroup(redis, id, true);
  });

  app.get('/v1/groups/:id/events', { schema: { summary: 'A group\'s progress as server-sent events', tags: ['Groups'], params: GroupParams } }, async (request, reply) => {
    const { id } = request.params;
    request.logContext.group_id = id;
    await requireGroupOwner(redis, id, request.tenant);
    const watch = ctx.events.watch(id);
    try {
      let view = await readGroup(redis, id, true);
      request.logContext.model = view.model;
      const signal = requestSignal(reply, ctx.shutdown);
      const res = openEventStream(reply);
      try {
        let written = '';
        let lastWriteAt = 0;
        for (;;) {
          if (TERMINAL_GROUP_STATUSES.has(view.status)) {
            const final = await readGroup(redis, id);
            writeEvent(res, final.status, final);
            break;
          }
          const progress = `${view.status}/${view.size}/${view.completed}/${view.failed}`;
          const now = Date.now();
          if (progress !== written) {
            writeEvent(res, 'progress', view);
            written = progress;
            lastWriteAt = now;
          } else if (now - lastWriteAt >= SSE_HEARTBEAT_MS) {
            res.write(': heartbeat\n\n');
            lastWriteAt = now;
          }
          // Progress is read every group_progress_interval_ms; a terminal event ends the wait early.
          const nextReadAt = now + settings.group_progress_interval_ms;
          let event = await watch.next(nextReadAt - Date.now(), signal);
          while ('status' in event && !TERMINAL_GROUP_STATUSES.has(event.status) && Date.now() < nextReadAt) {
            event = await watch.next(nextReadAt - Date.now(), signal);
          }
          if ('closed' in event) break;
          view = await readGroup(redis, id, true);
        }
      } catch (error) {
        request.log.warn({ err: error, ...request.logContext }, 'group event stream ended early');
      }
      res.end();
    } finally {
      watch.close();
    }
  });

  /**
   * Wait up to `waitMs` for the group to reach a terminal state and answer its view. Reads the record
   * now, then only when a terminal event arrives (or after a re-subscription) and at the deadline.
   */
  async function waitForGroup(id: string, waitMs: number, signal: AbortSignal): Promise<GroupViewType> {
    const watch = ctx.events.watch(id);
    try {
      let view = await readGroup(redis, id);
      const deadline = Date.now() + waitMs;
      while (!TERMINAL_GROUP_STATUSES.has(view.status)) {
        const event = await watch.next(deadline - Date.now(), signal);
        if ('closed' in event) break;
        if ('status' in event && !TERMINAL_GROUP_STATUSES.has(event.status)) continue;
        view = await readGroup(redis, id);
        if ('timeout' in event) break;
      }
      return view;
    } finally {
      watch.close();
    }
  }

  function countAccepted(target: ResolvedModel, count: number): void {
    if (count > 0) ctx.metrics.requests.inc({ model: target.config.name, version: String(target.version), status: 'accepted' }, count);
  }

  done();
};

/** One SSE event with a group view as data. */
function writeEvent(res: ServerResponse, event: string, view: GroupViewType): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(view)}\n\n`);
}
