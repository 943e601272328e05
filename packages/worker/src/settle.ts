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

/** The keys settle-member.lua and dead-letter-member.lua take first, for one group. */
export function groupScriptKeys(groupId: string): string[] {
  return [keys.group(groupId), keys.groupResults(groupId), keys.groupErrors(groupId), keys.groupInputs(groupId), keys.groupsReady()];
}

/** Replies of settle-member.lua / dead-letter-member.lua (see their headers). */
export const MEMBER_WRITTEN = 1;
export const MEMBER_GROUP_READY = 2;
export const MEMBER_GROUP_FAILED = 3;

/** What {@link settleBatch} did. */
export interface SettleOutcome {
  /** Results this call wrote (redeliveries of already settled requests write nothing). */
  written: number;
  /** Groups whose last member this call settled: their reduce job is to be added. */
  readyGroups: string[];
}

/**
 * Settle a batch in one round trip: per request one script, pipelined. A single job goes through
 * `settle.lua` (result written unless the job is already terminal); a group member through
 * `settle-member.lua` (result recorded in its group once, the group's `remaining` counter decremented
 * on that first settle only). Both then XACK and XDEL the entry and publish the event.
 * @throws Error when Redis fails; the entries then stay pending and are reclaimed later.
 */
export async function settleBatch(redis: Redis, stream: string, resultTtlS: number, settlements: readonly Settlement[]): Promise<SettleOutcome> {
  if (settlements.length === 0) return { written: 0, readyGroups: [] };
  const pipeline = redis.pipeline();
  const finishedAt = Date.now();
  for (const { entry, result, timings } of settlements) {
    const status = result.ok ? 'succeeded' : 'failed';
    const output = result.ok ? encode(result.output) : '';
    const code = result.ok ? '' : result.code;
    const message = result.ok ? '' : result.message;
    if (entry.member) {
      const { groupId, index } = entry.member;
      void runScript(pipeline, 'settle-member', [...groupScriptKeys(groupId), stream], [
        CONSUMER_GROUP, entry.entryId, index, status, output, code, message, finishedAt, JOB_EVENTS_CHANNEL, groupId,
      ]);
      continue;
    }
    const jobId = entry.jobId ?? '';
    void runScript(pipeline, 'settle', [keys.job(jobId), stream], [
      CONSUMER_GROUP,
      entry.entryId,
      status,
      output,
      code,
      message,
      finishedAt,
      timings.queue_ms.toFixed(3),
      timings.inference_ms.toFixed(3),
      timings.batch_size,
      timings.batch_id,
      resultTtlS,
      JOB_EVENTS_CHANNEL,
      jobId,
    ]);
  }
  const replies = (await pipeline.exec()) ?? [];
  let written = 0;
  const readyGroups: string[] = [];
  replies.forEach(([error, reply], i) => {
    if (error) throw error;
    const outcome = Number(reply);
    if (outcome >= MEMBER_WRITTEN) written++;
    const groupId = settlements[i]?.entry.member?.groupId;
    if (outcome === MEMBER_GROUP_READY && groupId) readyGroups.push(groupId);
  });
  return { written, readyGroups };
}

/**
 * Acknowledge and delete stream entries that need no result: their job is already terminal or gone,
 * their group is finished or they were settled already, or the entry is neither a job nor a member
 * (never written by the gateway).
 */
export async function dropEntries(redis: Redis, stream: string, entryIds: readonly string[]): Promise<void> {
  if (entryIds.length === 0) return;
  await redis.multi().xack(stream, CONSUMER_GROUP, ...entryIds).xdel(stream, ...entryIds).exec();
}
