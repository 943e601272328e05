import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import {
  CONSUMER_GROUP,
  InferlineError,
  acceptedAt,
  decode,
  isInferlineError,
  keys,
  parseEntry,
  requestLabel,
  startJobs,
  startMembers,
  type Logger,
  type MemberEntry,
  type ModelConfig,
  type RawEntry,
  type StreamEntry,
} from '@inferline/shared';
import { collectBatch, predictPadded, type BatchSource } from './batcher/batcher.ts';
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
  runner: BatchRunner;
  /** Set when the version was loaded on demand: jobs that waited for the load report `load_ms`. */
  load?: LoadWindow;
  /** Command connection (scripts, pipelines). */
  redis: Redis;
  /** Connection reserved for this consumer's blocking XREADGROUP. */
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
 * Serves one model version: reads its request stream through the consumer group, forms batches
 * ({@link collectBatch}), runs each as one forward pass, and settles every request. Every
 * `visibility_timeout_ms / RECLAIM_PASSES_PER_TIMEOUT` (and at start) it first takes over entries a
 * dead consumer left pending for `visibility_timeout_ms`.
 */
export class VersionConsumer {
  readonly #options: VersionConsumerOptions;
  /** The model's config; replaced by {@link updateConfig} (batching and queue options apply from the next batch). */
  #config: ModelConfig;
  readonly #stream: string;
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
    this.#stream = keys.requests(options.config.name, options.runner.version);
    this.#log = options.logger.child({ model: options.config.name, version: options.runner.version });
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
    if (this.#readerId >= 0) {
      this.#options.redis.client('UNBLOCK', this.#readerId).catch((error: unknown) => this.#log.warn({ err: error }, 'CLIENT UNBLOCK after a config change failed'));
    }
  }

  /** Run until `signal` aborts; the batch in hand is finished and settled first. */
  async run(signal: AbortSignal): Promise<void> {
    const { redis, reader } = this.#options;
    await ensureConsumerGroup(redis, this.#stream);
    const learnReaderId = async (): Promise<void> => {
      this.#readerId = Number(await reader.client('ID'));
    };
    await learnReaderId();
    reader.on('ready', () => {
      learnReaderId().catch((error: unknown) => this.#log.warn({ err: error }, 'cannot read the reader client id'));
    });
    const source: BatchSource<ReadEntry> = { read: (count, blockMs) => this.#read(count, blockMs) };
    const clock = { now: () => performance.now() };
    const fetch = async (): Promise<ReadEntry[]> => {
      if (Date.now() >= this.#nextReclaimAt) await this.#reclaim();
      // An idle read ends in time for the next reclaim pass.
      const untilReclaim = Math.max(MIN_BLOCK_MS, this.#nextReclaimAt - Date.now());
      return collectBatch(source, clock, { ...this.#config.batching, idle_block_ms: Math.min(this.#options.idle_block_ms, untilReclaim) });
    };
    // A stop ends the idle read at once instead of after idle_block_ms.
    signal.addEventListener(
      'abort',
      () => {
        redis.client('UNBLOCK', this.#readerId).catch((error: unknown) => this.#log.warn({ err: error }, 'CLIENT UNBLOCK on stop failed'));
      },
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
          this.#log.warn({ stream: this.#stream }, 'consumer group missing; creating it again');
          await ensureConsumerGroup(redis, this.#stream).catch((groupError: unknown) => this.#log.error({ err: groupError }, 'cannot create the consumer group'));
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
      while (!signal.aborted && !failure) {
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
   * XREADGROUP of new entries (`>`), as buffers, blocking at most `blockMs`.
   *
   * Redis checks blocked clients' timeouts on its cron tick (`hz`, 10 per second by default), so a
   * BLOCK of a few ms can last up to 100 ms and would stretch every batch_timeout_ms. A timer on this
   * side ends the wait on time with CLIENT UNBLOCK … TIMEOUT from the command connection. If the read
   * already returned, the UNBLOCK finds nothing to do, or at worst ends the next read early and empty,
   * which the batching loop treats as any empty read.
   *
   * The entries' start.lua call goes out as soon as they are read, without waiting for it: while the
   * batch fills (batch_timeout_ms) its round trip is already done, so a batch starts running on time.
   */
  async #read(count: number, blockMs: number): Promise<ReadEntry[]> {
    const { reader, redis, consumer } = this.#options;
    const timer = setTimeout(() => {
      redis.client('UNBLOCK', this.#readerId, 'TIMEOUT').catch((error: unknown) => this.#log.warn({ err: error }, 'CLIENT UNBLOCK failed'));
    }, blockMs);
    let reply: [Buffer, RawEntry[]][] | null;
    try {
      reply = (await reader.callBuffer(
        'XREADGROUP', 'GROUP', CONSUMER_GROUP, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', this.#stream, '>',
      )) as [Buffer, RawEntry[]][] | null;
    } finally {
      clearTimeout(timer);
    }
    const raw = reply?.[0]?.[1] ?? [];
    const entries: StreamEntry[] = [];
    const orphans: string[] = [];
    for (const item of raw) {
      const entry = parseEntry(item);
      if (entry) entries.push(entry);
      else orphans.push(item[0].toString());
    }
    await dropEntries(this.#options.redis, this.#stream, orphans);
    return this.#start(entries);
  }

  /** Send start.lua for entries just read or claimed; {@link prepareBatch} awaits the verdict. */
  #start(entries: StreamEntry[]): ReadEntry[] {
    if (entries.length === 0) return [];
    const runnable = startEntries(this.#options.redis, entries, Date.now());
    // Awaited by prepareBatch; a batch abandoned after an error must not leave an unhandled rejection.
    runnable.catch(() => undefined);
    return entries.map((entry) => ({ entry, runnable }));
  }

  /** Take over entries left pending by dead consumers; run them in batches of max_batch_size. */
  async #reclaim(): Promise<void> {
    const { redis, consumer, runner } = this.#options;
    const config = this.#config;
    this.#nextReclaimAt = Date.now() + config.queue.visibility_timeout_ms / RECLAIM_PASSES_PER_TIMEOUT;
    for (;;) {
      const { claimed, deadLettered, readyGroups } = await reclaimPending(redis, {
        model: config.name,
        version: runner.version,
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
   * who were settled already, are acknowledged at once without inference),
   * decode the inputs, and for an image model decode and resize the images (in parallel, on libvips'
   * threads). An input that cannot be decoded fails alone (`invalid_input`, `invalid_image`).
   */
  async prepareBatch(batch: readonly ReadEntry[]): Promise<PreparedBatch> {
    const { redis } = this.#options;
    const config = this.#config;
    const batchId = `${this.#options.consumer}-${++this.#batchCounter}`;
    const startedAt = Date.now();
    const t0 = performance.now();
    const verdicts = await Promise.all([...new Set(batch.map((read) => read.runnable))]);
    const live: StreamEntry[] = [];
    const stale: string[] = [];
    for (const { entry } of batch) {
      if (verdicts.some((runnable) => runnable.has(entry))) live.push(entry);
      else stale.push(entry.entryId);
    }
    await dropEntries(redis, this.#stream, stale);

    const preprocess = config.preprocess;
    const results = new Array<ItemResult | undefined>(live.length);
    const inputs = await Promise.all(
      live.map(async (entry, index) => {
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
    return { batchId, startedAt, live, results, inputs, prepareMs: performance.now() - t0 };
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
    const t0 = performance.now();
    const runnable = inputs.flatMap((input, index) => (results[index] ? [] : [{ index, input }]));
    const outputs = await predictWithSplit(
      runnable.map((item) => item.input),
      (items) => predictPadded(items, config.batching.allowed_batch_sizes, (padded) => runner.predict(padded)),
      (error, size) => this.#log.warn({ err: error, batch_id: batchId, size }, 'batch failed; retrying in halves'),
    );
    runnable.forEach((item, i) => (results[item.index] = outputs[i]));
    const computeMs = performance.now() - t0;
    const inferenceMs = batch.prepareMs + computeMs;

    const settlements: Settlement[] = live.map((entry, i) => {
      const accepted = acceptedAt(entry.entryId);
      const settlement: Settlement = { entry, result: results[i] as ItemResult, queue_ms: Math.max(0, startedAt - accepted) };
      // A request accepted before its version finished loading waited for the load.
      if (load && accepted < load.finished_at) settlement.load_ms = load.finished_at - Math.max(accepted, load.started_at);
      return settlement;
    });
    const figures = { inference_ms: inferenceMs, batch_size: live.length, batch_id: batchId, result_ttl_s: config.queue.result_ttl_s };
    const { written, readyGroups } = await settleBatch(redis, config.name, runner.version, figures, settlements);
    this.#groupsReady(readyGroups);
    const settled = settlements.map((s) => s.result);
    this.#options.metrics.observeBatch(config.name, runner.version, settled, settlements.map((s) => s.queue_ms), computeMs);
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

/** An entry as the batching loop collects it: with the verdict of the start.lua call its read sent. */
export interface ReadEntry {
  entry: StreamEntry;
  /** The entries of its read that are to run (start.lua / start-members.lua said so). */
  runnable: Promise<Set<StreamEntry>>;
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
  /** Per entry of `live`: the decoded model input. */
  inputs: unknown[];
  /** Time spent preparing (mark running, decode), ms. */
  prepareMs: number;
}

/**
 * Which entries of a batch to run: single jobs through start.lua (marked running; terminal or gone ones
 * are stale), group members through start-members.lua, one call per group (members of a finished
 * group, or already settled, are stale). The calls go out together (auto-pipelined).
 * @returns the entries to run.
 */
async function startEntries(redis: Redis, batch: readonly StreamEntry[], startedAt: number): Promise<Set<StreamEntry>> {
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
        startMembers(redis, groupId, members.map((entry) => entry.index)),
      ),
    ),
  ]);
  const runnable = new Set<StreamEntry>();
  let job = 0;
  for (const entry of batch) {
    if (entry.kind !== 'job') continue;
    const status = statuses[job++];
    if (status === 'queued' || status === 'running') runnable.add(entry);
  }
  [...groups.values()].forEach((members, g) => {
    members.forEach((entry, i) => {
      if (verdicts[g]?.[i] === true) runnable.add(entry);
    });
  });
  return runnable;
}
