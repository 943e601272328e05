import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { connectRedis, createLogger, encode, enqueueJobs, keys, setAdmission, type ModelConfig, type Redis } from '@inferline/shared';
import { writeEmbeddingBagModel } from '../../cli/src/models/build-glove-embed.ts';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { WorkerMetrics } from '../src/metrics.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { InstancePool } from '../src/runtime/instance-pool.ts';
import { VersionConsumer, type BatchRunner } from '../src/version-consumer.ts';
import { TINY_EMBED, tinyEmbedConfig } from './tiny-embed.ts';

const MODEL = TINY_EMBED;
const DIMS = 4;
const WORDS = ['the', 'sea', 'whale', 'ship'];
/** Longest wait for the jobs of a test to end, ms. */
const SETTLE_TIMEOUT_MS = 10_000;
const POLL_MS = 20;

/** The model served, with a batch that takes what is there. */
const config = (): ModelConfig => tinyEmbedConfig(DIMS, { batching: { max_batch_size: 8, batch_timeout_ms: 0 } });

/** Length of the `embedding` of a job record's `output` (JSON text), or undefined. */
function embeddingLength(output: string | undefined): number | undefined {
  const parsed = JSON.parse(output ?? 'null') as { embedding?: number[] } | null;
  return parsed?.embedding?.length;
}

describe('VersionConsumer against a real Redis and a real model', () => {
  const db = useTestRedis();
  let dir: string;
  let versionDir: string;
  let reader: Redis;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-version-consumer-'));
    versionDir = join(dir, MODEL, '1');
    await writeEmbeddingBagModel(versionDir, WORDS, Float32Array.from({ length: WORDS.length * DIMS }, (_, i) => Math.cos(i)), DIMS, { source: 'test' });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await db.server.flush();
    await setAdmission(db.redis, MODEL, 1, 'open');
  });

  /**
   * Store a job that can run and one whose deadline has passed, serve them with a consumer on `kind`
   * instances until both are terminal, and report what the model was given and how the jobs ended.
   */
  async function serve(kind: 'thread' | 'main_thread'): Promise<{ ran: string[]; live: Record<string, string>; expired: Record<string, string> }> {
    const pool = await InstancePool.start({ config: config(), versionDir, version: 1, backend: await initBackend(), count: 1, kind, warmupSizes: [1], logger: createLogger('test', 'silent') });
    const ran: string[] = [];
    // The real pool, with the inputs of every pass it is given noted down.
    const runner: BatchRunner = {
      version: pool.version,
      instances: pool.instances,
      mainThread: pool.mainThread,
      predict: (inputs) => {
        ran.push(...(inputs as string[]));
        return pool.predict(inputs);
      },
    };
    const createdAt = Date.now();
    await enqueueJobs(db.redis, { model: MODEL, version: 1, max_queue_size: 100, created_at: createdAt, jobs: [{ id: `${MODEL}~live`, input: encode('the sea') }] });
    await enqueueJobs(db.redis, { model: MODEL, version: 1, max_queue_size: 100, created_at: createdAt, deadline_at: createdAt - 1, jobs: [{ id: `${MODEL}~expired`, input: encode('the whale') }] });
    reader = connectRedis(db.server.url, { name: 'test-reader' });
    const consumer = new VersionConsumer({
      config: config(),
      runner,
      redis: db.redis,
      reader,
      consumer: 'test-consumer',
      idle_block_ms: 100,
      logger: createLogger('test', 'silent'),
      metrics: new WorkerMetrics(pool.backend),
      onGroupReady: () => Promise.resolve(),
    });
    const stop = new AbortController();
    const running = consumer.run(stop.signal);
    try {
      const until = Date.now() + SETTLE_TIMEOUT_MS;
      for (;;) {
        const statuses = await Promise.all([`${MODEL}~live`, `${MODEL}~expired`].map((id) => db.redis.hget(keys.job(id), 'status')));
        if (statuses.every((status) => status === 'succeeded' || status === 'failed')) break;
        assert.ok(Date.now() < until, `jobs still ${statuses.join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    } finally {
      stop.abort();
      await running;
      reader.disconnect();
      await pool.dispose();
    }
    const [live, expired] = await Promise.all([`${MODEL}~live`, `${MODEL}~expired`].map((id) => db.redis.hgetall(keys.job(id))));
    return { ran, live: live ?? {}, expired: expired ?? {} };
  }

  test('a thread instance runs only what start.lua lets run; a job past its deadline fails unrun', async () => {
    const { ran, live, expired } = await serve('thread');
    assert.deepEqual(ran, ['the sea']);
    assert.equal(live.status, 'succeeded');
    assert.equal(embeddingLength(live.output), DIMS);
    assert.equal(expired.status, 'failed');
    assert.equal(expired.error_code, 'deadline_exceeded');
    assert.equal(expired.output, undefined);
  });

  test('a main_thread instance runs the batch before the verdicts, then drops what may not run: the expired job still fails deadline_exceeded, with no output', async () => {
    const { ran, live, expired } = await serve('main_thread');
    assert.deepEqual([...ran].sort(), ['the sea', 'the whale'], 'both entries ran before the start verdicts were in');
    assert.equal(live.status, 'succeeded');
    assert.equal(embeddingLength(live.output), DIMS);
    assert.equal(expired.status, 'failed');
    assert.equal(expired.error_code, 'deadline_exceeded');
    assert.equal(expired.output, undefined, 'the output of a job that may not run is not written');
  });
});
