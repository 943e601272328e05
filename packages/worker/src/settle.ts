import {
  CONSUMER_GROUP,
  keys,
  encode,
  modelShards,
  outputToJson,
  parseEntry,
  type RawEntry,
  settleJobs,
  settleMember,
  type BatchFigures,
  type JobEntry,
  type MemberEntry,
  type StreamEntry,
  type Redis,
} from '@inferline/shared';
import type { ItemResult } from './predict-with-split.ts';

/** One request ready to be settled, with the time it waited before its batch started (ms). */
export interface Settlement {
  entry: StreamEntry;
  result: ItemResult;
  queue_ms: number;
  /** Part of queue_ms it waited for its version to load, ms; absent when it did not. */
  load_ms?: number;
}

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
 * @param model the shard the batch was read from (`shardName`: the model's name for partition 0,
 *   whose streams also carry the group members)
 * @throws Error when Redis fails; the entries then stay pending and are reclaimed later.
 */
export async function settleBatch(redis: Redis, model: string, version: number, batch: BatchFigures, settlements: readonly Settlement[]): Promise<SettleOutcome> {
  const jobs: { entry: JobEntry; result: ItemResult; queue_ms: number; load_ms?: number }[] = [];
  // Each entry is acknowledged in its own level's stream (entry.level).
  const members: { entry: MemberEntry; result: ItemResult }[] = [];
  for (const s of settlements) {
    if (s.entry.kind === 'job') jobs.push({ entry: s.entry, result: s.result, queue_ms: s.queue_ms, ...(s.load_ms === undefined ? {} : { load_ms: s.load_ms }) });
    else members.push({ entry: s.entry, result: s.result });
  }
  const [jobsWritten, memberOutcomes] = await Promise.all([
    settleJobs(
      redis,
      model,
      version,
      batch,
      jobs.map(({ entry, result, queue_ms, load_ms }) => ({
        jobId: entry.jobId,
        entryId: entry.entryId,
        level: entry.level,
        queue_ms,
        ...(load_ms === undefined ? {} : { load_ms }),
        result: result.ok ? { ok: true, output: outputToJson(result.output) } : result,
      })),
    ),
    Promise.all(
      members.map(({ entry, result }) =>
        settleMember(redis, {
          model,
          version,
          groupId: entry.groupId,
          index: entry.index,
          entryId: entry.entryId,
          level: entry.level,
          result: result.ok ? { ok: true, output: encode(result.output) } : result,
        }),
      ),
    ),
  ]);
  let written = jobsWritten.filter(Boolean).length;
  const readyGroups: string[] = [];
  memberOutcomes.forEach((outcome, i) => {
    if (outcome !== 'nothing') written++;
    const groupId = members[i]?.entry.groupId;
    if (outcome === 'group_ready' && groupId) readyGroups.push(groupId);
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

/** Entries read per XRANGE by {@link failWaiting}. */
const FAIL_CHUNK = 256;

/**
 * Fail every request still in a version's stream, waiting or pending at any consumer, with `code`
 * (`version_unloaded` when the version left the repository or its policy, `model_unavailable` when it
 * cannot be loaded): its job or member is settled as failed, unless already terminal (settle.lua and
 * settle-member.lua write only a first result), and the entry is acknowledged and deleted.
 * @param target the version, and how long a failed record is kept (its model's `result_ttl_s`)
 * @returns how many results it wrote and the groups it made ready (their reduce job is to be added).
 * @throws Error when Redis fails; what is left is failed by a later call.
 */
export async function failWaiting(
  redis: Redis,
  target: {
    model: string;
    version: number;
    result_ttl_s: number;
    /** `priority_levels`: every level's stream is emptied; default 1 */
    levels?: number;
    /** The model's `partitions`: every partition's streams are emptied; default 1 */
    partitions?: number;
  },
  code: 'version_unloaded' | 'model_unavailable',
  message: string,
): Promise<SettleOutcome> {
  const outcome: SettleOutcome = { written: 0, readyGroups: [] };
  for (const shard of modelShards(target.model, target.partitions ?? 1)) {
    const streams = keys.requestStreams(shard, target.version, target.levels ?? 1);
    for (const [i, stream] of streams.entries()) {
      const { written, readyGroups } = await failStream(redis, { ...target, model: shard }, stream, i + 1, code, message);
      outcome.written += written;
      outcome.readyGroups.push(...readyGroups);
    }
  }
  return outcome;
}

/** {@link failWaiting} of one level's stream. */
async function failStream(
  redis: Redis,
  target: { model: string; version: number; result_ttl_s: number },
  stream: string,
  level: number,
  code: 'version_unloaded' | 'model_unavailable',
  message: string,
): Promise<SettleOutcome> {
  const { model, version } = target;
  const outcome: SettleOutcome = { written: 0, readyGroups: [] };
  let start = '-';
  for (;;) {
    const raw = (await redis.xrangeBuffer(stream, start, '+', 'COUNT', FAIL_CHUNK)) as unknown as RawEntry[];
    if (raw.length === 0) return outcome;
    const settlements: Settlement[] = [];
    const orphans: string[] = [];
    for (const item of raw) {
      const entry = parseEntry(item, level);
      if (entry) settlements.push({ entry, result: { ok: false, code, message }, queue_ms: 0 });
      else orphans.push(item[0].toString());
    }
    const figures = { inference_ms: 0, batch_size: 0, batch_id: '', result_ttl_s: target.result_ttl_s };
    const { written, readyGroups } = await settleBatch(redis, model, version, figures, settlements);
    await dropEntries(redis, stream, orphans);
    outcome.written += written;
    outcome.readyGroups.push(...readyGroups);
    start = `(${raw.at(-1)?.[0].toString() ?? '0'}`;
  }
}
