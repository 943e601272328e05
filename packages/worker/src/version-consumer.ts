import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import {
  CONSUMER_GROUP,
  JOB_EVENTS_CHANNEL,
  decode,
  keys,
  runScript,
  type Logger,
  type ModelConfig,
} from '@inferline/shared';
import { collectBatch, type BatchSource } from './batcher/batcher.ts';
import type { WorkerMetrics } from './metrics.ts';
import { predictWithSplit, type ItemResult } from './predict-with-split.ts';
import { reclaimPending } from './reclaim.ts';
import type { Servable } from './runtime/servable.ts';
import { dropEntries, settleBatch, type Settlement } from './settle.ts';
import { acceptedAt, parseEntry, type RawEntry, type StreamEntry } from './stream-entry.ts';

/** Pause after a Redis error before the loop tries again, ms. */
const ERROR_BACKOFF_MS = 500;

/** A unique consumer name for this process: `<host>-<pid>-<random>`. */
export function consumerName(): string {
  return `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Create the consumer group of a request stream (and the stream) unless it exists. */
export async function ensureConsumerGroup(redis: Redis, stream: string): Promise<void> {
  try {
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM');
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('BUSYGROUP')) throw error;
  }
}

/** Dependencies and options of a {@link VersionConsumer}. */
export interface VersionConsumerOptions {
  config: ModelConfig;
  servable: Servable;
  /** Command connection (scripts, pipelines). */
  redis: Redis;
  /** Connection reserved for this consumer's blocking XREADGROUP. */
  reader: Redis;
  consumer: string;
  idle_block_ms: number;
  logger: Logger;
  metrics: WorkerMetrics;
}

/**
 * Serves one model version: reads its request stream through the consumer group, forms batches
 * ({@link collectBatch}), runs each as one forward pass, and settles every request. Every
 * `visibility_timeout_ms` (and at start) it first takes over entries a dead consumer left pending.
 */
export class VersionConsumer {
  readonly #options: VersionConsumerOptions;
  readonly #stream: string;
  readonly #log: Logger;
  #batchCounter = 0;
  #nextReclaimAt = 0;
  /** CLIENT ID of the reader connection (changes when it reconnects). */
  #readerId = -1;

  constructor(options: VersionConsumerOptions) {
    this.#options = options;
    this.#stream = keys.requests(options.config.name, options.servable.version);
    this.#log = options.logger.child({ model: options.config.name, version: options.servable.version });
  }

  /** Run until `signal` aborts; the batch in hand is finished and settled first. */
  async run(signal: AbortSignal): Promise<void> {
    const { redis, reader, config } = this.#options;
    await ensureConsumerGroup(redis, this.#stream);
    const learnReaderId = async (): Promise<void> => {
      this.#readerId = Number(await reader.client('ID'));
    };
    await learnReaderId();
    reader.on('ready', () => {
      learnReaderId().catch((error: unknown) => this.#log.warn({ err: error }, 'cannot read the reader client id'));
    });
    const source: BatchSource<StreamEntry> = { read: (count, blockMs) => this.#read(count, blockMs) };
    const clock = { now: () => performance.now() };
    const collect = { ...config.batching, idle_block_ms: this.#options.idle_block_ms };
    while (!signal.aborted) {
      try {
        if (Date.now() >= this.#nextReclaimAt) await this.#reclaim();
        const batch = await collectBatch(source, clock, collect);
        await this.processBatch(batch);
      } catch (error) {
        if (signal.aborted) break;
        this.#log.error({ err: error }, 'batch loop error; entries stay pending and are reclaimed');
        await new Promise((resolve) => setTimeout(resolve, ERROR_BACKOFF_MS));
      }
    }
  }

  /**
   * XREADGROUP of new entries (`>`), as buffers, blocking at most `blockMs`.
   *
   * Redis checks blocked clients' timeouts on its cron tick (`hz`, 10 per second by default), so a
   * BLOCK of a few ms can last up to 100 ms and would stretch every batch_timeout_ms. A timer on this
   * side ends the wait on time with CLIENT UNBLOCK … TIMEOUT from the command connection. If the read
   * already returned, the UNBLOCK finds nothing to do, or at worst ends the next read early and empty,
   * which the batching loop treats as any empty read.
   */
  async #read(count: number, blockMs: number): Promise<StreamEntry[]> {
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
    const orphans: StreamEntry[] = [];
    for (const item of raw) {
      const entry = parseEntry(item);
      if (entry) entries.push(entry);
      else orphans.push({ entryId: item[0].toString(), jobId: '', input: Buffer.alloc(0) });
    }
    await dropEntries(this.#options.redis, this.#stream, orphans);
    return entries;
  }

  /** Take over entries left pending by dead consumers; run them in batches of max_batch_size. */
  async #reclaim(): Promise<void> {
    const { config, redis, consumer, servable } = this.#options;
    this.#nextReclaimAt = Date.now() + config.queue.visibility_timeout_ms;
    for (;;) {
      const { claimed, deadLettered } = await reclaimPending(redis, {
        model: config.name,
        version: servable.version,
        consumer,
        visibility_timeout_ms: config.queue.visibility_timeout_ms,
        max_deliveries: config.queue.max_deliveries,
        count: config.batching.max_batch_size,
        result_ttl_s: config.queue.result_ttl_s,
      });
      if (deadLettered.length > 0) this.#log.warn({ job_ids: deadLettered }, 'dead-lettered poison requests');
      if (claimed.length === 0) return;
      this.#log.info({ count: claimed.length }, 'reclaimed pending requests');
      await this.processBatch(claimed);
    }
  }

  /**
   * Run one batch: mark its jobs running (skipping any already terminal or gone), decode inputs, one
   * forward pass (split in halves on failure), settle every request in one pipelined round trip.
   */
  async processBatch(batch: readonly StreamEntry[]): Promise<void> {
    if (batch.length === 0) return;
    const { redis, servable, config } = this.#options;
    const batchId = `${this.#options.consumer}-${++this.#batchCounter}`;
    const startedAt = Date.now();
    const statuses = await runScript<string[]>(
      redis,
      'start',
      batch.map((entry) => keys.job(entry.jobId)),
      [startedAt, JOB_EVENTS_CHANNEL, ...batch.map((entry) => entry.jobId)],
    );
    const live: StreamEntry[] = [];
    const stale: StreamEntry[] = [];
    batch.forEach((entry, i) => (statuses[i] === 'queued' || statuses[i] === 'running' ? live : stale).push(entry));
    await dropEntries(redis, this.#stream, stale);
    if (live.length === 0) return;

    const t0 = performance.now();
    const results: ItemResult[] = new Array<ItemResult>(live.length);
    const runnable: { index: number; input: unknown }[] = [];
    live.forEach((entry, index) => {
      try {
        runnable.push({ index, input: decode(entry.input) });
      } catch (error) {
        results[index] = { ok: false, code: 'invalid_input', message: `cannot decode input: ${(error as Error).message}` };
      }
    });
    const outputs = await predictWithSplit(
      runnable.map((item) => item.input),
      (inputs) => servable.predict(inputs),
      (error, size) => this.#log.warn({ err: error, batch_id: batchId, size }, 'batch failed; retrying in halves'),
    );
    runnable.forEach((item, i) => (results[item.index] = outputs[i] as ItemResult));
    const inferenceMs = performance.now() - t0;

    const settlements: Settlement[] = live.map((entry, i) => ({
      entry,
      result: results[i] as ItemResult,
      timings: {
        queue_ms: Math.max(0, startedAt - acceptedAt(entry.entryId)),
        inference_ms: inferenceMs,
        batch_size: live.length,
        batch_id: batchId,
      },
    }));
    const written = await settleBatch(redis, this.#stream, config.queue.result_ttl_s, settlements);
    this.#options.metrics.observeBatch(config.name, servable.version, results, settlements.map((s) => s.timings.queue_ms), inferenceMs);
    const failed = results.filter((result) => !result.ok).length;
    this.#log.info(
      {
        batch_id: batchId,
        batch_size: live.length,
        inference_ms: Number(inferenceMs.toFixed(3)),
        max_queue_ms: Math.max(...settlements.map((s) => s.timings.queue_ms)),
        failed,
        written,
        job_ids: live.map((entry) => entry.jobId),
      },
      'batch',
    );
  }
}
