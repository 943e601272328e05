import type { Redis } from 'ioredis';
import {
  CONSUMER_GROUP,
  JOB_EVENTS_CHANNEL,
  encode,
  keys,
  outputToJson,
  runScript,
  settleJobs,
  type BatchFigures,
  type JobEntry,
  type MemberEntry,
  type StreamEntry,
} from '@inferline/shared';
import type { ItemResult } from './predict-with-split.ts';

/** One request ready to be settled, with the time it waited before its batch started (ms). */
export interface Settlement {
  entry: StreamEntry;
  result: ItemResult;
  queue_ms: number;
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
 * Settle a batch of one model version: its single jobs in one settle.lua call (output as JSON text,
 * `outputToJson`), each group member through settle-member.lua (its output as MessagePack, recorded
 * in its group once, the group's `remaining` counter decremented on that first settle only). The
 * calls go out together (the connection auto-pipelines). Every script XACKs and XDELs its entries and
 * announces the new statuses.
 * @throws Error when Redis fails; the entries then stay pending and are reclaimed later.
 */
export async function settleBatch(redis: Redis, model: string, version: number, batch: BatchFigures, settlements: readonly Settlement[]): Promise<SettleOutcome> {
  const jobs: { entry: JobEntry; result: ItemResult; queue_ms: number }[] = [];
  const members: { entry: MemberEntry; result: ItemResult }[] = [];
  for (const s of settlements) {
    if (s.entry.kind === 'job') jobs.push({ entry: s.entry, result: s.result, queue_ms: s.queue_ms });
    else members.push({ entry: s.entry, result: s.result });
  }
  const stream = keys.requests(model, version);
  const finishedAt = Date.now();
  const [jobsWritten, memberOutcomes] = await Promise.all([
    settleJobs(
      redis,
      model,
      version,
      batch,
      jobs.map(({ entry, result, queue_ms }) => ({
        jobId: entry.jobId,
        entryId: entry.entryId,
        queue_ms,
        result: result.ok ? { ok: true, output: outputToJson(result.output) } : result,
      })),
    ),
    Promise.all(
      members.map(({ entry, result }) =>
        runScript<number>(redis, 'settle-member', [...groupScriptKeys(entry.groupId), stream], [
          CONSUMER_GROUP,
          entry.entryId,
          entry.index,
          result.ok ? 'succeeded' : 'failed',
          result.ok ? encode(result.output) : '',
          result.ok ? '' : result.code,
          result.ok ? '' : result.message,
          finishedAt,
          JOB_EVENTS_CHANNEL,
          entry.groupId,
        ]),
      ),
    ),
  ]);
  let written = jobsWritten.filter(Boolean).length;
  const readyGroups: string[] = [];
  memberOutcomes.forEach((reply, i) => {
    const outcome = Number(reply);
    if (outcome >= MEMBER_WRITTEN) written++;
    const groupId = members[i]?.entry.groupId;
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
