import { InferlineError, jobViewJson, jobViewStatus, keys, parseJobRecord, type JobRecord, type JobView, type Redis } from '@inferline/shared';

export { jobViewJson, toJson } from '@inferline/shared';

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
    status: jobViewStatus(record),
    created_at: new Date(record.created_at).toISOString(),
  };
  if (view.status === 'succeeded' && record.output !== undefined) view.output = JSON.parse(record.output.toString()) as Record<string, unknown>;
  if (record.error) view.error = record.error;
  if (record.timings) view.timings = record.timings;
  return view;
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
