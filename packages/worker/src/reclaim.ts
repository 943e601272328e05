import { Command } from 'ioredis';
import { CONSUMER_GROUP, type Redis, deadLetterJob, deadLetterMember, keys, parseEntry, requestLabel, type RawEntry, type StreamEntry } from '@inferline/shared';
import { dropEntries } from './settle.ts';

/** What one reclaim pass found. */
export interface ReclaimResult {
  /** Entries now owned by this consumer, to run again. */
  claimed: StreamEntry[];
  /** Requests failed with `poison` and moved to the dead-letter stream (job ids, `<group>/<index>`). */
  deadLettered: string[];
  /** Groups whose last member was dead-lettered here: their reduce job is to be added. */
  readyGroups: string[];
}

/** Options of {@link reclaimPending}. */
export interface ReclaimOptions {
  model: string;
  version: number;
  /** Priority level of the stream to reclaim from (1 = highest); default 1. */
  level?: number;
  consumer: string;
  /** Pending entries idle at least this long (ms) are taken over (XAUTOCLAIM min-idle-time). */
  visibility_timeout_ms: number;
  /** Deliveries beyond which an entry is dead-lettered instead of run again. */
  max_deliveries: number;
  /** Most entries claimed per pass (one batch). */
  count: number;
  result_ttl_s: number;
}

/**
 * Take over requests another consumer (a dead worker, or this one before a Redis error) left pending
 * longer than `visibility_timeout_ms`, with XAUTOCLAIM (https://redis.io/commands/xautoclaim/). An entry
 * delivered more than `max_deliveries` times is moved to the dead-letter stream and its job failed with
 * `poison` (a group member fails in its group); the others are returned to run again. Settling is idempotent, so running a request whose
 * result was already written costs a forward pass but never writes twice.
 */
export async function reclaimPending(redis: Redis, options: ReclaimOptions): Promise<ReclaimResult> {
  const level = options.level ?? 1;
  const stream = keys.requests(options.model, options.version, level);
  // Buffers, not strings: the `input` field is MessagePack bytes. Sent as a Command: ioredis' `call`
  // loses its command name on an auto-pipelining connection.
  const command = new Command('XAUTOCLAIM', [stream, CONSUMER_GROUP, options.consumer, options.visibility_timeout_ms, '0-0', 'COUNT', options.count], { replyEncoding: null });
  const [, rawEntries] = (await redis.sendCommand(command)) as [Buffer, (RawEntry | null)[]];
  const entries: StreamEntry[] = [];
  const orphans: string[] = [];
  for (const raw of rawEntries) {
    if (!raw) continue;
    const entry = parseEntry(raw, level);
    if (entry) entries.push(entry);
    else orphans.push(raw[0].toString());
  }
  await dropEntries(redis, stream, orphans);
  if (entries.length === 0) return { claimed: [], deadLettered: [], readyGroups: [] };

  const counts = redis.pipeline();
  for (const entry of entries) counts.xpending(stream, CONSUMER_GROUP, entry.entryId, entry.entryId, 1);
  const replies = (await counts.exec()) ?? [];
  const claimed: StreamEntry[] = [];
  const deadLettered: string[] = [];
  const readyGroups: string[] = [];
  for (const [i, entry] of entries.entries()) {
    const [error, reply] = replies[i] ?? [null, []];
    if (error) throw error;
    const deliveries = Number((reply as [string, string, number, number][])[0]?.[3] ?? 0);
    if (deliveries <= options.max_deliveries) {
      claimed.push(entry);
      continue;
    }
    const message = `delivered ${deliveries} times (max_deliveries ${options.max_deliveries}) without a result`;
    if (entry.kind === 'member') {
      const { groupId, index } = entry;
      const outcome = await deadLetterMember(redis, { model: options.model, version: options.version, groupId, index, entryId: entry.entryId, deliveries, message, level });
      if (outcome === 'group_ready') readyGroups.push(groupId);
    } else {
      await deadLetterJob(redis, {
        model: options.model, version: options.version, jobId: entry.jobId, entryId: entry.entryId, deliveries, result_ttl_s: options.result_ttl_s, message, level,
      });
    }
    deadLettered.push(requestLabel(entry));
  }
  return { claimed, deadLettered, readyGroups };
}
