/**
 * The protocol's record shapes, written once: the request stream entry (a single job or a group member,
 * exactly one) and the job hash. The Lua scripts write these fields (enqueue.lua, group-add.lua,
 * start.lua, settle.lua, dead-letter.lua); this file is the one place that reads them.
 */
import type { JobTimings } from '../schemas.ts';

/** The byte of a tab, which separates the fields of a job event. */
const TAB = 0x09;

/** A stream entry of a single job (written by enqueue.lua: fields `job`, `input`). */
export interface JobEntry {
  kind: 'job';
  /** Stream entry id (`<ms>-<seq>`); its first part is the time the gateway accepted the request. */
  entryId: string;
  jobId: string;
  /** MessagePack bytes of the request input. */
  input: Buffer;
  /** Priority level of the stream it was read from (1 = highest; `keys.requests`). */
  level: number;
}

/** A stream entry of an aggregation group member (written by group-add.lua: `group`, `index`, `input`). */
export interface MemberEntry {
  kind: 'member';
  entryId: string;
  groupId: string;
  /** The member's index in its group (≥ 0). */
  index: number;
  input: Buffer;
  /** Priority level of the stream it was read from (1 = highest). */
  level: number;
}

/** One request as read from a model version's stream. */
export type StreamEntry = JobEntry | MemberEntry;

/** Reply shape of XREADGROUP / XRANGE / XAUTOCLAIM entries read as buffers: `[id, [field, value, ...]]`. */
export type RawEntry = [Buffer, Buffer[]];

/**
 * Parse a raw stream entry read from the stream of priority `level` (default 1). Returns null for an
 * entry that is neither a job nor a member (never written by the gateway; the worker acknowledges and
 * drops it).
 */
export function parseEntry([id, fields]: RawEntry, level = 1): StreamEntry | null {
  let jobId: string | undefined;
  let groupId: string | undefined;
  let index: number | undefined;
  let input: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]?.toString();
    const value = fields[i + 1];
    if (name === 'job') jobId = value?.toString();
    else if (name === 'input') input = value;
    else if (name === 'group') groupId = value?.toString();
    else if (name === 'index') index = Number(value?.toString());
  }
  const entryId = id.toString();
  if (jobId !== undefined) return { kind: 'job', entryId, jobId, input: input ?? Buffer.alloc(0), level };
  if (groupId !== undefined && index !== undefined && Number.isInteger(index) && index >= 0) {
    return { kind: 'member', entryId, groupId, index, input: input ?? Buffer.alloc(0), level };
  }
  return null;
}

/** How logs name a request: its job id, or `<group id>/<index>` for a group member. */
export function requestLabel(entry: StreamEntry): string {
  return entry.kind === 'member' ? `${entry.groupId}/${entry.index}` : entry.jobId;
}

/** Time (ms since epoch) the gateway accepted the request: the first part of its stream entry id. */
export function acceptedAt(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf('-')));
}

/**
 * A job hash (`keys.job(id)`) as HGETALL returns it with buffers. Fields, by the script that writes them:
 * - enqueue.lua: `id`, `model`, `version`, `status` ('queued'), `created_at` (ms), `entry` (stream entry id),
 *   `priority` (its stream's level), `deadline_at` (ms, when it has a `timeout_ms`), and when given
 *   `tenant` (the owner, api-keys.ts) and `callback_url` (callbacks.ts);
 * - cancel.lua: `status` 'cancelled', `finished_at`, `error_code` 'cancelled', `error_message`;
 * - start.lua: `status` ('running'), `started_at` (ms);
 * - settle.lua: `status` ('succeeded' | 'failed'), `finished_at`, `queue_ms`, `load_ms` (when it waited for a load), `inference_ms`,
 *   `batch_size`, `batch_id`, and `output` (JSON text, see `json-output.ts`) or `error_code` +
 *   `error_message`;
 * - dead-letter.lua: `status` 'failed', `finished_at`, `error_code` 'poison', `error_message`.
 */
export type RawJobRecord = Record<string, Buffer>;

/** A job hash read into typed fields ({@link parseJobRecord}). */
export interface JobRecord {
  id: string;
  model: string;
  version: number;
  status: string;
  /** ms since epoch */
  created_at: number;
  /** The output as JSON bytes (UTF-8), when succeeded. */
  output?: Buffer;
  error?: { code: string; message: string };
  /** Present once a result was written by settle.lua. */
  timings?: JobTimings;
}

/**
 * The record a terminal event of settle.lua describes (`<status>` and the detail after it:
 * `<queue_ms>\t<load_ms>\t<inference_ms>\t<batch_size>\t<batch_id>\t<output or code\tmessage>`), merged into
 * what was known of the job before; undefined when the detail is not of that shape.
 * @param detail as text, or as the UTF-8 bytes the subscriber received (the output is then taken as
 *   bytes, without decoding it; it is copied, so the caller's buffer may be reused)
 */
export function settledRecord(known: JobRecord, status: string, detail: string | Buffer): JobRecord | undefined {
  const fromText = typeof detail === 'string';
  const bytes = fromText ? Buffer.from(detail) : detail;
  const fields: string[] = [];
  let at = 0;
  for (let i = 0; i < 5; i++) {
    const tab = bytes.indexOf(TAB, at);
    if (tab < 0) return undefined;
    fields.push(bytes.toString('utf8', at, tab));
    at = tab + 1;
  }
  const record: JobRecord = {
    ...known,
    status,
    timings: {
      queue_ms: Number(fields[0]),
      ...(fields[1] ? { load_ms: Number(fields[1]) } : {}),
      inference_ms: Number(fields[2]),
      batch_size: Number(fields[3]),
      batch_id: fields[4] ?? '',
    },
  };
  if (status === 'succeeded') {
    const output = bytes.subarray(at);
    record.output = fromText ? output : Buffer.from(output);
  } else {
    const value = bytes.toString('utf8', at);
    const tab = value.indexOf('\t');
    record.error = { code: tab < 0 ? value : value.slice(0, tab), message: tab < 0 ? '' : value.slice(tab + 1) };
  }
  return record;
}

/** Read a job hash; undefined for an empty one (no such job, or expired). */
export function parseJobRecord(record: RawJobRecord): JobRecord | undefined {
  const id = record.id?.toString();
  if (id === undefined) return undefined;
  const parsed: JobRecord = {
    id,
    model: record.model?.toString() ?? '',
    version: Number(record.version?.toString() ?? 0),
    status: record.status?.toString() ?? 'queued',
    created_at: Number(record.created_at?.toString() ?? 0),
  };
  if (record.output && record.output.length > 0) parsed.output = record.output;
  if (record.error_code) parsed.error = { code: record.error_code.toString(), message: record.error_message?.toString() ?? '' };
  if (record.queue_ms && record.inference_ms && record.batch_size) {
    parsed.timings = {
      queue_ms: Number(record.queue_ms.toString()),
      ...(record.load_ms ? { load_ms: Number(record.load_ms.toString()) } : {}),
      inference_ms: Number(record.inference_ms.toString()),
      batch_size: Number(record.batch_size.toString()),
      batch_id: record.batch_id?.toString() ?? '',
    };
  }
  return parsed;
}
