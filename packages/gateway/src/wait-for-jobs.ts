import { InferlineError, TERMINAL_STATUSES, keys, type JobView, type Redis } from '@inferline/shared';
import type { JobWatch } from './job-events.ts';
import { toJobView } from './job-view.ts';

/**
 * Wait until every job of `watch` is terminal, or `waitMs` passed, or `signal` aborted; answer their
 * current views in the order of `watch.jobIds`.
 *
 * The watch must exist before the jobs' records are read (it is, since the caller created it): the
 * records are read once now, then only again for a job whose terminal event arrived, after a
 * re-subscription (`resync`), and once at the deadline. No Redis polling in between. On abort the last
 * views read are returned without another read.
 *
 * @throws InferlineError `job_not_found` when a record does not exist.
 */
export async function waitForJobs(redis: Redis, watch: JobWatch, waitMs: number, signal?: AbortSignal): Promise<JobView[]> {
  const ids = watch.jobIds;
  const views = await readViews(redis, ids);
  const position = new Map(ids.map((id, i) => [id, i]));
  const deadline = Date.now() + waitMs;
  const pending = (): string[] => ids.filter((_, i) => !TERMINAL_STATUSES.has(views[i]?.status ?? ''));

  for (let open = pending(); open.length > 0; open = pending()) {
    const event = await watch.next(deadline - Date.now(), signal);
    if ('closed' in event) break;
    if ('status' in event && !TERMINAL_STATUSES.has(event.status)) continue;
    const reread = 'jobId' in event ? [event.jobId] : open;
    const fresh = await readViews(redis, reread);
    reread.forEach((id, i) => {
      const at = position.get(id);
      const view = fresh[i];
      if (at !== undefined && view) views[at] = view;
    });
    if ('timeout' in event) break;
  }
  return views;
}

/** Read several job records in one round trip. @throws InferlineError `job_not_found`. */
async function readViews(redis: Redis, ids: readonly string[]): Promise<JobView[]> {
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.hgetallBuffer(keys.job(id));
  const results = (await pipeline.exec()) ?? [];
  return ids.map((id, i) => {
    const [error, record] = results[i] ?? [new Error('no reply'), undefined];
    if (error) throw error;
    const view = toJobView(record as Record<string, Buffer>);
    if (!view) throw new InferlineError('job_not_found', `job "${id}" does not exist or has expired`);
    return view;
  });
}
