import { idempotencyPartition, shardName, type ModelConfig } from '@inferline/shared';

/** Round-robin position of this gateway process, per model. */
const nextPartition = new Map<string, number>();

/**
 * The shard (`shardName`) that one call's jobs go to, for a model with `partitions` partitions
 * (config.json, default 1): all inputs of one call (a bulk `POST /v1/jobs`, a `:predict` with many
 * instances) go to one partition, so they are stored by one script call. A call with an
 * `Idempotency-Key` goes to the partition its tenant and key hash to (`idempotencyPartition`), so a
 * retry through any gateway finds the first call's record; any other call takes the next partition
 * in this gateway's round robin.
 */
export function chooseShard(config: Pick<ModelConfig, 'name' | 'partitions'>, idempotency?: { tenant: string; key: string }): string {
  const partitions = config.partitions;
  if (partitions <= 1) return config.name;
  if (idempotency) return shardName(config.name, idempotencyPartition(idempotency.tenant, idempotency.key, partitions));
  const partition = (nextPartition.get(config.name) ?? 0) % partitions;
  nextPartition.set(config.name, partition + 1);
  return shardName(config.name, partition);
}
