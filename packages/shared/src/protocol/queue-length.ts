import type { Redis } from '../redis.ts';
import { keys, modelShards } from '../keys.ts';

/**
 * Requests in a version's streams, every priority level of every partition together (XLEN summed):
 * waiting plus in flight, since settled entries are deleted (DESIGN.md section 10). What
 * max_queue_size caps (each partition its share, `partitionLimit`). The XLENs go out together; on a
 * cluster each goes to its partition's master.
 * @param levels the model's `batching.priority_levels`
 * @param partitions the model's `partitions` (default 1)
 * @throws Error when Redis fails.
 */
export async function queueLength(redis: Redis, model: string, version: number, levels: number, partitions = 1): Promise<number> {
  const streams = modelShards(model, partitions).flatMap((shard) => keys.requestStreams(shard, version, levels));
  const lengths = await Promise.all(streams.map((stream) => redis.xlen(stream)));
  return lengths.reduce((sum, length) => sum + length, 0);
}
