import { decode } from './codec.ts';
import type { JobRecord } from './protocol/records.ts';
import { GROUP_STATUSES, JOB_STATUSES, ON_ITEM_ERROR, REDUCERS, type GroupStatus, type GroupView, type JobStatus, type OnItemError, type ReducerName } from './schemas.ts';

/**
 * The API views of job and group records, as `GET /v1/jobs/:id` and `GET /v1/groups/:id` show them:
 * built here, in shared, because the gateway answers them and the aggregator POSTs them to callback
 * URLs.
 */

/** A record's status as the API shows it (an unknown value reads as `queued`). */
export function jobViewStatus(record: JobRecord): JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(record.status) ? (record.status as JobStatus) : 'queued';
}

/**
 * The same view as the gateway's `toJobView`, as JSON bytes, with the stored output spliced in as it is: the
 * gateway neither parses nor re-serializes the output (a float32 embedding is already in its shortest
 * form). Field order and values equal `JSON.stringify(toJobView(record))`.
 */
export function jobViewJson(record: JobRecord): Buffer {
  const status = jobViewStatus(record);
  const head = `{"id":${JSON.stringify(record.id)},"model":${JSON.stringify(record.model)},"version":${record.version},"status":"${status}","created_at":"${new Date(record.created_at).toISOString()}"`;
  let tail = '';
  if (record.error) tail += `,"error":${JSON.stringify(record.error)}`;
  if (record.timings) tail += `,"timings":${JSON.stringify(record.timings)}`;
  tail += '}';
  if (status !== 'succeeded' || record.output === undefined) return Buffer.from(head + tail);
  return Buffer.concat([Buffer.from(`${head},"output":`), record.output, Buffer.from(tail)]);
}

/** A decoded output value made JSON-serializable: typed arrays → number arrays, bytes → `{"b64"}`. */
export function toJson(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { b64: value.toString('base64') };
  if (ArrayBuffer.isView(value)) {
    if (value instanceof DataView) return { b64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
    if (value instanceof BigInt64Array || value instanceof BigUint64Array) return Array.from(value, Number);
    return Array.from(value as unknown as ArrayLike<number>);
  }
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toJson(v)]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
    return out;
  }
  return value;
}

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

