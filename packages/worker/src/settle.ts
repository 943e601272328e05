import type { Redis } from 'ioredis';
import { CONSUMER_GROUP, JOB_EVENTS_CHANNEL, encode, keys, runScript } from '@inferline/shared';
import type { ItemResult } from './predict-with-split.ts';
import type { StreamEntry } from './stream-entry.ts';

/** Per-request figures written with its result, ms. */
export interface SettleTimings {
  queue_ms: number;
  inference_ms: number;
  batch_size: number;
  batch_id: string;
}

/** One request ready to be settled. */
export interface Settlement {
  entry: StreamEntry;
  result: ItemResult;
  timings: SettleTimings;
}

/**
 * Settle a batch in one round trip: one `settle.lua` call per request, pipelined. Each call writes the
 * result only if the job is not yet terminal, then XACKs and XDELs the entry and publishes the event.
 * Returns how many results this call wrote (redeliveries of already settled requests write nothing).
 * @throws Error when Redis fails; the entries then stay pending and are reclaimed later.
 */
export async function settleBatch(redis: Redis, stream: string, resultTtlS: number, settlements: readonly Settlement[]): Promise<number> {
  if (settlements.length === 0) return 0;
  const pipeline = redis.pipeline();
  const finishedAt = Date.now();
  for (const { entry, result, timings } of settlements) {
    void runScript(pipeline, 'settle', [keys.job(entry.jobId), stream], [
      CONSUMER_GROUP,
      entry.entryId,
      result.ok ? 'succeeded' : 'failed',
      result.ok ? encode(result.output) : '',
      result.ok ? '' : result.code,
      result.ok ? '' : result.message,
      finishedAt,
      timings.queue_ms.toFixed(3),
      timings.inference_ms.toFixed(3),
      timings.batch_size,
      timings.batch_id,
      resultTtlS,
      JOB_EVENTS_CHANNEL,
      entry.jobId,
    ]);
  }
  const replies = (await pipeline.exec()) ?? [];
  let written = 0;
  for (const [error, reply] of replies) {
    if (error) throw error;
    written += Number(reply);
  }
  return written;
}

/**
 * Acknowledge and delete stream entries that need no result: their job is already terminal or gone, or
 * the entry has no job id (never written by the gateway).
 */
export async function dropEntries(redis: Redis, stream: string, entryIds: readonly string[]): Promise<void> {
  if (entryIds.length === 0) return;
  await redis.multi().xack(stream, CONSUMER_GROUP, ...entryIds).xdel(stream, ...entryIds).exec();
}
