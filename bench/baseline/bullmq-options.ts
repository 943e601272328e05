import type { ConnectionOptions, JobsOptions } from 'bullmq';

/**
 * Completed jobs BullMQ keeps (then trims the oldest). Not `true` (remove at once): a job removed
 * before `waitUntilFinished` checks it makes the wait fail with "Missing key", so hand-built gateways
 * keep a window of recent ones; this is far more than the requests in flight.
 */
const KEEP_COMPLETED_JOBS = 1_000;
/** Failed jobs BullMQ keeps. */
const KEEP_FAILED_JOBS = 1_000;

/** Options of every job the baseline gateway adds. */
export const JOB_OPTIONS: JobsOptions = { removeOnComplete: KEEP_COMPLETED_JOBS, removeOnFail: KEEP_FAILED_JOBS };

/** Jobs one baseline worker process runs at a time: one, the forward pass is synchronous. */
export const WORKER_CONCURRENCY = 1;

/**
 * BullMQ connection options for a `redis://host:port` URL. `maxRetriesPerRequest: null` is what
 * BullMQ requires for its blocking connections.
 */
export function bullmqConnection(redisUrl: string): ConnectionOptions {
  const url = new URL(redisUrl);
  return { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
}
