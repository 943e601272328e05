import { InferlineError, keys, toGroupView, type GroupView, type Redis } from '@inferline/shared';

export { toGroupView, WHOLE_OUTPUT } from '@inferline/shared';

/** Group states after which nothing changes. */
export const TERMINAL_GROUP_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

/** Fields of a group record that make its progress view (everything but the output). */
const PROGRESS_FIELDS = [
  'id', 'model', 'version', 'reduce', 'output_name', 'on_item_error', 'status', 'size', 'completed', 'failed', 'created_at', 'finished_at',
  'error_code', 'error_message',
] as const;

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
