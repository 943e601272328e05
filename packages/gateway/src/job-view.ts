import { decode, InferlineError, JOB_STATUSES, keys, type JobStatus, type JobView, type Redis } from '@inferline/shared';

/**
 * Build the API view of a job from its record as `HGETALL` returns it with buffers (fields written by
 * enqueue.lua, start.lua, settle.lua, dead-letter.lua). Returns undefined for an empty record (no such
 * job, or expired).
 *
 * `output` (MessagePack) is decoded and made JSON-ready: typed arrays become plain number arrays,
 * byte strings become `{"b64": ...}` (TF Serving's convention). `timings` appear once a result was
 * written; `error` when the job failed.
 */
export function toJobView(record: Record<string, Buffer>): JobView | undefined {
  const id = record.id?.toString();
  if (id === undefined) return undefined;
  const status = record.status?.toString() ?? 'queued';
  const view: JobView = {
    id,
    model: record.model?.toString() ?? '',
    version: Number(record.version?.toString() ?? 0),
    status: (JOB_STATUSES as readonly string[]).includes(status) ? (status as JobStatus) : 'queued',
    created_at: new Date(Number(record.created_at?.toString() ?? 0)).toISOString(),
  };
  if (view.status === 'succeeded' && record.output && record.output.length > 0) {
    view.output = toJson(decode(record.output)) as Record<string, unknown>;
  }
  if (record.error_code) {
    view.error = { code: record.error_code.toString(), message: record.error_message?.toString() ?? '' };
  }
  if (record.queue_ms && record.inference_ms && record.batch_size) {
    view.timings = {
      queue_ms: Number(record.queue_ms.toString()),
      inference_ms: Number(record.inference_ms.toString()),
      batch_size: Number(record.batch_size.toString()),
      batch_id: record.batch_id?.toString() ?? '',
    };
  }
  return view;
}

/**
 * Read one job's view.
 * @throws InferlineError `job_not_found` when the record does not exist (never created, or expired
 *   `result_ttl_s` after it finished).
 */
export async function readJob(redis: Redis, jobId: string): Promise<JobView> {
  const view = toJobView(await redis.hgetallBuffer(keys.job(jobId)));
  if (!view) throw new InferlineError('job_not_found', `job "${jobId}" does not exist or has expired`);
  return view;
}

/** A decoded output value made JSON-serializable (see {@link toJobView}). */
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
