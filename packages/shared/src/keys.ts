import { createHash } from 'node:crypto';
import { nanoid } from 'nanoid';

/**
 * Every Redis key and channel name of the protocol (DESIGN.md sections 2, 5 and 10). No other file builds a
 * key string. Keys of a model carry the hash tag `{m:<shard>}`, so a model's streams, dead letters,
 * heartbeats, jobs and groups share one Redis Cluster slot (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags).
 *
 * A **shard** is what one such tag covers: today a model's name (a model partitioned over several
 * slots adds `<model>~<k>` for partition k ≥ 1). The id of a job and of an aggregation group is
 * `<shard>~<nanoid>` ({@link newJobId}, {@link newGroupId}); its shard is everything before its last
 * `~` ({@link idShard}). So every key of a job or group is derived from its id alone (a client reads
 * it knowing only the id), and lands in the slot of the stream its requests go to:
 * - a job's record is `il:{m:<shard>}:job:<id>`, so enqueue, start, settle, cancel and dead-letter
 *   touch keys of one slot, and one script call carries a whole batch;
 * - a group's record, member results, member errors and kept inputs are
 *   `il:{m:<shard>}:group:<id>`, `...:group-results:<id>`, `...:group-errors:<id>`,
 *   `...:group-inputs:<id>`, and the sets that index groups are the shard's own (`...:groups:ready`,
 *   `...:groups:open`, `...:groups:callbacks`). Members are requests on the shard's stream. So
 *   group-add, start-members, settle-member, dead-letter-member, group-cancel and group-finish each stay
 *   ONE atomic script call on one slot, and the exactly-once counting of members is what it was on one
 *   Redis: a member's first settle writes its index into the results or errors hash and decrements
 *   `remaining` in the same call that acknowledges its entry; a redelivery finds its index written and
 *   counts nothing (includes/settle-group-member.lua).
 *
 * The id comes last in every per-id key, and a shard name holds neither `{`, `}` nor `:`, so no id a
 * client makes up can name another record's key. An id without a shard part (never issued) maps to
 * keys under the empty tag `{m:}`, which no script writes: it reads as not found.
 *
 * Whoever visits every group (the aggregator's sweeps, the callbacks drainer, the gateway's
 * `inferline_groups` gauge) iterates the shards of the models the repository lists; no SCAN is
 * needed (a cluster would need one per master).
 */
const PREFIX = 'il';

/**
 * Between the shard part and the random part of a job or group id. Neither a model name
 * (`[a-z0-9_.-]`) nor nanoid's alphabet (`[A-Za-z0-9_-]`) holds it, and it needs no escaping in a URL
 * (RFC 3986 unreserved).
 */
export const JOB_ID_SEPARATOR = '~';

/**
 * A fresh job id for a request to `shard` (today the model's name): `<shard>~<nanoid()>` (21 random
 * characters, 126 bits, DESIGN.md section 2). The shard part makes {@link keys.job} land in the
 * slot of the shard's streams.
 */
export function newJobId(shard: string): string {
  return `${shard}${JOB_ID_SEPARATOR}${nanoid()}`;
}

/**
 * A fresh aggregation group id on `shard` (today the group's model): `<shard>~<nanoid()>`, the shape
 * of a job id, so every key of the group ({@link keys.group} and the rest) and its members' stream
 * share the shard's slot.
 */
export function newGroupId(shard: string): string {
  return `${shard}${JOB_ID_SEPARATOR}${nanoid()}`;
}

/**
 * The shard a job or group id was made for (everything before its last `~`), or undefined when the
 * id has no such part (it was never issued: its keys read as not found).
 */
export function idShard(id: string): string | undefined {
  const at = id.lastIndexOf(JOB_ID_SEPARATOR);
  return at > 0 ? id.slice(0, at) : undefined;
}

/** {@link idShard} under its first name: the model of a job id (a shard is a model's name today). */
export const jobIdModel: (jobId: string) => string | undefined = idShard;

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

/** Key prefix of the per-tenant request counters of `@fastify/rate-limit`'s Redis store (`il:ratelimit:<tenant>`). */
export const RATE_LIMIT_PREFIX = `${PREFIX}:ratelimit:`;

/** BullMQ queue of callback deliveries (POST of a terminal job or group view to its callback_url). */
export const CALLBACKS_QUEUE = 'callbacks';

/** Hash tag shared by all keys of one model (shard). */
function modelTag(model: string): string {
  return `{m:${model}}`;
}

/** Hash tag of the keys of a job or group id: its shard's ('{m:}' for an id with no shard part). */
function idTag(id: string): string {
  return modelTag(idShard(id) ?? '');
}

/** Key builders; each returns the full key string. */
export const keys = {
  /**
   * Hash: one job record (fields in `protocol/records.ts`), in its model's slot. An id without a model
   * part (never issued by {@link newJobId}) maps to a key no script writes, so it reads as not found.
   */
  job: (jobId: string): string => `${PREFIX}:${idTag(jobId)}:job:${jobId}`,
  /**
   * Stream: the requests waiting for one model version at one priority level (`batching.priority_levels`,
   * 1 = highest); consumer group {@link CONSUMER_GROUP}. Level 1 keeps the version's original key
   * (`...:requests`), so a model with one level (the default) has exactly the stream it always had;
   * level k ≥ 2 is `...:requests:p<k>`.
   */
  requests: (model: string, version: number, level = 1): string =>
    `${PREFIX}:${modelTag(model)}:v${version}:requests${level === 1 ? '' : `:p${level}`}`,
  /** Every level's request stream of a version ({@link keys.requests}), highest level (1) first. */
  requestStreams: (model: string, version: number, levels: number): string[] =>
    Array.from({ length: Math.max(1, levels) }, (_, i) => `${PREFIX}:${modelTag(model)}:v${version}:requests${i === 0 ? '' : `:p${i + 1}`}`),
  /** Stream: requests delivered more than `max_deliveries` times. */
  deadLetter: (model: string, version: number): string => `${PREFIX}:${modelTag(model)}:v${version}:dead`,
  /** Sorted set: worker consumer name → last heartbeat (ms since epoch). */
  workers: (model: string): string => `${PREFIX}:${modelTag(model)}:workers`,
  /**
   * Hash: worker consumer name → JSON of the versions it holds and their states
   * (`WorkerAnnouncement`, protocol/version-status.ts), rewritten with every heartbeat.
   */
  versionStatus: (model: string): string => `${PREFIX}:${modelTag(model)}:status`,
  /**
   * Hash: version → `open` | `closed`. enqueue.lua and group-add.lua store requests only for an `open`
   * version: a worker opens a version once it is AVAILABLE, and closes it before it drains and unloads
   * it, so no request can reach a stream after its last reader decided to leave.
   */
  admission: (model: string): string => `${PREFIX}:${modelTag(model)}:admission`,
  /**
   * Hash: one aggregation group (model, version, reduce, status, size, remaining, completed, failed,
   * output, error); fields are listed in `group-add.lua`. In its shard's slot (the group id's shard
   * part, {@link newGroupId}); an id without one maps to a key no script writes, so it reads as not found.
   */
  group: (groupId: string): string => `${PREFIX}:${idTag(groupId)}:group:${groupId}`,
  /** Hash: member index → MessagePack output of each member that succeeded. */
  groupResults: (groupId: string): string => `${PREFIX}:${idTag(groupId)}:group-results:${groupId}`,
  /** Hash: member index → `<code>\t<message>` of each member that failed. */
  groupErrors: (groupId: string): string => `${PREFIX}:${idTag(groupId)}:group-errors:${groupId}`,
  /** Hash: member index → encoded input image, kept only for the `boxes` reducer (it draws on them). */
  groupInputs: (groupId: string): string => `${PREFIX}:${idTag(groupId)}:group-inputs:${groupId}`,
  /**
   * Sorted set: ids of one shard's groups whose members all settled and whose reduce has not finished,
   * scored by the time they became ready (ms). The outbox from which the aggregator re-adds a lost
   * reduce job.
   */
  groupsReady: (shard: string): string => `${PREFIX}:${modelTag(shard)}:groups:ready`,
  /**
   * Sorted set: ids of one shard's groups taking inputs (`open`), scored by their last chunk (ms). The
   * aggregator cancels a group left open longer than `open_group_ttl_s` (its client went away).
   */
  groupsOpen: (shard: string): string => `${PREFIX}:${modelTag(shard)}:groups:open`,
  /**
   * Hash: tenant → its requests (jobs and group members) waiting or running in this model's queues.
   * enqueue.lua and group-add.lua add, the scripts that settle, fail or cancel subtract, in the same
   * call as the state change.
   */
  tenantQueued: (model: string): string => `${PREFIX}:${modelTag(model)}:queued`,
  /**
   * Hash `{fingerprint, ids}`: what the first request with one `Idempotency-Key` of one tenant created
   * (`scope` jobs: the job ids, newline-separated; groups: the group id). Key and tenant are hashed
   * into the name (SHA-256), so any key text is safe and the name stays short.
   */
  idempotency: (model: string, scope: 'jobs' | 'groups', tenant: string, idempotencyKey: string): string =>
    `${PREFIX}:${modelTag(model)}:idem:${scope}:${createHash('sha256').update(`${tenant}\n${idempotencyKey}`).digest('hex')}`,
  /** Sorted set: ids of this model's jobs with a callback_url that reached a terminal state → ms; drained by the aggregator. */
  callbacksDue: (model: string): string => `${PREFIX}:${modelTag(model)}:callbacks`,
  /** Sorted set: ids of one shard's groups with a callback_url that reached a terminal state → ms; drained by the aggregator. */
  groupCallbacksDue: (shard: string): string => `${PREFIX}:${modelTag(shard)}:groups:callbacks`,
} as const;
