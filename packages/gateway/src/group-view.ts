import {
  decode,
  GROUP_STATUSES,
  InferlineError,
  keys,
  ON_ITEM_ERROR,
  REDUCERS,
  type GroupStatus,
  type GroupView,
  type OnItemError,
  type Redis,
  type ReducerName,
} from '@inferline/shared';
import { toJson } from './job-view.ts';

/** Group states after which nothing changes. */
export const TERMINAL_GROUP_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

/** Fields of a group record that make its progress view (everything but the output). */
const PROGRESS_FIELDS = [
  'id', 'model', 'version', 'reduce', 'output_name', 'on_item_error', 'status', 'size', 'completed', 'failed', 'created_at', 'finished_at',
  'error_code', 'error_message',
] as const;

/** `member output name` as stored when the reducer reads whole outputs (`collect` without `output`). */
export const WHOLE_OUTPUT = '*';

/**
 * Build the API view of a group from its record (fields written by group-add.lua, settle-member.lua,
 * group-finish.lua, group-cancel.lua). Returns undefined for an empty record (no such group, or
 * expired). `output` (MessagePack) is decoded and made JSON-ready as job outputs are: a PNG becomes
 * `{"b64": ...}`.
 */
export function toGroupView(record: Partial<Record<string, Buffer | null>>): GroupView | undefined {
  const text = (field: string): string | undefined => record[field]?.toString();
  const id = text('id');
  if (id === undefined) return undefined;
  const pick = <T extends string>(values: readonly T[], value: string | undefined, fallback: T): T =>
    values.includes(value as T) ? (value as T) : fallback;
  const view: GroupView = {
    id,
    model: text('model') ?? '',
    version: Number(text('version') ?? 0),
    reduce: pick<ReducerName>(REDUCERS, text('reduce'), 'collect'),
    on_item_error: pick<OnItemError>(ON_ITEM_ERROR, text('on_item_error'), 'fail'),
    status: pick<GroupStatus>(GROUP_STATUSES, text('status'), 'open'),
    size: Number(text('size') ?? 0),
    completed: Number(text('completed') ?? 0),
    failed: Number(text('failed') ?? 0),
    created_at: new Date(Number(text('created_at') ?? 0)).toISOString(),
  };
  const outputName = text('output_name');
  if (outputName && outputName !== WHOLE_OUTPUT) view.output_name = outputName;
  const finishedAt = text('finished_at');
  if (finishedAt) view.finished_at = new Date(Number(finishedAt)).toISOString();
  const output = record.output;
  if (view.status === 'succeeded' && output && output.length > 0) view.output = toJson(decode(output));
  const failedIndexes = record.failed_indexes;
  if (failedIndexes && failedIndexes.length > 0) view.failed_indexes = decode<number[]>(failedIndexes);
  const code = text('error_code');
  if (code) view.error = { code, message: text('error_message') ?? '' };
  return view;
}

/**
 * Read one group's view: the whole record, or with `progress` only the counters and state (no output,
 * so a progress event never carries a large reduced output).
 * @throws InferlineError `group_not_found` when the record does not exist (never created, or expired
 *   `result_ttl_s` after it finished).
 */
export async function readGroup(redis: Redis, groupId: string, progress = false): Promise<GroupView> {
  let record: Partial<Record<string, Buffer | null>>;
  if (progress) {
    const values = await redis.hmgetBuffer(keys.group(groupId), ...PROGRESS_FIELDS);
    record = Object.fromEntries(PROGRESS_FIELDS.map((field, i) => [field, values[i] ?? null]));
  } else {
    record = await redis.hgetallBuffer(keys.group(groupId));
  }
  const view = toGroupView(record);
  if (!view) throw new InferlineError('group_not_found', `group "${groupId}" does not exist or has expired`);
  return view;
}
