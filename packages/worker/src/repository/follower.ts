import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InferlineError,
  announceWorker,
  connectRedis,
  isCluster,
  keySlot,
  keys,
  modelShards,
  queueLength,
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
import { InstancePool } from '../runtime/instance-pool.ts';
import { failWaiting } from '../settle.ts';
import { VersionConsumer, ensureConsumerGroup, type LoadWindow } from '../version-consumer.ts';

/** While a version drains, how often its stream length is checked, ms. */
const DRAIN_POLL_MS = 100;
/** Pause before a version consumer whose loop failed (Redis away at its start) runs again, ms. */
const CONSUMER_RESTART_MS = 1_000;
/**
 * Longest wait of the demand watcher's XREAD on the streams of versions not loaded, ms: it bounds how
 * late a version that just became one to watch is seen, should its wake-up cross the read in flight.
 */
const DEMAND_BLOCK_MS = 1_000;
/** Pause before the demand watcher retries after a Redis error, ms. */
const DEMAND_RETRY_MS = 500;
const MB = 1024 * 1024;

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

/**
 * A version this worker holds: loading, serving, or draining before it unloads; under a memory budget
 * also STANDBY: served on demand but not loaded (announced AVAILABLE with `loaded: false`, admission
 * open; its stream is watched, and the first request loads it).
 */
interface HeldVersion {
  version: number;
  state: 'STANDBY' | 'LOADING' | 'AVAILABLE' | 'UNLOADING';
  /** A STANDBY version whose load on demand is queued or running (it stays announced AVAILABLE). */
  demanded?: { since: number };
  pool?: InstancePool;
  /** One consumer per partition of the model (`partitions`), partition 0 first, all on `pool`. */
  consumers?: VersionConsumer[];
  /** Each consumer's reader connection, in the same order. */
  readers?: Redis[];
  /** Aborted to stop its consumers. */
  stop: AbortController;
  /** The consumers' loops; resolves once they stopped and settled their batches. */
  running?: Promise<void>;
  /** When it became AVAILABLE, ms since epoch. */
  loadedAt?: number;
  /** What the memory budget counts for it while loaded: (its folder's bytes + INSTANCE_OVERHEAD_MB) × instances. */
  footprint?: number;
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
  /** MODEL_MEMORY_BUDGET_MB in bytes; 0 = no budget (every served version loaded at start). */
  readonly #budgetBytes: number;
  /** Ends the demand watcher's wait: the set of STANDBY versions changed. */
  #wakeWatcher: () => void = () => undefined;
  /** CLIENT ID of the demand watcher's connection, for CLIENT UNBLOCK (-1 = none). */
  #watcherId = -1;
  #watcher?: Redis;

  constructor(options: FollowerOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.#budgetBytes = options.settings.model_memory_budget_mb * MB;
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
    const watching = this.#budgetBytes > 0 ? this.#watchDemand() : Promise.resolve();
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
      this.#wakeWatcher();
      await watching;
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
      if (JSON.stringify(followed.config.instance_group) !== JSON.stringify(model.config.instance_group) && followed.held.size > 0) {
        this.#log.info({ model: name, instances: this.#instanceCount(model.config) }, 'instance_group changed: applies to versions loaded from now on');
      }
      followed.config = model.config;
      followed.failed.clear();
      for (const held of followed.held.values()) {
        for (const versionConsumer of held.consumers ?? []) versionConsumer.updateConfig(model.config);
        // More partitions: the new ones get their consumers at once (fewer: the old ones keep theirs).
        if (held.pool && held.state === 'AVAILABLE') this.#startConsumers(followed, held, model.config);
      }
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
      if (this.#budgetBytes > 0 && !model.config.preload) this.#standby(model, version);
      else this.#load(model, version);
      changed = true;
    }
    const serving = (held: HeldVersion | undefined): boolean => held?.state === 'AVAILABLE' || held?.state === 'STANDBY';
    const replacementReady = model.selected.length === 0 || model.selected.some((v) => serving(model.held.get(v)));
    if (replacementReady) {
      for (const held of model.held.values()) {
        if (held.state === 'STANDBY' && !held.demanded && !model.selected.includes(held.version)) {
          changed = true;
          this.#retireStandby(model, held);
          continue;
        }
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

  /** Hold a version STANDBY: served on demand (admission open), loaded on its first request. */
  #standby(model: FollowedModel, version: number): void {
    model.held.set(version, { version, state: 'STANDBY', stop: new AbortController() });
    this.#wakeWatcher();
  }

  /**
   * Queue the load of one version: LOADING → AVAILABLE (or failed); for a STANDBY version (a load on
   * demand) it stays announced AVAILABLE throughout, and the jobs that waited for it report `load_ms`.
   * Loads run one at a time; under a memory budget each first makes room ({@link #makeRoom}).
   */
  #load(model: FollowedModel, version: number): void {
    const standby = model.held.get(version);
    const held: HeldVersion = standby ?? { version, state: 'LOADING', stop: new AbortController() };
    if (standby) held.demanded = { since: Date.now() };
    model.held.set(version, held);
    this.#loads = this.#loads.then(async () => {
      if (this.#stopping || model.held.get(version) !== held) return;
      const { settings, logger, metrics } = this.#options;
      const log = { model: model.name, version };
      const started = performance.now();
      const startedAt = held.demanded?.since ?? Date.now();
      const count = this.#instanceCount(model.config);
      let pool: InstancePool | undefined;
      try {
        const dir = join(model.dir, String(version));
        const stamp = await folderStamp(model, version);
        // What the budget counts: per instance, its weights (the folder's size) and its thread's runtime.
        const footprint = ((await folderBytes(dir)) + settings.instance_overhead_mb * MB) * count;
        try {
          if (this.#budgetBytes > 0) await this.#makeRoom(footprint, held, model.name);
          pool = await InstancePool.start({
            config: model.config,
            versionDir: dir,
            version,
            backend: this.#options.backend,
            count,
            ...(model.config.instance_group?.kind ? { kind: model.config.instance_group.kind } : {}),
            warmupSizes: warmupSizes(model.config),
            logger,
          });
        } catch (error) {
          await pool?.dispose();
          const message = error instanceof Error ? error.message : String(error);
          model.held.delete(version);
          model.failed.set(version, { error: message, stamp });
          this.#log.error({ ...log, err: error }, 'model version failed to load; the other versions keep serving');
          await this.#announce(model);
          await this.#sweep(model).catch((sweepError: unknown) => this.#log.warn({ err: sweepError, ...log }, 'sweep after a failed load failed'));
          return;
        }
        const loadedAt = Date.now();
        const load: LoadWindow | undefined = held.demanded ? { started_at: startedAt, finished_at: loadedAt } : undefined;
        delete held.demanded;
        Object.assign(held, { pool, consumers: [], readers: [], state: 'AVAILABLE', loadedAt, footprint });
        this.#startConsumers(model, held, model.config, load);
        metrics.observeLoad(model.name, version);
        metrics.setWeightBytes(this.#heldBytes());
        this.#log.info(
          { ...log, backend: pool.backend, instances: count, budget_mb: Number((footprint / MB).toFixed(1)), load_ms: Math.round(performance.now() - started), on_demand: load !== undefined },
          'model version loaded and warmed up',
        );
        await this.#announce(model);
        // The replaced version retires now that this one serves.
        await this.#reconcile(model);
      } catch (error) {
        this.#log.error({ ...log, err: error }, 'starting a model version failed');
      }
    });
  }

  /**
   * Start a consumer, with its own reader connection, for each partition of `config.partitions` that
   * the held version has none for yet (all of them right after its load; the new ones when
   * `partitions` grows). Every consumer runs its batches on the version's one instance pool.
   */
  #startConsumers(model: FollowedModel, held: HeldVersion, config: ModelConfig, load?: LoadWindow): void {
    const { settings, redis, consumer, logger, metrics, onGroupReady } = this.#options;
    const pool = held.pool;
    if (!pool) return;
    const consumers = (held.consumers ??= []);
    const readers = (held.readers ??= []);
    const shards = modelShards(model.name, config.partitions);
    for (let k = consumers.length; k < shards.length; k++) {
      const log = { model: model.name, version: held.version, ...(k === 0 ? {} : { shard: shards[k] }) };
      const reader = connectRedis(settings.redis_url, { name: `worker-reader:${consumer}` });
      reader.on('error', (error: Error) => this.#log.warn({ err: error, ...log }, 'redis reader connection error'));
      const versionConsumer = new VersionConsumer({
        config,
        shard: shards[k],
        runner: pool,
        ...(load ? { load } : {}),
        redis,
        reader,
        consumer,
        idle_block_ms: settings.idle_block_ms,
        logger,
        metrics,
        onGroupReady,
      });
      consumers.push(versionConsumer);
      readers.push(reader);
      const running = keepRunning(versionConsumer, held.stop.signal, this.#log.child(log));
      held.running = held.running ? Promise.all([held.running, running]).then(() => undefined) : running;
    }
  }

  /** Instances per version of a model: its instance_group, else the worker's instance_count. */
  #instanceCount(config: ModelConfig): number {
    if (config.instance_group?.kind === 'main_thread') return 1;
    return config.instance_group?.count ?? this.#options.settings.instance_count;
  }

  /** Bytes of weights held now, as the budget counts them. */
  #heldBytes(): number {
    let bytes = 0;
    for (const model of this.#models.values()) for (const held of model.held.values()) if (held.pool) bytes += held.footprint ?? 0;
    return bytes;
  }

  /**
   * Unload versions until `footprint` more bytes fit the budget: the least recently used first, idle
   * ones (no batch in hand) before busy ones; a busy one stops fetching and is unloaded only once its
   * batches in hand are settled, so no batch in flight ever loses its model.
   * @throws InferlineError `model_unavailable` when the version alone needs more than the whole budget.
   */
  async #makeRoom(footprint: number, loading: HeldVersion, name: string): Promise<void> {
    if (footprint > this.#budgetBytes) {
      throw new InferlineError(
        'model_unavailable',
        `model ${name} version ${loading.version} needs ${(footprint / MB).toFixed(1)} MB with its instances; MODEL_MEMORY_BUDGET_MB is ${this.#options.settings.model_memory_budget_mb}`,
      );
    }
    while (!this.#stopping && this.#heldBytes() + footprint > this.#budgetBytes) {
      const candidates: { model: FollowedModel; held: HeldVersion }[] = [];
      let pending = false;
      for (const model of this.#models.values()) {
        for (const held of model.held.values()) {
          if (held.state !== 'AVAILABLE' || !held.pool || held === loading) continue;
          // A version just loaded for its queued requests serves a batch before it can be evicted, so
          // two models that take turns under a tight budget make progress instead of evicting each other.
          if (lastUsedAt(held) === 0 && (await queueLength(this.#options.redis, model.name, held.version, model.config.batching.priority_levels, model.config.partitions)) > 0) {
            pending = true;
            continue;
          }
          candidates.push({ model, held });
        }
      }
      if (candidates.length === 0 && pending) {
        await delay(DRAIN_POLL_MS);
        continue;
      }
      if (candidates.length === 0) {
        // Versions draining before they unload still hold their weights: wait for them.
        const draining = [...this.#models.values()].some((model) => [...model.held.values()].some((held) => held.state === 'UNLOADING' && held.pool));
        if (!draining) return;
        await delay(DRAIN_POLL_MS);
        continue;
      }
      const lastUsed = (held: HeldVersion): number => lastUsedAt(held) || held.loadedAt || 0;
      candidates.sort((a, b) => Number(inHand(a.held) > 0) - Number(inHand(b.held) > 0) || lastUsed(a.held) - lastUsed(b.held));
      const victim = candidates[0] as { model: FollowedModel; held: HeldVersion };
      await this.#evict(victim.model, victim.held);
    }
  }

  /**
   * Unload a version to make room, keeping it served on demand (STANDBY, admission open): its consumer
   * stops fetching and settles its batches in hand, then its instances end. Requests still queued wait
   * in the stream and load it again.
   */
  async #evict(model: FollowedModel, held: HeldVersion): Promise<void> {
    const log = { model: model.name, version: held.version };
    const idleMs = Date.now() - (lastUsedAt(held) || held.loadedAt || Date.now());
    await stopServing(held);
    const memory = memoryFigures();
    for (const key of ['pool', 'consumers', 'readers', 'running', 'loadedAt', 'footprint'] as const) delete held[key];
    Object.assign(held, { state: 'STANDBY', stop: new AbortController() });
    this.#options.metrics.observeEviction(model.name, held.version);
    this.#options.metrics.setWeightBytes(this.#heldBytes());
    this.#log.info({ ...log, idle_ms: idleMs, rss_bytes: memory.rss_bytes }, 'model version evicted (least recently used) to make room under MODEL_MEMORY_BUDGET_MB');
    await this.#announce(model);
    this.#wakeWatcher();
  }

  /** A STANDBY version left the policy: close its admission; requests that got in before fail (`version_unloaded`). */
  #retireStandby(model: FollowedModel, held: HeldVersion): void {
    model.held.delete(held.version);
    this.#wakeWatcher();
    const { redis } = this.#options;
    const retiring = (async () => {
      await setAdmission(redis, model.name, held.version, 'closed', model.config.partitions);
      const { written, readyGroups } = await failWaiting(
        redis,
        { model: model.name, version: held.version, result_ttl_s: model.config.queue.result_ttl_s, levels: model.config.batching.priority_levels, partitions: model.config.partitions },
        'version_unloaded',
        `model "${model.name}" version ${held.version} was unloaded before this request ran; retry without a version`,
      );
      for (const groupId of readyGroups) void this.#options.onGroupReady(groupId).catch(() => undefined);
      if (written > 0) this.#log.warn({ model: model.name, version: held.version, failed: written }, 'version not loaded left the policy; failed its queued requests with version_unloaded');
      await this.#announce(model);
    })().catch((error: unknown) => this.#log.error({ err: error, model: model.name, version: held.version }, 'retiring a version not loaded failed'));
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
  }

  /**
   * Under a memory budget: watch the request streams of the STANDBY versions (one XREAD on one
   * connection, from each stream's last id) and load a version when a request for it arrives, or at
   * once when requests already wait in its stream. Runs until the follower stops.
   */
  async #watchDemand(): Promise<void> {
    const { settings, consumer, redis } = this.#options;
    const watcher = connectRedis(settings.redis_url, { name: `worker-demand:${consumer}` });
    this.#watcher = watcher;
    watcher.on('error', (error: Error) => this.#log.warn({ err: error }, 'redis demand watcher connection error'));
    // On a cluster the watched streams are on several masters, each with its own client ids: no
    // CLIENT UNBLOCK there; each read blocks at most DEMAND_BLOCK_MS / (slots read) instead.
    watcher.on('ready', () => {
      if (!isCluster(watcher)) watcher.client('ID').then((id) => (this.#watcherId = Number(id)), () => undefined);
    });
    const lastIds = new Map<string, string>();
    let woken = false;
    let wake: Promise<void> = Promise.resolve();
    const rearm = (): void => {
      woken = false;
      wake = new Promise<void>((resolve) => {
        this.#wakeWatcher = () => {
          woken = true;
          resolve();
          if (this.#watcherId >= 0) redis.client('UNBLOCK', this.#watcherId).catch(() => undefined);
        };
      });
    };
    try {
      while (!this.#stopping) {
        rearm();
        try {
          const watched: { model: FollowedModel; held: HeldVersion; stream: string }[] = [];
          for (const model of this.#models.values()) {
            for (const held of model.held.values()) {
              if (held.state !== 'STANDBY' || held.demanded) continue;
              // A request at any priority level is a demand.
              for (const shard of modelShards(model.name, model.config.partitions)) {
                for (const stream of keys.requestStreams(shard, held.version, model.config.batching.priority_levels)) watched.push({ model, held, stream });
              }
            }
          }
          for (const stream of lastIds.keys()) if (!watched.some((w) => w.stream === stream)) lastIds.delete(stream);
          for (const { model, held, stream } of watched) {
            if (lastIds.has(stream)) continue;
            await ensureConsumerGroup(redis, stream);
            lastIds.set(stream, await lastGeneratedId(redis, stream));
            // Requests queued before the watch began (a backlog, or left behind by an eviction).
            if ((await redis.xlen(stream)) > 0) this.#load(model, held.version);
          }
          const waiting = watched.filter((w) => !w.held.demanded);
          if (waiting.length === 0) {
            if (!woken) await wake;
            continue;
          }
          if (woken) continue;
          // One XREAD per slot: a multi-key command must stay in one slot on a cluster (one group on one Redis).
          const bySlot = groupBySlot(watcher, waiting.map((w) => w.stream));
          const blockMs = Math.max(1, Math.floor(Math.min(settings.idle_block_ms, DEMAND_BLOCK_MS) / bySlot.length));
          for (const streams of bySlot) {
            if (woken) break;
            const reply = await watcher.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', ...streams, ...streams.map((s) => lastIds.get(s) ?? '0-0'));
            for (const [stream, entries] of reply ?? []) {
              const last = entries.at(-1);
              if (last) lastIds.set(stream, last[0]);
              const hit = waiting.find((w) => w.stream === stream);
              if (hit && !hit.held.demanded && hit.model.held.get(hit.held.version) === hit.held) this.#load(hit.model, hit.held.version);
            }
          }
        } catch (error) {
          if (this.#stopping) break;
          this.#log.warn({ err: error }, 'demand watcher error; retrying');
          lastIds.clear();
          await delay(DEMAND_RETRY_MS);
        }
      }
    } finally {
      watcher.disconnect();
    }
  }

  /** Close admission, drain, fail what is left, stop, free (state UNLOADING until done). */
  async #retire(model: FollowedModel, held: HeldVersion): Promise<void> {
    const { redis, settings } = this.#options;
    const { version } = held;
    const log = { model: model.name, version };
    const levels = model.config.batching.priority_levels;
    const memoryBefore = memoryFigures();
    this.#log.info(log, 'version left the policy: closing admission and draining');
    const partitions = Math.max(model.config.partitions, held.consumers?.length ?? 1);
    await setAdmission(redis, model.name, version, 'closed', partitions);
    const deadline = Date.now() + settings.drain_timeout_ms;
    let left = await queueLength(redis, model.name, version, levels, partitions);
    while (left > 0 && Date.now() < deadline && !this.#stopping) {
      await delay(DRAIN_POLL_MS);
      left = await queueLength(redis, model.name, version, levels, partitions);
    }
    if (left > 0 && !this.#stopping) {
      const { written, readyGroups } = await failWaiting(redis, { model: model.name, version, result_ttl_s: model.config.queue.result_ttl_s, levels, partitions }, 'version_unloaded', `model "${model.name}" version ${version} was unloaded before this request ran; retry without a version`);
      for (const groupId of readyGroups) void this.#options.onGroupReady(groupId).catch(() => undefined);
      this.#log.warn({ ...log, failed: written, drain_timeout_ms: settings.drain_timeout_ms }, 'drain timed out; failed the rest with version_unloaded');
    }
    await stopServing(held);
    model.held.delete(version);
    this.#options.metrics.setWeightBytes(this.#heldBytes());
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
      const { partitions } = model.config;
      const queued = await queueLength(redis, model.name, version, model.config.batching.priority_levels, partitions);
      if (state === 'closed' && queued === 0) continue;
      live ??= (await readLiveVersions(redis, model.name, settings.heartbeat_interval_ms)).versions;
      const holder = live.get(version);
      if (holder && holder.state !== 'END') continue;
      if (state === 'open') await setAdmission(redis, model.name, version, 'closed', partitions);
      if (queued === 0) continue;
      const failure = model.failed.get(version);
      const code = failure ? 'model_unavailable' : 'version_unloaded';
      const message = failure
        ? `model "${model.name}" version ${version} failed to load: ${failure.error}`
        : `model "${model.name}" version ${version} is no longer served; retry without a version`;
      const { written, readyGroups } = await failWaiting(redis, { model: model.name, version, result_ttl_s: model.config.queue.result_ttl_s, levels: model.config.batching.priority_levels, partitions }, code, message);
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
      const state = held.state === 'STANDBY' ? 'AVAILABLE' : held.state;
      versions[held.version] = {
        state,
        ...(held.loadedAt === undefined ? {} : { loaded_at: new Date(held.loadedAt).toISOString() }),
        ...(state === 'AVAILABLE' ? { loaded: held.pool !== undefined } : {}),
      };
    }
    return versions;
  }

  /** Heartbeat for one model now (errors logged). */
  async #announce(model: FollowedModel): Promise<void> {
    const { redis, consumer, backend, settings } = this.#options;
    const open = [...model.held.values()]
      .filter((held) => (held.state === 'AVAILABLE' || held.state === 'STANDBY') && model.selected.includes(held.version))
      .map((held) => held.version);
    try {
      await announceWorker(redis, model.name, { consumer, backend, versions: this.#versionsOf(model) }, open, settings.heartbeat_interval_ms, Date.now(), model.config.partitions);
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
    // Their consumers have stopped already (above); a load that finished meanwhile stops here.
    for (const version of held) await stopServing(version);
    for (const model of this.#models.values()) model.held.clear();
  }

  /** Drop every Redis connection at once (a stop past its grace period). */
  disconnect(): void {
    for (const model of this.#models.values()) for (const held of model.held.values()) for (const reader of held.readers ?? []) reader.disconnect();
    this.#watcher?.disconnect();
  }
}

/**
 * Stop serving a held version: its consumer stops fetching and settles the batches it holds, its
 * reader connection closes, its instance threads end (their memory with them).
 */
async function stopServing(held: HeldVersion): Promise<void> {
  held.stop.abort();
  await held.running;
  await Promise.all((held.readers ?? []).map((reader) => reader.quit().catch(() => reader.disconnect())));
  await held.pool?.dispose();
}

/** When any of a version's consumers last took a batch, ms since epoch (0 = never). */
function lastUsedAt(held: HeldVersion): number {
  return Math.max(0, ...(held.consumers ?? []).map((c) => c.lastUsedAt));
}

/** Batches a version's consumers hold, fetched and not settled. */
function inHand(held: HeldVersion): number {
  return (held.consumers ?? []).reduce((sum, c) => sum + c.inHand, 0);
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

/** Process memory now: resident set size (bytes), which includes every instance thread's heap. */
export function memoryFigures(): { rss_bytes: number } {
  return { rss_bytes: process.memoryUsage().rss };
}

/** Total size of the files of a version folder, bytes (what a load reads; the weights as the budget counts them). */
async function folderBytes(dir: string): Promise<number> {
  const names = await readdir(dir);
  const sizes = await Promise.all(names.map((name) => stat(join(dir, name)).then((info) => (info.isFile() ? info.size : 0), () => 0)));
  return sizes.reduce((sum, size) => sum + size, 0);
}

/** Streams grouped by Redis Cluster slot (one group holding them all on a single Redis). */
function groupBySlot(redis: Redis, streams: readonly string[]): string[][] {
  if (!isCluster(redis)) return [[...streams]];
  const groups = new Map<number, string[]>();
  for (const stream of streams) {
    const slot = keySlot(stream);
    const group = groups.get(slot);
    if (group) group.push(stream);
    else groups.set(slot, [stream]);
  }
  return [...groups.values()];
}

/** `last-generated-id` of a stream (XINFO STREAM): entries added later have greater ids. */
async function lastGeneratedId(redis: Redis, stream: string): Promise<string> {
  const info = (await redis.xinfo('STREAM', stream)) as unknown[];
  const at = info.indexOf('last-generated-id');
  return at >= 0 ? String(info[at + 1]) : '0-0';
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
