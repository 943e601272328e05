import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  CONSUMER_GROUP,
  InferlineError,
  acceptedAt,
  decode,
  isInferlineError,
  keys,
  nodeFor,
  parseEntry,
  requestLabel,
  startJobs,
  startMembers,
  whenConnected,
  type Logger,
  type MemberEntry,
  type ModelConfig,
  type RawEntry,
  type StreamEntry,
  type Redis,
} from '@inferline/shared';
import { collectBatch, predictPadded, type BatchSource } from './batcher/batcher.ts';
import { PriorityFill, type LevelSource } from './batcher/priority-fill.ts';
import type { WorkerMetrics } from './metrics.ts';
import { decodeImage } from './pipelines/image.ts';
import { predictWithSplit, type ItemResult } from './predict-with-split.ts';
import { reclaimPending } from './reclaim.ts';
import { dropEntries, settleBatch, type Settlement } from './settle.ts';

/**
 * Looks for stale pending entries per visibility_timeout_ms: an entry idle for visibility_timeout_ms is
 * claimed at the next pass, so within visibility_timeout_ms × (1 + 1 / this) of its delivery.
 */
export const RECLAIM_PASSES_PER_TIMEOUT = 4;
/** Pause after a Redis error before the loop tries again, ms. */
const ERROR_BACKOFF_MS = 500;
/** Shortest XREADGROUP BLOCK, ms (BLOCK 0 would wait forever). */
const MIN_BLOCK_MS = 1;

/**
 * A unique consumer name for this process: `worker-<11 random base64url characters>` (64 bits). It prefixes every
 * `batch_id` that job views show, so it names neither the host nor the PID (the worker logs those
 * with its consumer name at start, for whoever reads the logs).
 */
export function consumerName(): string {
  return `worker-${randomBytes(8).toString('base64url')}`;
}

/** Create the consumer groups of request streams (and the streams) unless they exist. */
export async function ensureConsumerGroups(redis: Redis, streams: readonly string[]): Promise<void> {
  await Promise.all(streams.map((stream) => ensureConsumerGroup(redis, stream)));
}

/** Create the consumer group of a request stream (and the stream) unless it exists. */
export async function ensureConsumerGroup(redis: Redis, stream: string): Promise<void> {
  try {
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM');
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error;
  }
}

/** What a consumer runs its batches on: the instances of one version (runtime/instance-pool.ts). */
export interface BatchRunner {
  readonly version: number;
  /** Batches it runs at once (instance_group.count); more wait for a free instance. */
  readonly instances: number;
  /**
   * Its passes run on the worker's main thread (`instance_group.kind: "main_thread"`): a pass costs
   * less than a Redis round trip, so a batch is run before its start verdicts arrive (see
   * {@link VersionConsumer.prepareBatch}).
   */
  readonly mainThread?: boolean;
  /**
   * One batched forward pass: one output object per decoded input, in order (`Servable.predict`).
   * @throws any error, which fails the whole batch (it is then split and retried).
   */
  predict(inputs: readonly unknown[]): Promise<Record<string, unknown>[]>;
}

/** The load that made a version servable (ms since epoch): requests accepted before it ended waited for it. */
export interface LoadWindow {
  started_at: number;
  finished_at: number;
}

/** Dependencies and options of a {@link VersionConsumer}. */
export interface VersionConsumerOptions {
  config: ModelConfig;
  /**
   * The partition this consumer reads (`shardName(model, k)`); default the model (partition 0). A
   * version of a model with `partitions: N` is served by N consumers sharing one runner.
   */
  shard?: string;
  runner: BatchRunner;
  /** Set when the version was loaded on demand: jobs that waited for the load report `load_ms`. */
  load?: LoadWindow;
  /** Command connection (scripts, pipelines). */
  redis: Redis;
  /**
   * Connection reserved for this consumer's blocking XREADGROUP (on a cluster a client of its own: the
   * read ties up its connection to the partition's master).
   */
  reader: Redis;
  consumer: string;
  idle_block_ms: number;
  logger: Logger;
  metrics: WorkerMetrics;
  /**
   * Called with each group whose last member this consumer settled: adds the group's reduce job. A
   * failure is logged; the aggregator's sweep adds the job later.
   */
  onGroupReady: (groupId: string) => Promise<void>;
}

/**
 * Serves one model version: reads its request streams (one per priority level) through the consumer
 * group, forms batches ({@link collectBatch} over a {@link PriorityFill}: higher levels first, no level
 * starved), runs each as one forward pass, and settles every request. Every
 * `visibility_timeout_ms / RECLAIM_PASSES_PER_TIMEOUT` (and at start) it first takes over entries a
 * dead consumer left pending for `visibility_timeout_ms`.
 */
export class VersionConsumer {
  readonly #options: VersionConsumerOptions;
  /** The partition read, settled and reclaimed (`shardName`). */
  readonly #shard: string;
  /** The model's config; replaced by {@link updateConfig} (batching and queue options apply from the next batch). */
  #config: ModelConfig;
  /** The version's request streams, one per priority level, highest first (`keys.requestStreams`). */
  #streams: string[];
  /** Requests read and not yet in a batch, per level. */
  #fill: PriorityFill<StreamEntry>;
  readonly #log: Logger;
  #batchCounter = 0;
  #nextReclaimAt = 0;
  /** Batches fetched and not yet settled. */
  #inHand = 0;
  /** When a batch last came in, ms since epoch (0 = never): least recently used versions are unloaded first. */
  #lastUsedAt = 0;
  /** CLIENT ID of the reader connection (changes when it reconnects). */
  #readerId = -1;

  constructor(options: VersionConsumerOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#shard = options.shard ?? options.config.name;
    this.#streams = keys.requestStreams(this.#shard, options.runner.version, options.config.batching.priority_levels);
    this.#fill = this.#newFill();
    this.#log = options.logger.child({ model: options.config.name, version: options.runner.version, ...(this.#shard === options.config.name ? {} : { shard: this.#shard }) });
  }

  /** Batches fetched and not yet settled (a version with one is never unloaded to make room). */
  get inHand(): number {
    return this.#inHand;
  }

  /** When a batch last came in, ms since epoch (0 = never). */
  get lastUsedAt(): number {
    return this.#lastUsedAt;
  }

  /**
   * Take a changed `config.json` of the model: its batching (max_batch_size, batch_timeout_ms,
   * allowed_batch_sizes) and queue options apply from the next batch formed (an idle read is ended so
   * that it is formed at once); max_inflight_batches from the next pipeline start. Preprocessing and signature changes need a new version.
   */
  updateConfig(config: ModelConfig): void {
    this.#config = config;
    // An idle read still waits with the old COUNT: end it, so the next batch is formed with the new config.
    this.#unblock(false, 'after a config change');
  }

  /**
   * CLIENT UNBLOCK the reader's read in flight (with `timeout`: as if its BLOCK ran out), sent from the
   * command connection to the server the reader reads from (client ids are per server; on a cluster
   * that is the partition's master). Failures are logged: the read then ends at its BLOCK.
   */
  #unblock(timeout: boolean, why: string): void {
    if (this.#readerId < 0) return;
    try {
      const node = nodeFor(this.#options.redis, this.#streams[0] ?? '');
      (timeout ? node.client('UNBLOCK', this.#readerId, 'TIMEOUT') : node.client('UNBLOCK', this.#readerId))
        .catch((error: unknown) => this.#log.warn({ err: error }, `CLIENT UNBLOCK ${why} failed`));
    } catch (error) {
      this.#log.warn({ err: error }, `CLIENT UNBLOCK ${why} failed`);
    }
  }

  /** Learn the CLIENT ID of the reader's connection to the partition's server (again after a reconnect). */
  async #learnReaderId(): Promise<void> {
    const { reader } = this.#options;
    await whenConnected(reader);
    this.#readerId = Number(await nodeFor(reader, this.#streams[0] ?? '').client('ID'));
  }

  /** A fill over the current streams (config's priority_levels and priority_max_skips). */
  #newFill(): PriorityFill<StreamEntry> {
    const source: LevelSource<StreamEntry> = { read: (levels, count, blockMs) => this.#read(levels, count, blockMs) };
    return new PriorityFill(source, this.#streams.length, this.#config.batching.priority_max_skips);
  }

  /**
   * Follow a changed `priority_levels` once nothing read is in hand: the streams read become the new
   * levels' (their consumer groups created). Entries left in the stream of a level removed are not read
   * any more: lower priority_levels only on a version that is drained.
   */
  async #followLevels(): Promise<void> {
    const { batching } = this.#config;
    this.#fill.maxSkips = batching.priority_max_skips;
    if (batching.priority_levels === this.#streams.length || this.#fill.buffered > 0) return;
    const streams = keys.requestStreams(this.#shard, this.#options.runner.version, batching.priority_levels);
    await ensureConsumerGroups(this.#options.redis, streams);
    this.#streams = streams;
    this.#fill = this.#newFill();
    this.#log.info({ priority_levels: streams.length }, 'reading the request streams of the new priority levels');
  }

  /** Run until `signal` aborts; the batches in hand (and the requests read ahead) are finished and settled first. */
  async run(signal: AbortSignal): Promise<void> {
    const { redis, reader } = this.#options;
    await ensureConsumerGroups(redis, this.#streams);
    await this.#learnReaderId();
    reader.on('ready', () => {
      this.#learnReaderId().catch((error: unknown) => this.#log.warn({ err: error }, 'cannot read the reader client id'));
    });
    const source: BatchSource<ReadEntry> = { read: async (count, blockMs) => this.#start(await this.#fill.read(count, blockMs)) };
    const clock = { now: () => performance.now() };
    const fetch = async (): Promise<ReadEntry[]> => {
      // A stop: hand out what was read ahead, read nothing more.
      if (signal.aborted) return this.#start(this.#fill.take(this.#config.batching.max_batch_size));
      await this.#followLevels();
      if (Date.now() >= this.#nextReclaimAt) await this.#reclaim();
      // An idle read ends in time for the next reclaim pass.
      const untilReclaim = Math.max(MIN_BLOCK_MS, this.#nextReclaimAt - Date.now());
      return collectBatch(source, clock, { ...this.#config.batching, idle_block_ms: Math.min(this.#options.idle_block_ms, untilReclaim) });
    };
    // A stop ends the idle read at once instead of after idle_block_ms.
    signal.addEventListener(
      'abort',
      () => this.#unblock(false, 'on stop'),
      { once: true },
    );
    while (!signal.aborted) {
      try {
        await this.#pipeline(fetch, signal);
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof Error && error.message.startsWith('NOGROUP')) {
          // The stream or its consumer group is gone (Redis restarted without its data, or the key was
          // deleted): create it again and carry on.
          this.#log.warn({ streams: this.#streams }, 'consumer group missing; creating it again');
          await ensureConsumerGroups(redis, this.#streams).catch((groupError: unknown) => this.#log.error({ err: groupError }, 'cannot create the consumer group'));
          continue;
        }
        this.#log.error({ err: error }, 'batch loop error; entries stay pending and are reclaimed');
        await new Promise((resolve) => setTimeout(resolve, ERROR_BACKOFF_MS));
      }
    }
  }

  /**
   * The batch pipeline (DESIGN.md section 3, `max_inflight_batches`): up to `depth` batches are in the
   * worker's hands at once, fetched one after another from the one reader connection, each prepared
   * (marked running, inputs decoded: images on libvips' threads) and run on the version's instances as
   * soon as it is fetched. With N instances, N batches run at once; the next one is fetched and
   * decoded meanwhile. `depth` is max_inflight_batches, by default instance_group.count + 1. Returns when
   * `signal` aborts, after every batch fetched has been run and settled; a batch that fails (Redis
   * error) ends the pipeline with its error once the others are settled, its entries stay pending.
   */
  async #pipeline(fetch: () => Promise<ReadEntry[]>, signal: AbortSignal): Promise<void> {
    const inHand = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    try {
      // After a stop, the requests read ahead (PriorityFill) are still run: they are this consumer's.
      while ((!signal.aborted || this.#fill.buffered > 0) && !failure) {
        const depth = this.#config.batching.max_inflight_batches ?? this.#options.runner.instances + 1;
        if (inHand.size >= depth) {
          await Promise.race(inHand);
          continue;
        }
        const entries = await fetch();
        // Entries read are this consumer's to settle, even when a stop came during the read.
        if (entries.length === 0) continue;
        this.#lastUsedAt = Date.now();
        this.#inHand++;
        const batch: Promise<void> = this.processBatch(entries)
          .catch((error: unknown) => {
            failure ??= { error };
          })
          .finally(() => {
            this.#inHand--;
            inHand.delete(batch);
          });
        inHand.add(batch);
      }
    } finally {
      await Promise.all(inHand);
    }
    if (failure) throw failure.error;
  }

  /**
   * XREADGROUP of new entries (`>`) of the streams of `levels` (0-based, highest first), as buffers,
   * at most `count` per stream, blocking at most `blockMs` when it is given.
   *
   * Redis checks blocked clients' timeouts on its cron tick (`hz`, 10 per second by default), so a
   * BLOCK of a few ms can last up to 100 ms and would stretch every batch_timeout_ms. A timer on this
   * side ends the wait on time with CLIENT UNBLOCK … TIMEOUT from the command connection. If the read
   * already returned, the UNBLOCK finds nothing to do, or at worst ends the next read early and empty,
   * which the batching loop treats as any empty read.
   */
  async #read(levels: readonly number[], count: number, blockMs?: number): Promise<StreamEntry[][]> {
    const { reader, redis, consumer } = this.#options;
    const streams = levels.map((level) => this.#streams[level] ?? '');
    // After a reconnect (a master restarted) the reader has a new id on its server.
    if (this.#readerId < 0) await this.#learnReaderId();
    const timer = blockMs === undefined ? undefined : setTimeout(() => this.#unblock(true, 'at the end of a read'), blockMs);
    let reply: [Buffer, RawEntry[]][] | null;
    try {
      const block = blockMs === undefined ? [] : ['BLOCK', blockMs];
      reply = (await reader.callBuffer(
        'XREADGROUP', 'GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, ...block, 'STREAMS', ...streams, ...streams.map(() => '>'),
      )) as [Buffer, RawEntry[]][] | null;
    } catch (error) {
      this.#readerId = -1;
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const read = levels.map((): StreamEntry[] => []);
    for (const [name, raw] of reply ?? []) {
      const at = streams.indexOf(name.toString());
      const level = levels[at];
      if (level === undefined) continue;
      const orphans: string[] = [];
      for (const item of raw) {
        const entry = parseEntry(item, level + 1);
        if (entry) read[at]?.push(entry);
        else orphans.push(item[0].toString());
      }
      await dropEntries(redis, streams[at] ?? '', orphans);
    }
    return read;
  }

  /**
   * Send start.lua for entries just taken into a batch or claimed; {@link prepareBatch} awaits the
   * verdict. The call goes out without waiting for it: while the batch fills (batch_timeout_ms) its
   * round trip is already done, so a batch starts running on time.
   */
  #start(entries: StreamEntry[]): ReadEntry[] {
    if (entries.length === 0) return [];
    const runnable = startEntries(this.#options.redis, entries, Date.now());
    // Awaited by prepareBatch; a batch abandoned after an error must not leave an unhandled rejection.
    runnable.catch(() => undefined);
    return entries.map((entry) => ({ entry, runnable }));
  }

  /** Take over entries left pending by dead consumers; run them in batches of max_batch_size. */
  async #reclaim(): Promise<void> {
    const config = this.#config;
    this.#nextReclaimAt = Date.now() + config.queue.visibility_timeout_ms / RECLAIM_PASSES_PER_TIMEOUT;
    for (const [index] of this.#streams.entries()) await this.#reclaimLevel(index + 1);
  }

  /** {@link #reclaim} of one priority level's stream. */
  async #reclaimLevel(level: number): Promise<void> {
    const { redis, consumer, runner } = this.#options;
    const config = this.#config;
    for (;;) {
      const { claimed, deadLettered, readyGroups } = await reclaimPending(redis, {
        model: this.#shard,
        version: runner.version,
        level,
        consumer,
        visibility_timeout_ms: config.queue.visibility_timeout_ms,
        max_deliveries: config.queue.max_deliveries,
        count: config.batching.max_batch_size,
        result_ttl_s: config.queue.result_ttl_s,
      });
      if (deadLettered.length > 0) this.#log.warn({ job_ids: deadLettered }, 'dead-lettered poison requests');
      this.#groupsReady(readyGroups);
      if (claimed.length === 0) return;
      this.#log.info({ count: claimed.length }, 'reclaimed pending requests');
      await this.processBatch(this.#start(claimed));
    }
  }

  /** Add the reduce job of groups whose last member was just settled (errors logged, not thrown). */
  #groupsReady(groupIds: readonly string[]): void {
    for (const groupId of groupIds) {
      this.#options.onGroupReady(groupId).then(
        () => this.#log.info({ group_id: groupId }, 'group ready; reduce job added'),
        (error: unknown) => this.#log.warn({ err: error, group_id: groupId }, 'cannot add the reduce job; the aggregator sweep will'),
      );
    }
  }

  /** Run one batch from start to settle (the reclaim path; the pipeline calls the two halves). */
  async processBatch(batch: readonly ReadEntry[]): Promise<void> {
    if (batch.length === 0) return;
    await this.runBatch(await this.prepareBatch(batch));
  }

  /**
   * First half of a batch: take the verdicts of the start calls its reads sent (its jobs are marked
   * running; entries whose job is already terminal or gone, and group members whose group finished or
   * who were settled already, are acknowledged at once without inference; those past their deadline are
   * settled failed `deadline_exceeded`, without inference),
   * decode the inputs, and for an image model decode and resize the images (in parallel, on libvips' threads).
   * An input that cannot be decoded fails alone (`invalid_input`, `invalid_image`).
   *
   * A main-thread model ({@link BatchRunner.mainThread}) is decoded and run here, on every entry,
   * while the start call is still in flight: its pass costs less than that round trip, which otherwise
   * sat on every batch's path. The outputs of entries the verdicts do not let run are dropped unread
   * (nothing of theirs is written; a job past its deadline still fails `deadline_exceeded`).
   */
  async prepareBatch(batch: readonly ReadEntry[]): Promise<PreparedBatch> {
    const batchId = `${this.#options.consumer}-${++this.#batchCounter}`;
    const startedAt = Date.now();
    const t0 = performance.now();
    const early = this.#options.runner.mainThread ? this.#runEarly(batch.map((read) => read.entry), batchId) : undefined;
    // Awaited below; when a start call fails first (Redis error) it is abandoned, and must not leave an unhandled rejection.
    early?.catch(() => undefined);
    const verdicts = await Promise.all([...new Set(batch.map((read) => read.runnable))]);
    const live: StreamEntry[] = [];
    const liveAt: number[] = [];
    const stale: StreamEntry[] = [];
    const expired: StreamEntry[] = [];
    for (const [index, { entry }] of batch.entries()) {
      if (verdicts.some((verdict) => verdict.run.has(entry))) {
        live.push(entry);
        liveAt.push(index);
      } else if (verdicts.some((verdict) => verdict.expired.has(entry))) expired.push(entry);
      else stale.push(entry);
    }
    await Promise.all([this.#drop(stale), this.#failExpired(expired, startedAt)]);
    if (early) {
      const { results, computeMs } = await early;
      const prepareMs = performance.now() - t0 - computeMs;
      return { batchId, startedAt, live, results: liveAt.map((index) => results[index]), inputs: [], prepareMs, computeMs };
    }
    const { inputs, results } = await this.#decode(live);
    return { batchId, startedAt, live, results, inputs, prepareMs: performance.now() - t0 };
  }

  /**
   * Decode the entries' inputs (images: decoded and resized on libvips' threads). An input that cannot
   * be decoded gets its failure in `results` and no input.
   * @returns per entry, in order: the model input, or undefined with its failure in `results`.
   */
  async #decode(entries: readonly StreamEntry[]): Promise<{ inputs: unknown[]; results: (ItemResult | undefined)[] }> {
    const preprocess = this.#config.preprocess;
    const results = new Array<ItemResult | undefined>(entries.length);
    const inputs = await Promise.all(
      entries.map(async (entry, index) => {
        try {
          const input = decode(entry.input);
          if (preprocess?.type !== 'image') return input;
          if (!(input instanceof Uint8Array)) throw new InferlineError('invalid_input', 'an image model takes image bytes');
          return await decodeImage(input, preprocess);
        } catch (error) {
          const code = isInferlineError(error) && error.code === 'invalid_image' ? 'invalid_image' : 'invalid_input';
          results[index] = { ok: false, code, message: error instanceof Error ? error.message : String(error) };
          return undefined;
        }
      }),
    );
    return { inputs, results };
  }

  /**
   * One forward pass over the inputs whose `results` entry is still empty (split in halves on failure,
   * padded to allowed_batch_sizes), filling those entries.
   * @returns the pass's duration, ms (0 when nothing ran).
   */
  async #predict(inputs: readonly unknown[], results: (ItemResult | undefined)[], batchId: string): Promise<number> {
    const runnable = inputs.flatMap((input, index) => (results[index] ? [] : [{ index, input }]));
    if (runnable.length === 0) return 0;
    const config = this.#config;
    const { runner } = this.#options;
    const t0 = performance.now();
    const outputs = await predictWithSplit(
      runnable.map((item) => item.input),
      (items) => predictPadded(items, config.batching.allowed_batch_sizes, (padded) => runner.predict(padded)),
      (error, size) => this.#log.warn({ err: error, batch_id: batchId, size }, 'batch failed; retrying in halves'),
    );
    runnable.forEach((item, i) => (results[item.index] = outputs[i]));
    return performance.now() - t0;
  }

  /** Decode and run every entry of a batch before its start verdicts are in ({@link prepareBatch}). */
  async #runEarly(entries: readonly StreamEntry[], batchId: string): Promise<{ results: (ItemResult | undefined)[]; computeMs: number }> {
    const { inputs, results } = await this.#decode(entries);
    return { results, computeMs: await this.#predict(inputs, results, batchId) };
  }

  /** Acknowledge and delete entries that need no result, each in its level's stream. */
  async #drop(entries: readonly StreamEntry[]): Promise<void> {
    const { redis } = this.#options;
    await Promise.all(
      this.#streams.map((stream, i) => dropEntries(redis, stream, entries.filter((entry) => entry.level === i + 1).map((entry) => entry.entryId))),
    );
  }

  /**
   * Settle entries whose deadline passed before their batch formed (start.lua / start-members.lua said
   * so) as failed `deadline_exceeded`, without inference (DESIGN.md section 2, Triton's REJECT).
   */
  async #failExpired(entries: readonly StreamEntry[], startedAt: number): Promise<void> {
    if (entries.length === 0) return;
    const { redis, runner } = this.#options;
    const config = this.#config;
    const settlements: Settlement[] = entries.map((entry) => ({
      entry,
      result: { ok: false, code: 'deadline_exceeded', message: 'its queue deadline (timeout_ms) passed before its batch was formed; not run' },
      queue_ms: Math.max(0, startedAt - acceptedAt(entry.entryId)),
    }));
    const figures = { inference_ms: 0, batch_size: 0, batch_id: '', result_ttl_s: config.queue.result_ttl_s };
    const { readyGroups } = await settleBatch(redis, this.#shard, runner.version, figures, settlements);
    this.#groupsReady(readyGroups);
    this.#options.metrics.observeExpired(config.name, runner.version, entries.length);
    this.#log.info({ count: entries.length, job_ids: entries.map(requestLabel) }, 'requests past their deadline failed without inference');
  }

  /**
   * Second half of a batch: one forward pass over the decoded inputs (split in halves on failure), then
   * settle every request in one pipelined round trip, record metrics and log one line.
   */
  async runBatch(batch: PreparedBatch): Promise<void> {
    const { live, results, inputs, batchId, startedAt } = batch;
    if (live.length === 0) return;
    const { redis, runner, load } = this.#options;
    const config = this.#config;
    const computeMs = (batch.computeMs ?? 0) + (await this.#predict(inputs, results, batchId));
    const inferenceMs = batch.prepareMs + computeMs;

    const settlements: Settlement[] = live.map((entry, i) => {
      const accepted = acceptedAt(entry.entryId);
      const settlement: Settlement = { entry, result: results[i] as ItemResult, queue_ms: Math.max(0, startedAt - accepted) };
      // A request accepted before its version finished loading waited for the load.
      if (load && accepted < load.finished_at) settlement.load_ms = load.finished_at - Math.max(accepted, load.started_at);
      return settlement;
    });
    const figures = { inference_ms: inferenceMs, batch_size: live.length, batch_id: batchId, result_ttl_s: config.queue.result_ttl_s };
    const { written, readyGroups } = await settleBatch(redis, this.#shard, runner.version, figures, settlements);
    this.#groupsReady(readyGroups);
    const settled = settlements.map((s) => s.result);
    this.#options.metrics.observeBatch(config.name, runner.version, settled, settlements.map((s) => s.queue_ms), computeMs);
    // The line (with every job id) is built only when it is written.
    if (!this.#log.isLevelEnabled('info')) return;
    this.#log.info(
      {
        batch_id: batchId,
        batch_size: live.length,
        inference_ms: Number(inferenceMs.toFixed(3)),
        compute_ms: Number(computeMs.toFixed(3)),
        max_queue_ms: Math.max(...settlements.map((s) => s.queue_ms)),
        failed: settled.filter((result) => !result.ok).length,
        written,
        job_ids: live.map(requestLabel),
      },
      'batch',
    );
  }
}

/** What start.lua / start-members.lua said of the entries of one read. */
export interface StartVerdicts {
  /** To run. */
  run: Set<StreamEntry>;
  /** Past their deadline: to settle failed with `deadline_exceeded`, without inference. */
  expired: Set<StreamEntry>;
}

/** An entry as the batching loop collects it: with the verdict of the start.lua call its read sent. */
export interface ReadEntry {
  entry: StreamEntry;
  /** The verdicts on the entries of its read; an entry in neither set is dropped. */
  runnable: Promise<StartVerdicts>;
}

/** A batch whose first half ({@link VersionConsumer.prepareBatch}) is done. */
export interface PreparedBatch {
  batchId: string;
  /** When its jobs were marked running, ms since epoch. */
  startedAt: number;
  /** The entries whose jobs are still to be settled. */
  live: StreamEntry[];
  /** Per entry of `live`: already failed (decode) or undefined = to run. */
  results: (ItemResult | undefined)[];
  /** Per entry of `live`: the decoded model input (none when the batch already ran: `computeMs`). */
  inputs: unknown[];
  /** Time spent preparing (mark running, decode), ms. */
  prepareMs: number;
  /** Time its pass already took, ms, when it ran before the verdicts (a main-thread model). */
  computeMs?: number;
}

/**
 * Which entries of a batch to run: single jobs through start.lua (marked running; terminal or gone ones
 * are stale), group members through start-members.lua, one call per group (members of a finished
 * group, or already settled, are stale; cancelled jobs too). The calls go out together (auto-pipelined).
 * @returns the entries to run, and those past their deadline (to fail without inference).
 */
async function startEntries(redis: Redis, batch: readonly StreamEntry[], startedAt: number): Promise<StartVerdicts> {
  const jobIds: string[] = [];
  const groups = new Map<string, MemberEntry[]>();
  for (const entry of batch) {
    if (entry.kind === 'job') {
      jobIds.push(entry.jobId);
      continue;
    }
    const members = groups.get(entry.groupId);
    if (members) members.push(entry);
    else groups.set(entry.groupId, [entry]);
  }
  const [statuses, verdicts] = await Promise.all([
    startJobs(redis, jobIds, startedAt),
    Promise.all(
      [...groups].map(([groupId, members]) =>
        startMembers(redis, groupId, members.map((entry) => entry.index), startedAt),
      ),
    ),
  ]);
  const run = new Set<StreamEntry>();
  const expired = new Set<StreamEntry>();
  let job = 0;
  for (const entry of batch) {
    if (entry.kind !== 'job') continue;
    const status = statuses[job++];
    if (status === 'queued' || status === 'running') run.add(entry);
    else if (status === 'deadline_exceeded') expired.add(entry);
  }
  [...groups.values()].forEach((members, g) => {
    members.forEach((entry, i) => {
      const verdict = verdicts[g]?.[i];
      if (verdict === 'run') run.add(entry);
      else if (verdict === 'deadline_exceeded') expired.add(entry);
    });
  });
  return { run, expired };
}
