import type { Redis } from 'ioredis';
import { keys } from '../keys.ts';
import { runScript } from '../scripts.ts';

/**
 * What workers announce about the model versions they hold, and how a version is opened and closed for
 * admission (DESIGN.md section 2, "Admission"). Per model, in its slot:
 * - `keys.workers(model)`: consumer → last heartbeat (ms), the liveness of each worker;
 * - `keys.versionStatus(model)`: consumer → {@link WorkerAnnouncement} JSON, rewritten every heartbeat;
 * - `keys.admission(model)`: version → `open` | `closed`, checked by enqueue.lua and group-add.lua.
 *
 * A worker opens a version once it is AVAILABLE and closes it before it drains and unloads it; the
 * gateway resolves requests from the announcements of live workers, and the admission hash makes the
 * last word atomic: no request enters a stream after it was closed.
 */

/**
 * TF Serving's model version states (ModelVersionStatus.State,
 * https://github.com/tensorflow/serving/blob/master/tensorflow_serving/apis/get_model_status.proto).
 * START: selected but not (yet) held by any live worker; END: unloaded, or a load that failed (with
 * its error).
 */
export const VERSION_STATES = ['START', 'LOADING', 'AVAILABLE', 'UNLOADING', 'END'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

/** One version as one worker holds it. */
export interface WorkerVersion {
  state: Exclude<VersionState, 'START'>;
  /** Why the load failed (state END). */
  error?: string;
  /** When it became AVAILABLE, ISO 8601. */
  loaded_at?: string;
  /**
   * Whether its weights are in memory on this worker. A worker with MODEL_MEMORY_BUDGET_MB serves a
   * version AVAILABLE but not loaded on demand: its requests are admitted and wait for the load.
   */
  loaded?: boolean;
}

/** One worker's announcement for one model. */
export interface WorkerAnnouncement {
  consumer: string;
  /** TF.js backend of the worker (`tensorflow`, `wasm`, `cpu`). */
  backend: string;
  /** Version number (decimal string) → its state on this worker. */
  versions: Record<string, WorkerVersion>;
}

/** A version's state over every live worker of its model. */
export interface LiveVersion {
  state: Exclude<VersionState, 'START'>;
  /** Live workers that have it AVAILABLE. */
  available: number;
  /** The error of a failed load, when no worker has it AVAILABLE or LOADING. */
  error?: string;
}

/** Heartbeats older than this many periods are pruned, with the worker's announcement. */
export const HEARTBEAT_PRUNE_PERIODS = 10;
/** A worker counts as alive for this many heartbeat periods after its last heartbeat. */
export const LIVE_HEARTBEATS = 3;

/**
 * Record one worker's heartbeat for one model (heartbeat.lua): alive now, holding `versions`; prune
 * workers silent for {@link HEARTBEAT_PRUNE_PERIODS} periods; open each version of `open` (the ones it
 * serves as selected by the policy, so admission comes back after Redis lost its data).
 */
export async function announceWorker(
  redis: Redis,
  model: string,
  announcement: WorkerAnnouncement,
  open: readonly number[],
  heartbeatIntervalMs: number,
  now = Date.now(),
): Promise<void> {
  const { consumer } = announcement;
  await runScript(redis, 'heartbeat', [keys.workers(model), keys.versionStatus(model), keys.admission(model)], [
    now,
    consumer,
    JSON.stringify({ backend: announcement.backend, versions: announcement.versions }),
    now - HEARTBEAT_PRUNE_PERIODS * heartbeatIntervalMs,
    ...open,
  ]);
}

/** Remove a stopping worker's heartbeat and announcement for one model. */
export async function withdrawWorker(redis: Redis, model: string, consumer: string, heartbeatIntervalMs: number, now = Date.now()): Promise<void> {
  await runScript(redis, 'heartbeat', [keys.workers(model), keys.versionStatus(model), keys.admission(model)], [
    now,
    consumer,
    '',
    now - HEARTBEAT_PRUNE_PERIODS * heartbeatIntervalMs,
  ]);
}

/**
 * The announcements of a model's live workers (heartbeat within {@link LIVE_HEARTBEATS} periods).
 * An announcement that is not valid JSON is skipped.
 */
export async function readLiveWorkers(redis: Redis, model: string, heartbeatIntervalMs: number, now = Date.now()): Promise<WorkerAnnouncement[]> {
  const [live, status] = await Promise.all([
    redis.zrangebyscore(keys.workers(model), now - LIVE_HEARTBEATS * heartbeatIntervalMs, '+inf'),
    redis.hgetall(keys.versionStatus(model)),
  ]);
  const announcements: WorkerAnnouncement[] = [];
  for (const consumer of live) {
    const text = status[consumer];
    if (text === undefined) continue;
    try {
      const parsed = JSON.parse(text) as Partial<WorkerAnnouncement>;
      announcements.push({ consumer, backend: String(parsed.backend ?? ''), versions: parsed.versions ?? {} });
    } catch {
      continue;
    }
  }
  return announcements;
}

/** Precedence when workers disagree: the most useful state wins. */
const STATE_RANK: Record<LiveVersion['state'], number> = { AVAILABLE: 4, LOADING: 3, UNLOADING: 2, END: 1 };

/**
 * Combine live workers' announcements into one state per version: AVAILABLE when any worker has it
 * AVAILABLE, else LOADING, else UNLOADING, else END (with a failed load's error).
 * @returns version → its live state; versions no live worker holds are absent (they are START).
 */
export function aggregateVersions(workers: readonly WorkerAnnouncement[]): Map<number, LiveVersion> {
  const versions = new Map<number, LiveVersion>();
  for (const worker of workers) {
    for (const [key, held] of Object.entries(worker.versions)) {
      const version = Number(key);
      if (!Number.isInteger(version) || !(held.state in STATE_RANK)) continue;
      const known = versions.get(version);
      const available = (known?.available ?? 0) + (held.state === 'AVAILABLE' ? 1 : 0);
      if (!known || STATE_RANK[held.state] > STATE_RANK[known.state]) {
        versions.set(version, { state: held.state, available, ...(held.error === undefined ? {} : { error: held.error }) });
      } else {
        known.available = available;
        if (known.error === undefined && held.error !== undefined && known.state === 'END') known.error = held.error;
      }
    }
  }
  return versions;
}

/**
 * A model's versions over its live workers ({@link readLiveWorkers}, then {@link aggregateVersions}),
 * and how many live workers it has.
 */
export async function readLiveVersions(redis: Redis, model: string, heartbeatIntervalMs: number): Promise<{ versions: Map<number, LiveVersion>; workers: number }> {
  const workers = await readLiveWorkers(redis, model, heartbeatIntervalMs);
  return { versions: aggregateVersions(workers), workers: workers.length };
}

/** Admission of one version: `open` (requests are stored) or `closed`. */
export type Admission = 'open' | 'closed';

/** Open or close one version for admission (`keys.admission`). */
export async function setAdmission(redis: Redis, model: string, version: number, admission: Admission): Promise<void> {
  await redis.hset(keys.admission(model), String(version), admission);
}

/**
 * Open one version for admission unless some worker has set its admission already (HSETNX): the
 * gateway does this for a `scale_to_zero` model whose version no worker has ever opened (a fresh
 * deployment scaled to zero), so the first request reaches the stream and an autoscaler can see it.
 * A version a worker closed (it left the policy) stays closed.
 * @returns true when this call opened it.
 */
export async function openAdmissionIfUnset(redis: Redis, model: string, version: number): Promise<boolean> {
  return (await redis.hsetnx(keys.admission(model), String(version), 'open')) === 1;
}

/** Every version of a model that was ever opened, with its admission now. */
export async function readAdmission(redis: Redis, model: string): Promise<Map<number, Admission>> {
  const fields = await redis.hgetall(keys.admission(model));
  return new Map(Object.entries(fields).map(([version, admission]) => [Number(version), admission === 'open' ? 'open' : 'closed']));
}
