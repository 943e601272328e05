import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  InferlineError,
  announceWorker,
  connectRedis,
  keys,
  readAdmission,
  readLiveVersions,
  scanRepository,
  setAdmission,
  withdrawWorker,
  type LiveVersion,
  type Logger,
  type ModelConfig,
  type Redis,
  type RepositoryModel,
  type RepositoryScan,
  type Settings,
  type WorkerVersion,
} from '@inferline/shared';
import type { WorkerMetrics } from '../metrics.ts';
import { loadServable, type Servable } from '../runtime/servable.ts';
import { failWaiting } from '../settle.ts';
import { VersionConsumer } from '../version-consumer.ts';

/** While a version drains, how often its stream length is checked, ms. */
const DRAIN_POLL_MS = 100;
/** Pause before a version consumer whose loop failed (Redis away at its start) runs again, ms. */
const CONSUMER_RESTART_MS = 1_000;

/** Dependencies and options of a {@link RepositoryFollower}. */
export interface FollowerOptions {
  settings: Settings & { redis_url: string };
  /** Models to serve; empty = every model of the repository. */
  models: readonly string[];
  /** TF.js backend in use (announced with the versions). */
  backend: string;
  /** This worker's consumer name (heartbeats, consumer groups). */
  consumer: string;
  /** Command connection (scripts, heartbeats); each served version gets its own reader connection. */
  redis: Redis;
  logger: Logger;
  metrics: WorkerMetrics;
  /** Adds the reduce job of a group whose last member was settled here. */
  onGroupReady: (groupId: string) => Promise<void>;
}

/** A version this worker holds: loading, serving, or draining before it unloads. */
interface HeldVersion {
  version: number;
  state: 'LOADING' | 'AVAILABLE' | 'UNLOADING';
  servable?: Servable;
  consumer?: VersionConsumer;
  reader?: Redis;
  /** Aborted to stop its consumer. */
  stop: AbortController;
  /** The consumer's loop; resolves once it stopped and settled its batch. */
  running?: Promise<void>;
  /** When it became AVAILABLE, ms since epoch. */
  loadedAt?: number;
}

/** One model as this worker follows it. */
interface FollowedModel {
  name: string;
  config: ModelConfig;
  dir: string;
  /** Versions the policy selects now, ascending. */
  selected: number[];
  held: Map<number, HeldVersion>;
  /** Versions whose load failed, with the error and the folder's newest mtime it failed with (retried when it changes). */
  failed: Map<number, { error: string; stamp: number }>;
}

/**
 * Makes a worker serve exactly the versions each model's version policy selects, and follow the
 * repository as it changes (DESIGN.md section 6; TF Serving's availability-preserving policy: a new
 * version is loaded before the one it replaces is unloaded). Every `poll_interval_ms` it re-scans the
 * repository and, per model:
 *
 * 1. **Load** each selected version it does not hold: LOADING → load → warm up at every allowed batch
 *    size → start its consumer → AVAILABLE (the heartbeat then opens it for admission). A load that
 *    fails leaves the version END with its error; it is retried when a file of its folder changes. The
 *    other versions keep serving.
 * 2. **Retire** each AVAILABLE version the policy no longer selects, once a selected version is
 *    AVAILABLE here (or none is selected): UNLOADING → close admission (from then on enqueue.lua
 *    refuses it, so the gateways have stopped admitting it) → serve what is queued until the stream is
 *    empty, at most `drain_timeout_ms`, then fail the rest with `version_unloaded` → stop → free its
 *    memory (tensors disposed).
 * 3. **Sweep**: a version that is open or has requests queued, that no live worker holds and this
 *    worker will not load (it left the policy while no worker held it, or every load failed), is
 *    closed and its requests failed (`version_unloaded`, or `model_unavailable` for a failed load), so
 *    no accepted request waits for a reader that will never come.
 *
 * A changed `config.json` applies to the running consumers without a restart (batching and queue
 * options); an invalid one is logged and the last good config kept. Heartbeats (every
 * `heartbeat_interval_ms`, and at once on every state change) announce each version's state.
 */
export class RepositoryFollower {
  readonly #options: FollowerOptions;
  readonly #log: Logger;
  readonly #models = new Map<string, FollowedModel>();
  /** Loads run one at a time (each holds a model's weights twice while it decodes them). */
  #loads: Promise<void> = Promise.resolve();
  /** Retirements in progress (drain + unload). */
  readonly #retiring = new Set<Promise<unknown>>();
  #syncing: Promise<void> | undefined;
  #stopping = false;
  /** Config errors already logged, by model (logged again only when they change). */
  readonly #configErrors = new Map<string, string>();

  constructor(options: FollowerOptions) {
    this.#options = options;
    this.#log = options.logger;
  }

  /**
   * Follow the repository until `signal` aborts, then stop every consumer (each finishes and settles
   * its batch), free the versions and withdraw the heartbeats.
   * @param onReady called once every version selected at the first scan is AVAILABLE or failed.
   * @throws InferlineError `model_not_found` when a model named in `models` is not in the repository.
   */
  async run(signal: AbortSignal, onReady?: () => void): Promise<void> {
    const { settings } = this.#options;
    const scan = await scanRepository(settings.model_repository);
    for (const name of this.#options.models) {
      if (!scan.models.some((m) => m.config.name === name) && !scan.failures.some((f) => f.name === name)) {
        throw new InferlineError('model_not_found', `model "${name}" is not in the repository ${settings.model_repository}`);
      }
    }
    await this.#apply(scan);
    void this.#loads.then(() => onReady?.());
    const poll = setInterval(() => void this.sync(), settings.poll_interval_ms);
    const beat = setInterval(() => void this.#announceAll(), settings.heartbeat_interval_ms);
    try {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      clearInterval(poll);
      clearInterval(beat);
      await this.#stop();
    }
  }

  /** Re-scan the repository and apply it now (one at a time; a call during a scan waits for it). Never throws. */
  sync(): Promise<void> {
    this.#syncing ??= (async () => {
      try {
        await this.#apply(await scanRepository(this.#options.settings.model_repository));
      } catch (error) {
        this.#log.error({ err: error, model_repository: this.#options.settings.model_repository }, 'model repository re-scan failed; keeping the current versions');
      } finally {
        this.#syncing = undefined;
      }
    })();
    return this.#syncing;
  }

  async #apply(scan: RepositoryScan): Promise<void> {
    if (this.#stopping) return;
    const wanted = this.#options.models;
    const inScope = (name: string): boolean => wanted.length === 0 || wanted.includes(name);
    for (const failure of scan.failures) {
      if (!inScope(failure.name) || this.#configErrors.get(failure.name) === failure.message) continue;
      this.#configErrors.set(failure.name, failure.message);
      this.#log.error({ model: failure.name, error: failure.message }, 'model config invalid; keeping its last good config, if any');
    }
    const present = new Set<string>();
    for (const model of scan.models) {
      if (!inScope(model.config.name)) continue;
      present.add(model.config.name);
      this.#configErrors.delete(model.config.name);
      await this.#follow(model);
    }
    // A model whose folder is gone (not merely invalid) leaves: all its versions retire.
    for (const [name, followed] of this.#models) {
      if (present.has(name) || scan.failures.some((f) => f.name === name)) continue;
      followed.selected = [];
      await this.#reconcile(followed);
    }
  }

  /** Take one model's new scan: config, selected versions; then reconcile. */
  async #follow(model: RepositoryModel): Promise<void> {
    const name = model.config.name;
    let followed = this.#models.get(name);
    if (!followed) {
      followed = { name, config: model.config, dir: model.dir, selected: [], held: new Map(), failed: new Map() };
      this.#models.set(name, followed);
      if (model.served.length === 0) this.#log.warn({ model: name, dir: model.dir }, 'model has no version to serve yet (run `npm run models`, or add a version folder)');
    }
    if (followed.config !== model.config) {
      followed.config = model.config;
      followed.failed.clear();
      for (const held of followed.held.values()) held.consumer?.updateConfig(model.config);
      this.#log.info({ model: name }, 'model config changed; applied to the versions being served');
    }
    followed.selected = model.served;
    for (const [version, failure] of followed.failed) {
      if ((await folderStamp(followed, version)) !== failure.stamp) followed.failed.delete(version);
    }
    await this.#reconcile(followed);
  }

  /** Start loads, retirements and the sweep that the model's selection calls for. */
  async #reconcile(model: FollowedModel): Promise<void> {
    if (this.#stopping) return;
    let changed = false;
    for (const version of model.selected) {
      if (model.held.has(version) || model.failed.has(version)) continue;
      this.#load(model, version);
      changed = true;
    }
    const replacementReady = model.selected.length === 0 || model.selected.some((v) => model.held.get(v)?.state === 'AVAILABLE');
    if (replacementReady) {
      for (const held of model.held.values()) {
        if (held.state !== 'AVAILABLE' || model.selected.includes(held.version)) continue;
        held.state = 'UNLOADING';
        changed = true;
        const retiring = this.#retire(model, held).catch((error: unknown) =>
          this.#log.error({ err: error, model: model.name, version: held.version }, 'retiring a version failed; it stays held'),
        );
        this.#retiring.add(retiring);
        void retiring.finally(() => this.#retiring.delete(retiring));
      }
    }
    if (changed) await this.#announce(model);
    await this.#sweep(model).catch((error: unknown) => this.#log.warn({ err: error, model: model.name }, 'sweep of unserved versions failed; retried next scan'));
  }

  /** Queue the load of one version (LOADING → AVAILABLE, or failed). */
  #load(model: FollowedModel, version: number): void {
    const held: HeldVersion = { version, state: 'LOADING', stop: new AbortController() };
    model.held.set(version, held);
    this.#loads = this.#loads.then(async () => {
      if (this.#stopping) return;
      const { settings, redis, consumer, logger, metrics, onGroupReady } = this.#options;
      const log = { model: model.name, version };
      const started = performance.now();
      let servable: Servable | undefined;
      try {
        const stamp = await folderStamp(model, version);
        try {
          servable = await loadServable(model.config, join(model.dir, String(version)), version);
          await servable.warmup(warmupSizes(model.config));
        } catch (error) {
          servable?.dispose();
          const message = error instanceof Error ? error.message : String(error);
          model.held.delete(version);
          model.failed.set(version, { error: message, stamp });
          this.#log.error({ ...log, err: error }, 'model version failed to load; the other versions keep serving');
          await this.#announce(model);
          return;
        }
        const reader = connectRedis(settings.redis_url, { name: `worker-reader:${consumer}` });
        reader.on('error', (error: Error) => this.#log.warn({ err: error, ...log }, 'redis reader connection error'));
        const versionConsumer = new VersionConsumer({
          config: model.config,
          servable,
          redis,
          reader,
          consumer,
          idle_block_ms: settings.idle_block_ms,
          logger,
          metrics,
          onGroupReady,
        });
        Object.assign(held, { servable, reader, consumer: versionConsumer, state: 'AVAILABLE', loadedAt: Date.now() });
        held.running = keepRunning(versionConsumer, held.stop.signal, this.#log.child(log));
        this.#log.info({ ...log, backend: servable.backend, load_ms: Math.round(performance.now() - started) }, 'model version loaded and warmed up');
        await this.#announce(model);
        // The replaced version retires now that this one serves.
        await this.#reconcile(model);
      } catch (error) {
        this.#log.error({ ...log, err: error }, 'starting a model version failed');
      }
    });
  }

  /** Close admission, drain, fail what is left, stop, free (state UNLOADING until done). */
  async #retire(model: FollowedModel, held: HeldVersion): Promise<void> {
    const { redis, settings } = this.#options;
    const { version } = held;
    const log = { model: model.name, version };
    const stream = keys.requests(model.name, version);
    const memoryBefore = memoryFigures();
    this.#log.info(log, 'version left the policy: closing admission and draining');
    await setAdmission(redis, model.name, version, 'closed');
    const deadline = Date.now() + settings.drain_timeout_ms;
    let left = await redis.xlen(stream);
    while (left > 0 && Date.now() < deadline && !this.#stopping) {
      await delay(DRAIN_POLL_MS);
      left = await redis.xlen(stream);
    }
    if (left > 0 && !this.#stopping) {
      const { written, readyGroups } = await failWaiting(redis, { model: model.name, version, result_ttl_s: model.config.queue.result_ttl_s }, 'version_unloaded', `model "${model.name}" version ${version} was unloaded before this request ran; retry without a version`);
      for (const groupId of readyGroups) void this.#options.onGroupReady(groupId).catch(() => undefined);
      this.#log.warn({ ...log, failed: written, drain_timeout_ms: settings.drain_timeout_ms }, 'drain timed out; failed the rest with version_unloaded');
    }
    held.stop.abort();
    await held.running;
    await held.reader?.quit().catch(() => held.reader?.disconnect());
    held.servable?.dispose();
    model.held.delete(version);
    await this.#announce(model);
    this.#log.info({ ...log, before: memoryBefore, after: memoryFigures() }, 'model version unloaded');
  }

  /**
   * Close and empty the streams of versions nobody will serve: present in the admission hash or
   * holding requests, not held here, not to be loaded here, and held by no live worker.
   */
  async #sweep(model: FollowedModel): Promise<void> {
    const { redis, settings } = this.#options;
    const admission = await readAdmission(redis, model.name);
    let live: Map<number, LiveVersion> | undefined;
    for (const [version, state] of admission) {
      if (model.held.has(version)) continue;
      const willLoad = model.selected.includes(version) && !model.failed.has(version);
      if (willLoad) continue;
      const queued = await redis.xlen(keys.requests(model.name, version));
      if (state === 'closed' && queued === 0) continue;
      live ??= (await readLiveVersions(redis, model.name, settings.heartbeat_interval_ms)).versions;
      const holder = live.get(version);
      if (holder && holder.state !== 'END') continue;
      if (state === 'open') await setAdmission(redis, model.name, version, 'closed');
      if (queued === 0) continue;
      const failure = model.failed.get(version);
      const code = failure ? 'model_unavailable' : 'version_unloaded';
      const message = failure
        ? `model "${model.name}" version ${version} failed to load: ${failure.error}`
        : `model "${model.name}" version ${version} is no longer served; retry without a version`;
      const { written, readyGroups } = await failWaiting(redis, { model: model.name, version, result_ttl_s: model.config.queue.result_ttl_s }, code, message);
      for (const groupId of readyGroups) void this.#options.onGroupReady(groupId).catch(() => undefined);
      this.#log.warn({ model: model.name, version, failed: written, code }, 'failed the requests queued for a version no worker serves');
    }
  }

  /** This worker's versions of a model, as its heartbeat announces them. */
  #versionsOf(model: FollowedModel): Record<string, WorkerVersion> {
    const versions: Record<string, WorkerVersion> = {};
    for (const [version, failure] of model.failed) {
      if (model.selected.includes(version)) versions[version] = { state: 'END', error: failure.error };
    }
    for (const held of model.held.values()) {
      versions[held.version] = { state: held.state, ...(held.loadedAt === undefined ? {} : { loaded_at: new Date(held.loadedAt).toISOString() }) };
    }
    return versions;
  }

  /** Heartbeat for one model now (errors logged). */
  async #announce(model: FollowedModel): Promise<void> {
    const { redis, consumer, backend, settings } = this.#options;
    const open = [...model.held.values()].filter((held) => held.state === 'AVAILABLE' && model.selected.includes(held.version)).map((held) => held.version);
    try {
      await announceWorker(redis, model.name, { consumer, backend, versions: this.#versionsOf(model) }, open, settings.heartbeat_interval_ms);
    } catch (error) {
      this.#log.warn({ err: error, model: model.name }, 'heartbeat failed');
    }
  }

  async #announceAll(): Promise<void> {
    await Promise.all([...this.#models.values()].map((model) => this.#announce(model)));
  }

  /** Stop every consumer (each settles its batch), free the versions, withdraw the heartbeats. */
  async #stop(): Promise<void> {
    this.#stopping = true;
    const held = [...this.#models.values()].flatMap((model) => [...model.held.values()]);
    for (const version of held) version.stop.abort();
    await Promise.all(held.map((version) => version.running ?? Promise.resolve()));
    await Promise.all([...this.#retiring]);
    const { redis, consumer, settings } = this.#options;
    await Promise.all([...this.#models.keys()].map((name) => withdrawWorker(redis, name, consumer, settings.heartbeat_interval_ms).catch(() => undefined)));
    await this.#loads;
    for (const version of held) {
      await version.reader?.quit().catch(() => version.reader?.disconnect());
      version.servable?.dispose();
    }
    for (const model of this.#models.values()) model.held.clear();
  }

  /** Drop every Redis connection at once (a stop past its grace period). */
  disconnect(): void {
    for (const model of this.#models.values()) for (const held of model.held.values()) held.reader?.disconnect();
  }
}

/** Warm-up batch sizes: every allowed batch size, else 1 and max_batch_size. */
export function warmupSizes(config: ModelConfig): number[] {
  const { allowed_batch_sizes, max_batch_size } = config.batching;
  return allowed_batch_sizes.length > 0 ? allowed_batch_sizes : [...new Set([1, max_batch_size])];
}

/**
 * Newest mtime (ms) of the files of a version folder, or -1 when it cannot be read: a failed load is
 * retried when it changes (a copy completed, a file fixed).
 */
async function folderStamp(model: FollowedModel, version: number): Promise<number> {
  const dir = join(model.dir, String(version));
  try {
    const names = await readdir(dir);
    const times = await Promise.all(names.map((name) => stat(join(dir, name)).then((info) => info.mtimeMs, () => -1)));
    return Math.max(-1, ...times);
  } catch {
    return -1;
  }
}

/** Run a consumer until `signal` aborts, restarting its loop after a failure (Redis away at its start). */
async function keepRunning(consumer: VersionConsumer, signal: AbortSignal, log: Logger): Promise<void> {
  while (!signal.aborted) {
    try {
      await consumer.run(signal);
    } catch (error) {
      if (signal.aborted) return;
      log.error({ err: error }, 'version consumer stopped; restarting it');
      await delay(CONSUMER_RESTART_MS);
    }
  }
}

/** TF.js and process memory now: tensors held, their bytes, resident set size (bytes). */
export function memoryFigures(): { tensors: number; tensor_bytes: number; rss_bytes: number } {
  const memory = tf.memory();
  return { tensors: memory.numTensors, tensor_bytes: memory.numBytes, rss_bytes: process.memoryUsage().rss };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
