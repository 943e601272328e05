import { InferlineError, JOB_STATUSES, keys, parseJobRecord, type JobRecord, type JobStatus, type JobView, type Redis } from '@inferline/shared';

/** A record's status as the API shows it (an unknown value reads as `queued`). */
function viewStatus(record: JobRecord): JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(record.status) ? (record.status as JobStatus) : 'queued';
}

/**
 * The API view of a job record (see `protocol/records.ts`): `output` (JSON text written by the worker)
 * parsed, `timings` once a result was written, `error` when the job failed. For the compatibility
 * routes and the event stream; the native routes send {@link jobViewJson} instead.
 */
export function toJobView(record: JobRecord): JobView {
  const view: JobView = {
    id: record.id,
    model: record.model,
    version: record.version,
    status: viewStatus(record),
    created_at: new Date(record.created_at).toISOString(),
  };
  if (view.status === 'succeeded' && record.output !== undefined) view.output = JSON.parse(record.output.toString()) as Record<string, unknown>;
  if (record.error) view.error = record.error;
  if (record.timings) view.timings = record.timings;
  return view;
}

/**
 * The same view as {@link toJobView}, as JSON bytes, with the stored output spliced in as it is: the
 * gateway neither parses nor re-serializes the output (a float32 embedding is already in its shortest
 * form). Field order and values equal `JSON.stringify(toJobView(record))`.
 */
export function jobViewJson(record: JobRecord): Buffer {
  const status = viewStatus(record);
  const head = `{"id":${JSON.stringify(record.id)},"model":${JSON.stringify(record.model)},"version":${record.version},"status":"${status}","created_at":"${new Date(record.created_at).toISOString()}"`;
  let tail = '';
  if (record.error) tail += `,"error":${JSON.stringify(record.error)}`;
  if (record.timings) tail += `,"timings":${JSON.stringify(record.timings)}`;
  tail += '}';
  if (status !== 'succeeded' || record.output === undefined) return Buffer.from(head + tail);
  return Buffer.concat([Buffer.from(`${head},"output":`), record.output, Buffer.from(tail)]);
}

/** `{"jobs":[...]}` of several records (the bulk form's reply), as JSON bytes. */
export function jobListJson(records: readonly JobRecord[]): Buffer {
  const parts: Buffer[] = [Buffer.from('{"jobs":[')];
  records.forEach((record, i) => {
    if (i > 0) parts.push(Buffer.from(','));
    parts.push(jobViewJson(record));
  });
  parts.push(Buffer.from(']}'));
  return Buffer.concat(parts);
}

/**
 * Read one job record.
 * @throws InferlineError `job_not_found` when it does not exist (never created, or expired
 *   `result_ttl_s` after it finished).
 */
export async function readJobRecord(redis: Redis, jobId: string): Promise<JobRecord> {
  const record = parseJobRecord(await redis.hgetallBuffer(keys.job(jobId)));
  if (!record) throw new InferlineError('job_not_found', `job "${jobId}" does not exist or has expired`);
  return record;
}

/** {@link readJobRecord} as its API view. @throws InferlineError `job_not_found`. */
export async function readJob(redis: Redis, jobId: string): Promise<JobView> {
  return toJobView(await readJobRecord(redis, jobId));
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

/** Content type of the replies sent as JSON bytes. */
const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Send JSON bytes as they are: fastify sends a Buffer without serializing it
 * (https://fastify.dev/docs/latest/Reference/Reply/#senddata), so the route's response schema does not
 * apply to it; the bytes come from {@link jobViewJson}, which follows `JobView`.
 */
export function sendJsonBytes<R extends { type(contentType: string): unknown }>(reply: R, text: Buffer): R {
  const typed = reply.type(JSON_TYPE) as { send(payload: Buffer): unknown };
  typed.send(text);
  return reply;
}
