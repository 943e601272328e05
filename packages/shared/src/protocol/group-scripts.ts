import type { Redis } from 'ioredis';
import { InferlineError } from '../errors.ts';
import { CONSUMER_GROUP, idShard, JOB_EVENTS_CHANNEL, keys } from '../keys.ts';
import { runScript } from '../scripts.ts';
import { idempotencyReusedError, QUEUE_FULL_RETRY_AFTER_S, tenantQueueFullError, versionClosedError, type IdempotencyClaim } from './job-scripts.ts';

/**
 * One typed function per aggregation-group script (group-add, start-members, settle-member,
 * dead-letter-member, group-cancel, group-finish; DESIGN.md section 5): each builds its keys and
 * arguments and decodes its reply; reply codes become errors here once.
 *
 * Every key of one call is in one Redis Cluster slot: a group id is `<shard>~<nanoid>`
 * (`newGroupId`), and its record, member results, errors and kept inputs, its shard's ready, open
 * and callbacks due sets, and the stream its members go to all carry `{m:<shard>}` (keys.ts). So each
 * script stays one atomic call and counts each member exactly once, on a cluster as on one Redis.
 * `packages/shared/test/protocol-slots.test.ts` checks the keys of every script's call.
 */

/** The shard of a group id ('' when it has none: its keys then name nothing, and the scripts find no record). */
function groupShard(groupId: string): string {
  return idShard(groupId) ?? '';
}

/** The keys of a group that group-cancel, group-finish, settle-member and dead-letter-member take first. */
function groupKeys(groupId: string): string[] {
  return [keys.group(groupId), keys.groupResults(groupId), keys.groupErrors(groupId), keys.groupInputs(groupId), keys.groupsReady(groupShard(groupId))];
}

/**
 * The keys every script that may finish a group takes last: the tenant counts and the group callbacks
 * due set of the group's shard (its model's: a shard is a model today).
 */
function releaseKeys(groupId: string): string[] {
  const shard = groupShard(groupId);
  return [keys.tenantQueued(shard), keys.groupCallbacksDue(shard)];
}

/** Reply codes of group-add.lua (see its header). */
const ADD_QUEUE_FULL = -1;
const ADD_INDEX_CONFLICT = -2;
const ADD_NO_GROUP = -3;
const ADD_NOT_OPEN = -4;
const ADD_EXISTS = -5;
const ADD_VERSION_CLOSED = -6;
const ADD_TENANT_FULL = -7;
const ADD_IDEMPOTENT = -8;
const ADD_IDEMPOTENCY_REUSED = -9;

/** What a new group is (stored in its record by group-add.lua, with the call's model and version). */
export interface GroupCreate {
  reduce: string;
  /** Member output the reducer reads. */
  output_name: string;
  on_item_error: string;
  result_ttl_s: number;
  /** Where the group's terminal view is POSTed. */
  callback_url?: string;
  /** An `Idempotency-Key` of the creating request: a second create with both returns the first group. */
  idempotency?: IdempotencyClaim;
}

/** One group-add.lua call. */
export interface GroupAddRequest {
  /** `newGroupId(model)`: its shard part must be the model's, so the group and its members' stream share a slot. */
  groupId: string;
  model: string;
  version: number;
  max_queue_size: number;
  /** Member inputs as MessagePack bytes, in index order. */
  inputs: readonly Buffer[];
  /** Create the group first (it must not exist). */
  create?: GroupCreate;
  /** Close the group after appending. */
  close: boolean;
  /** Refuse the call unless the group holds exactly this many inputs (a retried chunk). */
  start?: number;
  /** Keep each input for the reduce (`boxes`). */
  keep_inputs: boolean;
  /** Priority level of the group's members (1 = highest); stored on create, the same for every chunk; default 1. */
  priority?: number;
  /** The version's number of priority levels (`batching.priority_levels`): the cap counts them all; default 1. */
  levels?: number;
  /** On create: ms since epoch after which members still queued fail `deadline_exceeded`; absent = none. */
  deadline_at?: number;
  /** The tenant of the group (stored on create; its inputs counted in `keys.tenantQueued`); absent = none. */
  tenant?: string;
  /** Most requests the tenant may have waiting or running in the model's queue; absent = no cap. */
  max_queued?: number;
}

/**
 * Create a group, append member requests to its model version's stream, close it, or all at once,
 * atomically (group-add.lua; nothing is stored unless every input fits in the stream).
 * @returns the group's size and status after the call, and `ready` when the close found every member
 *   settled (the caller adds the reduce job); or `replayed_group` when a create with the same
 *   idempotency key and fingerprint made that group before (nothing stored).
 * @throws InferlineError `queue_full` (429), `tenant_queue_full` (429), `idempotency_key_reused`
 *   (422), `index_conflict` (409, with `size`), `group_not_found`, `group_closed` (409, with
 *   `status`), `model_unavailable` (503) when inputs are added to a version that is not open for
 *   admission, `internal` on an id collision.
 */
export async function groupAdd(redis: Redis, add: GroupAddRequest): Promise<{ size: number; status: string; ready: boolean; replayed_group?: string }> {
  const { groupId, create } = add;
  const shard = groupShard(groupId);
  const tenant = add.tenant ?? '';
  const idempotency = create?.idempotency;
  const meta = create ? [add.model, add.version, create.reduce, create.output_name, create.on_item_error, create.result_ttl_s] : ['', '', '', '', '', ''];
  const priority = add.priority ?? 1;
  const deadline = add.deadline_at === undefined ? '' : Math.floor(add.deadline_at);
  const [code, size, status, ready] = await runScript<[number, number, string, number]>(
    redis,
    'group-add',
    [
      keys.group(groupId), keys.requests(add.model, add.version, priority), keys.groupInputs(groupId), keys.groupsReady(shard), keys.groupsOpen(shard), keys.admission(add.model),
      keys.tenantQueued(shard), keys.idempotency(add.model, 'groups', tenant, idempotency?.key ?? ''),
      ...keys.requestStreams(add.model, add.version, add.levels ?? 1),
    ],
    [
      groupId, create ? 1 : 0, add.close ? 1 : 0, add.start ?? -1, add.max_queue_size, add.keep_inputs ? 1 : 0, Date.now(), JOB_EVENTS_CHANNEL, ...meta, add.version,
      deadline, priority, ...add.inputs,
      tenant, add.max_queued ?? 0, create?.callback_url ?? '', idempotency?.fingerprint ?? '', idempotency?.ttl_s ?? 0,
    ],
  );
  switch (code) {
    case ADD_IDEMPOTENT:
      return { size: 0, status: '', ready: false, replayed_group: status };
    case ADD_IDEMPOTENCY_REUSED:
      throw idempotencyReusedError(idempotency?.key ?? '');
    case ADD_TENANT_FULL:
      throw tenantQueueFullError(tenant, add.model, add.inputs.length, add.max_queued ?? 0);
    case ADD_QUEUE_FULL:
      throw new InferlineError(
        'queue_full',
        `model "${add.model}" version ${add.version} cannot take ${add.inputs.length} more requests (max_queue_size ${add.max_queue_size}); retry later`,
        { retry_after_s: QUEUE_FULL_RETRY_AFTER_S },
      );
    case ADD_INDEX_CONFLICT:
      throw new InferlineError('index_conflict', `group "${groupId}" holds ${size} inputs, not ${add.start}: this chunk starts at index ${size}`, { size });
    case ADD_NO_GROUP:
      throw new InferlineError('group_not_found', `group "${groupId}" does not exist or has expired`);
    case ADD_NOT_OPEN:
      throw new InferlineError('group_closed', `group "${groupId}" is ${status}: it takes no more inputs`, { status, size });
    case ADD_VERSION_CLOSED:
      throw versionClosedError(add.model, add.version);
    case ADD_EXISTS:
      throw new InferlineError('internal', `group id ${groupId} already exists`);
  }
  return { size, status, ready: ready === 1 };
}

/** What start-members.lua says of one member: run it, drop it, or settle it failed (its group's deadline passed). */
export type MemberVerdict = 'run' | 'drop' | 'deadline_exceeded';
const MEMBER_VERDICTS: readonly MemberVerdict[] = ['drop', 'run', 'deadline_exceeded'];

/**
 * Which members of one group, read in a batch, to run (start-members.lua).
 * @param now ms since epoch, compared with the group's `deadline_at`
 * @returns per index `run`, `drop` (group gone, finished or reducing; index settled) or
 *   `deadline_exceeded` (the group's deadline passed: settle it failed without inference).
 */
export async function startMembers(redis: Redis, groupId: string, indexes: readonly number[], now = Date.now()): Promise<MemberVerdict[]> {
  const verdicts = await runScript<number[]>(redis, 'start-members', [keys.group(groupId), keys.groupResults(groupId), keys.groupErrors(groupId)], [now, ...indexes]);
  return verdicts.map((verdict) => MEMBER_VERDICTS[Number(verdict)] ?? 'drop');
}

/** What settle-member.lua and dead-letter-member.lua did to a member's group. */
export type MemberOutcome = 'nothing' | 'written' | 'group_ready' | 'group_failed';
const MEMBER_OUTCOMES: readonly MemberOutcome[] = ['nothing', 'written', 'group_ready', 'group_failed'];

/** One member's result: its output as MessagePack bytes, or its error. */
export type MemberResult = { ok: true; output: Buffer } | { ok: false; code: string; message: string };

/**
 * Settle one group member (settle-member.lua): record its result in its group once, count it, mark
 * the group ready when it was the last, acknowledge and delete its entry.
 */
export async function settleMember(
  redis: Redis,
  member: { model: string; version: number; groupId: string; index: number; entryId: string; result: MemberResult; /** stream level, default 1 */ level?: number },
): Promise<MemberOutcome> {
  const { groupId, result } = member;
  const reply = await runScript<number>(redis, 'settle-member', [...groupKeys(groupId), keys.requests(member.model, member.version, member.level ?? 1), ...releaseKeys(groupId)], [
    CONSUMER_GROUP,
    member.entryId,
    member.index,
    result.ok ? 'succeeded' : 'failed',
    result.ok ? result.output : '',
    result.ok ? '' : result.code,
    result.ok ? '' : result.message,
    Date.now(),
    JOB_EVENTS_CHANNEL,
    groupId,
  ]);
  return MEMBER_OUTCOMES[Number(reply)] ?? 'nothing';
}

/** Move a poison member to the dead-letter stream and fail it in its group (dead-letter-member.lua). */
export async function deadLetterMember(
  redis: Redis,
  letter: { model: string; version: number; groupId: string; index: number; entryId: string; deliveries: number; message: string; /** stream level, default 1 */ level?: number },
): Promise<MemberOutcome> {
  const { model, version, groupId } = letter;
  const reply = await runScript<number>(redis, 'dead-letter-member', [
    ...groupKeys(groupId), keys.requests(model, version, letter.level ?? 1), keys.deadLetter(model, version), ...releaseKeys(groupId),
  ], [
    CONSUMER_GROUP, letter.entryId, letter.deliveries, letter.index, Date.now(), JOB_EVENTS_CHANNEL, groupId, letter.message,
  ]);
  return MEMBER_OUTCOMES[Number(reply)] ?? 'nothing';
}

/**
 * Cancel a group (group-cancel.lua): the members still queued are dropped without inference.
 * @returns 'cancelled', 'finished' (already terminal) or 'missing'.
 */
export async function groupCancel(redis: Redis, groupId: string, message: string): Promise<'cancelled' | 'finished' | 'missing'> {
  const outcome = await runScript<number>(redis, 'group-cancel', [...groupKeys(groupId), ...releaseKeys(groupId)], [Date.now(), JOB_EVENTS_CHANNEL, groupId, message]);
  return outcome === 1 ? 'cancelled' : outcome === 0 ? 'finished' : 'missing';
}

/** A reduce's outcome, as group-finish.lua writes it. */
export type GroupOutcome =
  | { status: 'succeeded'; /** MessagePack */ output: Buffer; /** MessagePack array of the members left out, or '' */ failed_indexes: Buffer | '' }
  | { status: 'failed'; code: string; message: string };

/** Write a group's outcome (group-finish.lua). @returns true when it wrote (the group was reducing). */
export async function groupFinish(redis: Redis, groupId: string, outcome: GroupOutcome): Promise<boolean> {
  const ok = outcome.status === 'succeeded';
  const written = await runScript<number>(redis, 'group-finish', [...groupKeys(groupId), ...releaseKeys(groupId)], [
    outcome.status,
    ok ? outcome.output : '',
    ok ? outcome.failed_indexes : '',
    ok ? '' : outcome.code,
    ok ? '' : outcome.message,
    Date.now(),
    JOB_EVENTS_CHANNEL,
    groupId,
  ]);
  return Number(written) === 1;
}
