import type { Redis } from 'ioredis';
import { keys } from '../keys.ts';

/**
 * Requests in a version's streams, every priority level together (XLEN summed): waiting plus in
 * flight, since settled entries are deleted (DESIGN.md section 10). What max_queue_size caps.
 * @param levels the model's `batching.priority_levels`
 * @throws Error when Redis fails.
 */
export async function queueLength(redis: Redis, model: string, version: number, levels: number): Promise<number> {
  const lengths = await Promise.all(keys.requestStreams(model, version, levels).map((stream) => redis.xlen(stream)));
  return lengths.reduce((sum, length) => sum + length, 0);
}
