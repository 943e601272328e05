import { TERMINAL_STATUSES, settledRecord, type JobRecord, type Redis } from '@inferline/shared';
import type { JobWatch } from './job-events.ts';
import { readJobRecord } from './job-view.ts';
import { whenRedisReady } from './redis-ready.ts';

/**
 * Wait until every job of `watch` is terminal, or `waitMs` passed, or `signal` aborted, or the watch was
 * closed (`closeWithRequest`: the client went away, the gateway shuts down); answer their
 * current records in the order of `watch.jobIds`.
 *
 * The watch must exist before the jobs' records are read (it is, since the caller created it): the
 * records are read once now; a terminal event of settle.lua carries the result, which completes the
 * record without a read; a job is read again only on a terminal event without one (dead-letter), after
 * a re-subscription (`resync`), and once at the deadline. No Redis polling in between. On abort the last
 * records read are returned without another read. A re-read that finds the command connection still
 * reconnecting (after a Redis outage) waits for it, up to the deadline.
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
  const pending = (): string[] => ids.filter((_, i) => !TERMINAL_STATUSES.has(records[i]?.status ?? ''));

  for (let open = pending(); open.length > 0; open = pending()) {
    const event = await watch.next(deadline - Date.now(), signal);
    if ('closed' in event) break;
    if ('status' in event && !TERMINAL_STATUSES.has(event.status)) continue;
    // A settle event carries the result: no need to read the record back.
    const at = 'jobId' in event ? position.get(event.jobId) : undefined;
    const before = at === undefined ? undefined : records[at];
    const settled = before && 'detail' in event && event.detail !== undefined ? settledRecord(before, event.status, event.detail) : undefined;
    if (settled && at !== undefined) {
      records[at] = settled;
      continue;
    }
    const reread = 'jobId' in event ? [event.jobId] : open;
    // After a re-subscription the command connection may still be reconnecting: wait for it.
    const fresh = await whenRedisReady(redis, () => readRecords(redis, reread), deadline, signal ?? watch.signal);
    reread.forEach((id, i) => {
      const index = position.get(id);
      const record = fresh[i];
      if (index !== undefined && record) records[index] = record;
    });
    if ('timeout' in event) break;
  }
  return records;
}

/**
 * Read several job records ({@link readJobRecord}); the commands go out together (the connection
 * auto-pipelines). @throws InferlineError `job_not_found`.
 */
function readRecords(redis: Redis, ids: readonly string[]): Promise<JobRecord[]> {
  return Promise.all(ids.map((id) => readJobRecord(redis, id)));
}
