import type { Queue } from 'bullmq';
import {
  encode,
  enqueueReduce,
  InferlineError,
  JOB_EVENTS_CHANNEL,
  QUEUE_FULL_RETRY_AFTER_S,
  keys,
  runScript,
  type OnItemError,
  type Redis,
  type ReduceJobData,
  type ReducerName,
  type ReduceRetry,
} from '@inferline/shared';
import type { ResolvedModel } from './model-catalog.ts';

/** Reply codes of group-add.lua (see its header). */
const ADD_QUEUE_FULL = -1;
const ADD_INDEX_CONFLICT = -2;
const ADD_NO_GROUP = -3;
const ADD_NOT_OPEN = -4;
const ADD_EXISTS = -5;

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
}

/** Outcome of {@link addToGroup}. */
export interface GroupAddResult {
  /** Inputs the group holds after the call. */
  size: number;
  status: string;
}

/**
 * Run group-add.lua: create a group, append inputs as member requests on the model version's stream,
 * close it, or all at once, atomically (nothing is stored unless every input fits in the stream). When
 * the close finds every member settled (an empty group, or a close after the last member finished), add
 * the group's reduce job.
 * @throws InferlineError `queue_full` (429, nothing stored), `index_conflict` (409, with `size`),
 *   `group_not_found` (404), `group_closed` (409; with `status`), `internal` on an id collision; Redis
 *   failures as they are (503).
 */
export async function addToGroup(redis: Redis, queue: Queue<ReduceJobData>, retry: ReduceRetry, add: GroupAdd): Promise<GroupAddResult> {
  const { target, create } = add;
  const meta = create
    ? [target.config.name, target.version, create.reduce, create.output_name, create.on_item_error, target.config.queue.result_ttl_s]
    : ['', '', '', '', '', ''];
  const [code, size, status, ready] = await runScript<[number, number, string, number]>(
    redis,
    'group-add',
    [keys.group(add.groupId), keys.requests(target.config.name, target.version), keys.groupInputs(add.groupId), keys.groupsReady(), keys.groupsOpen()],
    [
      add.groupId,
      create ? 1 : 0,
      add.close ? 1 : 0,
      add.start ?? -1,
      target.config.batching.max_queue_size,
      add.keep_inputs ? 1 : 0,
      Date.now(),
      JOB_EVENTS_CHANNEL,
      ...meta,
      ...add.inputs.map((input) => encode(input)),
    ],
  );
  switch (code) {
    case ADD_QUEUE_FULL:
      throw new InferlineError(
        'queue_full',
        `model "${target.config.name}" version ${target.version} cannot take ${add.inputs.length} more requests (max_queue_size ${target.config.batching.max_queue_size}); retry later`,
        { retry_after_s: QUEUE_FULL_RETRY_AFTER_S },
      );
    case ADD_INDEX_CONFLICT:
      throw new InferlineError('index_conflict', `group "${add.groupId}" holds ${size} inputs, not ${add.start}: this chunk starts at index ${size}`, { size });
    case ADD_NO_GROUP:
      throw new InferlineError('group_not_found', `group "${add.groupId}" does not exist or has expired`);
    case ADD_NOT_OPEN:
      throw new InferlineError('group_closed', `group "${add.groupId}" is ${status}: it takes no more inputs`, { status, size });
    case ADD_EXISTS:
      throw new InferlineError('internal', `group id ${add.groupId} already exists`);
  }
  if (ready === 1) await enqueueReduce(queue, add.groupId, retry);
  return { size, status };
}

/**
 * Cancel a group (group-cancel.lua): the members still queued are dropped without inference.
 * @throws InferlineError `group_not_found`, `group_finished` (already terminal).
 */
export async function cancelGroup(redis: Redis, groupId: string): Promise<void> {
  const outcome = await runScript<number>(
    redis,
    'group-cancel',
    [keys.group(groupId), keys.groupResults(groupId), keys.groupErrors(groupId), keys.groupInputs(groupId), keys.groupsReady()],
    [Date.now(), JOB_EVENTS_CHANNEL, groupId, 'cancelled by DELETE /v1/groups/:id'],
  );
  if (outcome === -1) throw new InferlineError('group_not_found', `group "${groupId}" does not exist or has expired`);
  if (outcome === 0) throw new InferlineError('group_finished', `group "${groupId}" has already finished`);
}
