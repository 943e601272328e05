import { InferlineError, TERMINAL_STATUSES, keys, parseJobRecord, settledRecord, type JobRecord, type Redis } from '@inferline/shared';
import type { JobWatch } from './job-events.ts';

/**
 * Wait until every job of `watch` is terminal, or `waitMs` passed, or `signal` aborted; answer their
 * current records in the order of `watch.jobIds`.
 *
 * The watch must exist before the jobs' records are read (it is, since the caller created it): the
 * records are read once now; a terminal event of settle.lua carries the result, which completes the
 * record without a read; a job is read again only on a terminal event without one (dead-letter), after
 * a re-subscription (`resync`), and once at the deadline. No Redis polling in between. On abort the last
 * records read are returned without another read.
 *
 * @param known records the caller already holds for these ids (e.g. just stored: `queued`), which
 *   spares the first read
 * @throws InferlineError `job_not_found` when a record does not exist.
 */
export async function waitForJobs(redis: Redis, watch: JobWatch, waitMs: number, signal?: AbortSignal, known?: JobRecord[]): Promise<JobRecord[]> {
  const ids = watch.jobIds;
  const records = known ?? (await readRecords(redis, ids));
  const position = new Map(ids.map((id, i) => [id, i]));
  const deadline = Date.now() + waitMs;
  let open = ids.filter((_, i) => !TERMINAL_STATUSES.has(records[i]?.status ?? ''));

  while (open.length > 0) {
    const event = await watch.next(deadline - Date.now(), signal);
    if ('closed' in event) break;
    if ('status' in event && !TERMINAL_STATUSES.has(event.status)) continue;
    // A settle event carries the result: no need to read the record back.
    const at = 'jobId' in event ? position.get(event.jobId) : undefined;
    const known = at === undefined ? undefined : records[at];
    const settled = known && 'detail' in event && event.detail !== undefined ? settledRecord(known, event.status, event.detail) : undefined;
    if (settled && at !== undefined) {
      records[at] = settled;
      open = open.filter((id) => id !== settled.id);
      continue;
    }
    const reread = 'jobId' in event ? [event.jobId] : open;
    const fresh = await readRecords(redis, reread);
    reread.forEach((id, i) => {
      const at = position.get(id);
      const record = fresh[i];
      if (at !== undefined && record) records[at] = record;
    });
    if ('timeout' in event) break;
    open = open.filter((id) => !TERMINAL_STATUSES.has(records[position.get(id) ?? -1]?.status ?? ''));
  }
  return records;
}

/**
 * Read several job records; the commands go out together (the connection auto-pipelines).
 * @throws InferlineError `job_not_found`.
 */
async function readRecords(redis: Redis, ids: readonly string[]): Promise<JobRecord[]> {
  const raw = await Promise.all(ids.map((id) => redis.hgetallBuffer(keys.job(id))));
  return ids.map((id, i) => {
    const record = parseJobRecord(raw[i] ?? {});
    if (!record) throw new InferlineError('job_not_found', `job "${id}" does not exist or has expired`);
    return record;
  });
}
