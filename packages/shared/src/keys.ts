/**
 * Every Redis key and channel name of the protocol (DESIGN.md sections 2 and 10). No other file builds a
 * key string. Keys of a model carry the hash tag `{m:<name>}` so a model's stream, dead letters and
 * heartbeats share one Redis Cluster slot.
 *
 * Job records are keyed by job id alone (`il:job:<id>`): a client reads a job knowing only its id.
 */
const PREFIX = 'il';

/** Name of the consumer group every worker of a model version reads through. */
export const CONSUMER_GROUP = 'workers';

/** Pub/sub channel on which settle and start scripts announce `<job id>\t<status>`. */
export const JOB_EVENTS_CHANNEL = `${PREFIX}:events`;

/** Hash tag shared by all keys of one model. */
function modelTag(model: string): string {
  return `{m:${model}}`;
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
} as const;
