import { Queue } from 'bullmq';
import { isCluster, type Redis } from './redis.ts';
import { BULLMQ_PREFIX, REDUCE_QUEUE } from './keys.ts';

/** Data of a job on the BullMQ queue {@link REDUCE_QUEUE}: the group to reduce. */
export interface ReduceJobData {
  group: string;
}

/** Retry policy of reduce jobs (settings `reduce_attempts`, `reduce_backoff_ms`). */
export interface ReduceRetry {
  reduce_attempts: number;
  reduce_backoff_ms: number;
}

/**
 * The BullMQ queue `reduce` (https://docs.bullmq.io/guide/queues), on a connection of its own, opened
 * with the options of `connection` (its server, credentials and retry policy; named
 * `<connection name>:bullmq`); the queue owns it and `close()` closes it. On a Redis Cluster the
 * connection is `connection.duplicate()` (BullMQ opens only single-server connections from options),
 * closed after the queue.
 *
 * Not on `connection` itself: BullMQ defines its ~50 Lua scripts on the connection it is given, and
 * ioredis copies every script defined on a connection onto each pipeline it makes, so each
 * auto-pipelined write of a hot-path command connection cost about 87 µs instead of 9.
 *
 * Its offline queue is on even when `connection` fails fast (the gateway's): BullMQ sends its own
 * start-up commands as soon as the queue exists, and a fail-fast connection that is not connected yet
 * rejects them, which BullMQ leaves as an unhandled rejection. An add while Redis is away still fails
 * after `maxRetriesPerRequest` reconnect attempts (the group stays in the ready set for the sweep).
 *
 * BullMQ re-emits the connection's errors on the queue, and an `error` event without a listener would
 * crash the process: `onError` receives them (the connection's owner already logs and rides them out).
 */
export function createReduceQueue(connection: Redis, onError: (error: Error) => void): Queue<ReduceJobData> {
  if (isCluster(connection)) {
    const own = connection.duplicate([], { enableOfflineQueue: true });
    own.on('error', onError);
    const queue = new Queue<ReduceJobData>(REDUCE_QUEUE, { connection: own, prefix: BULLMQ_PREFIX });
    queue.on('error', onError);
    const close = queue.close.bind(queue);
    queue.close = async (): Promise<void> => {
      await close();
      await own.quit().catch(() => own.disconnect());
    };
    return queue;
  }
  const options = { ...connection.options, connectionName: `${connection.options.connectionName ?? 'inferline'}:bullmq`, enableOfflineQueue: true };
  const queue = new Queue<ReduceJobData>(REDUCE_QUEUE, { connection: options, prefix: BULLMQ_PREFIX });
  queue.on('error', onError);
  return queue;
}

/**
 * Close a BullMQ queue made by {@link createReduceQueue} (or `createCallbacksQueue`) once its
 * connection finished starting: BullMQ's start-up commands (version check) still in flight when its
 * own connection closes are rejected with "Connection is closed." where nobody handles them (an
 * unhandled rejection). The wait is bounded by CLOSE_READY_WAIT_MS: with Redis away the start-up
 * neither finishes nor fails while the connection keeps retrying.
 */
export async function closeQueue(queue: Queue): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_READY_WAIT_MS);
    timer.unref();
  });
  await Promise.race([queue.waitUntilReady().then(() => undefined, () => undefined), bound]);
  clearTimeout(timer);
  await queue.close();
}

/** Longest {@link closeQueue} waits for a queue's connection to finish starting, ms. */
const CLOSE_READY_WAIT_MS = 1_000;

/**
 * Add the reduce job of a group whose members all settled. The job id is the group id, so adding it
 * again while it exists is a no-op (https://docs.bullmq.io/guide/jobs/job-ids): the worker whose settle
 * finished the group, the gateway whose close did, and the aggregator's sweep may all add it safely.
 * Finished jobs are removed; the outcome lives in the group record.
 * @throws Error when Redis fails (the group stays in the ready set and the sweep adds it later).
 */
export async function enqueueReduce(queue: Queue<ReduceJobData>, groupId: string, retry: ReduceRetry): Promise<void> {
  await queue.add(REDUCE_QUEUE, { group: groupId }, {
    jobId: groupId,
    attempts: retry.reduce_attempts,
    backoff: { type: 'exponential', delay: retry.reduce_backoff_ms },
    removeOnComplete: true,
    removeOnFail: true,
  });
}
