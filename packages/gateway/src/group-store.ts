import type { Queue } from 'bullmq';
import {
  encode,
  enqueueReduce,
  groupAdd,
  groupCancel,
  InferlineError,
  type OnItemError,
  type Redis,
  type ReduceJobData,
  type ReducerName,
  type ReduceRetry,
  type Tenant,
} from '@inferline/shared';
import type { ResolvedModel } from './model-catalog.ts';

/** What a new group is (stored in its record). */
export interface GroupSpec {
  id: string;
  target: ResolvedModel;
  reduce: ReducerName;
  /** Member output the reducer reads (see resolveReduceOutput). */
  output_name: string;
  on_item_error: OnItemError;
  /** Keep each member's input for the reduce (`boxes`). */
  keep_inputs: boolean;
  /** Priority level of its members (already resolved by `priorityLevel`). */
  priority: number;
  /** ms since epoch after which members still queued fail `deadline_exceeded`; absent = none. */
  deadline_at?: number;
  /** Where the group's terminal view is POSTed (checked: acceptCallbackUrl). */
  callback_url?: string;
  /** The creating request's `Idempotency-Key` and fingerprint (idempotency.ts). */
  idempotency?: { key: string; fingerprint: string };
}

/** One call of group-add.lua. */
export interface GroupAdd {
  groupId: string;
  /** The model version the group's members run on. */
  target: ResolvedModel;
  /** Stored inputs (readInputs), in index order. */
  inputs: readonly unknown[];
  /** Create the group first (it must not exist) with this spec. */
  create?: GroupSpec;
  /** Close the group after appending. */
  close: boolean;
  /** Refuse the call unless the group holds exactly this many inputs (a retried chunk). */
  start?: number;
  keep_inputs: boolean;
  /** Priority level of the group's members (its record's `priority`; the create's). */
  priority: number;
  /** The caller's tenant (the group's owner): its inputs count against its `max_queued`. */
  tenant?: Tenant;
}

/** Outcome of {@link addToGroup}. */
export interface GroupAddResult {
  /** Inputs the group holds after the call. */
  size: number;
  status: string;
  /** Set when the create was a retry of an earlier one with the same Idempotency-Key: the group it made (nothing stored now). */
  replayed_group?: string;
}

/**
 * Run group-add.lua: create a group, append inputs as member requests on the model version's stream,
 * close it, or all at once, atomically (nothing is stored unless every input fits in the stream). When
 * the close finds every member settled (an empty group, or a close after the last member finished), add
 * the group's reduce job.
 * @throws InferlineError `queue_full` / `tenant_queue_full` (429, nothing stored), `idempotency_key_reused` (422), `index_conflict` (409, with `size`),
 *   `group_not_found` (404), `group_closed` (409; with `status`), `internal` on an id collision; Redis
 *   failures as they are (503).
 */
export async function addToGroup(redis: Redis, queue: Queue<ReduceJobData>, retry: ReduceRetry, add: GroupAdd): Promise<GroupAddResult> {
  const { target, create, tenant } = add;
  const ttlS = target.config.queue.result_ttl_s;
  const { size, status, ready, replayed_group: replayedGroup } = await groupAdd(redis, {
    groupId: add.groupId,
    model: target.config.name,
    version: target.version,
    max_queue_size: target.config.batching.max_queue_size,
    inputs: add.inputs.map((input) => encode(input)),
    close: add.close,
    keep_inputs: add.keep_inputs,
    priority: add.priority,
    levels: target.config.batching.priority_levels,
    ...(create?.deadline_at === undefined ? {} : { deadline_at: create.deadline_at }),
    ...(add.start === undefined ? {} : { start: add.start }),
    ...(tenant ? { tenant: tenant.name, ...(tenant.max_queued === undefined ? {} : { max_queued: tenant.max_queued }) } : {}),
    ...(create
      ? {
          create: {
            reduce: create.reduce,
            output_name: create.output_name,
            on_item_error: create.on_item_error,
            result_ttl_s: ttlS,
            ...(create.callback_url === undefined ? {} : { callback_url: create.callback_url }),
            ...(create.idempotency ? { idempotency: { ...create.idempotency, ttl_s: ttlS } } : {}),
          },
        }
      : {}),
  });
  if (replayedGroup !== undefined) return { size, status, replayed_group: replayedGroup };
  if (ready) await enqueueReduce(queue, add.groupId, retry);
  return { size, status };
}

/**
 * Cancel a group (group-cancel.lua): the members still queued are dropped without inference.
 * @throws InferlineError `group_not_found`, `group_finished` (already terminal).
 */
export async function cancelGroup(redis: Redis, groupId: string): Promise<void> {
  const outcome = await groupCancel(redis, groupId, 'cancelled by DELETE /v1/groups/:id');
  if (outcome === 'missing') throw new InferlineError('group_not_found', `group "${groupId}" does not exist or has expired`);
  if (outcome === 'finished') throw new InferlineError('group_finished', `group "${groupId}" has already finished`);
}
