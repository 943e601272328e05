/**
 * Every Redis key and channel name of the protocol (DESIGN.md sections 2 and 10). No other file builds a
 * key string. Keys of a model carry the hash tag `{m:<name>}` so a model's stream, dead letters and
 * heartbeats share one Redis Cluster slot.
 *
 * Job records are keyed by job id alone (`il:job:<id>`): a client reads a job knowing only its id.
 * Keys of an aggregation group carry `{g:<id>}` (DESIGN.md section 5).
 */
const PREFIX = 'il';

/** Name of the consumer group every worker of a model version reads through. */
export const CONSUMER_GROUP = 'workers';

/** Pub/sub channel on which settle and start scripts announce `<job id>\t<status>`. */
export const JOB_EVENTS_CHANNEL = `${PREFIX}:events`;

/**
 * Key prefix of the BullMQ queues (`il:bull:<queue>:...`), kept apart from the protocol's own keys.
 * https://docs.bullmq.io/guide/queues/global-concurrency (prefix option)
 */
export const BULLMQ_PREFIX = `${PREFIX}:bull`;

/** BullMQ queue on which a group whose members all settled waits for its reduce (DESIGN.md section 5). */
export const REDUCE_QUEUE = 'reduce';

/** Hash tag shared by all keys of one model. */
function modelTag(model: string): string {
  return `{m:${model}}`;
}

/** Hash tag shared by all keys of one aggregation group. */
function groupTag(groupId: string): string {
  return `{g:${groupId}}`;
}

/** Key builders; each returns the full key string. */
export const keys = {
  /** Hash: one job record (status, model, version, output, error, timings). */
  job: (jobId: string): string => `${PREFIX}:job:${jobId}`,
  /** Stream: the requests waiting for one model version; consumer group {@link CONSUMER_GROUP}. */
  requests: (model: string, version: number): string => `${PREFIX}:${modelTag(model)}:v${version}:requests`,
  /** Stream: requests delivered more than `max_deliveries` times. */
  deadLetter: (model: string, version: number): string => `${PREFIX}:${modelTag(model)}:v${version}:dead`,
  /** Sorted set: worker consumer name → last heartbeat (ms since epoch). */
  workers: (model: string): string => `${PREFIX}:${modelTag(model)}:workers`,
  /** Hash: per-version status published by workers (`state`, `backend`, `loaded_at`). */
  versionStatus: (model: string): string => `${PREFIX}:${modelTag(model)}:status`,
  /**
   * Hash: one aggregation group (model, version, reduce, status, size, remaining, completed, failed,
   * output, error); fields are listed in `group-add.lua`.
   */
  group: (groupId: string): string => `${PREFIX}:${groupTag(groupId)}:group`,
  /** Hash: member index → MessagePack output of each member that succeeded. */
  groupResults: (groupId: string): string => `${PREFIX}:${groupTag(groupId)}:results`,
  /** Hash: member index → `<code>\t<message>` of each member that failed. */
  groupErrors: (groupId: string): string => `${PREFIX}:${groupTag(groupId)}:errors`,
  /** Hash: member index → encoded input image, kept only for the `boxes` reducer (it draws on them). */
  groupInputs: (groupId: string): string => `${PREFIX}:${groupTag(groupId)}:inputs`,
  /**
   * Sorted set: ids of groups whose members all settled and whose reduce has not finished, scored by
   * the time they became ready (ms). The outbox from which the aggregator re-adds a lost reduce job.
   */
  groupsReady: (): string => `${PREFIX}:groups:ready`,
  /**
   * Sorted set: ids of groups taking inputs (`open`), scored by their last chunk (ms). The aggregator
   * cancels a group left open longer than `open_group_ttl_s` (its client went away).
   */
  groupsOpen: (): string => `${PREFIX}:groups:open`,
} as const;
