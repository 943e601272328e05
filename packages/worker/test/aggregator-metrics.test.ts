import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { createLogger, createReduceQueue, enqueueReduce, groupAdd, keys, loadSettings, setAdmission, type GroupCreate } from '@inferline/shared';
import { freePort } from '../../cli/src/redis-server.ts';
import { useTestRedis } from '../../../test/harness/redis.ts';
import { AggregatorMetrics } from '../src/aggregator-metrics.ts';
import { startAggregator } from '../src/aggregator.ts';
import { serveMetrics } from '../src/metrics.ts';

const MODEL = 'test-model';
const logger = createLogger('test', 'silent');
const RETRY = { reduce_attempts: 1, reduce_backoff_ms: 0 };

/** The value of one sample line `name{labels} value` in Prometheus text, or undefined when absent. */
function sample(text: string, line: string): number | undefined {
  const found = text.split('\n').find((candidate) => candidate.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

/** Fetch `url` until `done(text)` holds, for at most `attempts` tries 100 ms apart; returns the last text. */
async function fetchUntil(url: string, done: (text: string) => boolean, attempts = 100): Promise<string> {
  let text = '';
  for (let i = 0; i < attempts; i++) {
    text = await fetch(url).then((response) => response.text(), () => '');
    if (done(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return text;
}

describe('aggregator metrics against a real Redis', () => {
  const db = useTestRedis();
  beforeEach(async () => {
    await db.server.flush();
    await setAdmission(db.redis, MODEL, 1, 'open');
  });

  /** An empty group, created and closed at once: ready to reduce with `reduce`. */
  async function emptyGroup(groupId: string, reduce: string): Promise<void> {
    const create: GroupCreate = { reduce, output_name: 'embedding', on_item_error: 'skip', result_ttl_s: 60 };
    const added = await groupAdd(db.redis, { groupId, model: MODEL, version: 1, max_queue_size: 10, inputs: [], create, close: true, keep_inputs: false });
    assert.equal(added.status, 'reducing');
  }

  test('inferline_reduce_backlog counts the waiting jobs of the queue "reduce"', async () => {
    const queue = createReduceQueue(db.redis, () => undefined);
    try {
      const metrics = new AggregatorMetrics(queue, logger);
      assert.equal(sample(await metrics.registry.metrics(), 'inferline_reduce_backlog{state="waiting"}'), 0);
      await enqueueReduce(queue, 'g1', RETRY);
      await enqueueReduce(queue, 'g2', RETRY);
      await enqueueReduce(queue, 'g2', RETRY); // same job id: not a second job
      const text = await metrics.registry.metrics();
      assert.equal(sample(text, 'inferline_reduce_backlog{state="waiting"}'), 2);
      assert.equal(sample(text, 'inferline_reduce_backlog{state="active"}'), 0);
    } finally {
      await queue.close();
    }
  });

  test('the aggregator serves /metrics with reduces by outcome, and /healthz and /readyz', async () => {
    const port = await freePort();
    const settings = loadSettings({ REDIS_URL: db.server.url, AGGREGATOR_METRICS_PORT: String(port), HOST: '127.0.0.1', REDUCE_ATTEMPTS: '1' });
    const stop = new AbortController();
    const running = startAggregator({ settings: { ...settings, redis_url: db.server.url }, logger, signal: stop.signal });
    const queue = createReduceQueue(db.redis, () => undefined);
    try {
      const base = `http://127.0.0.1:${port}`;
      const ready = await fetchUntil(`${base}/readyz`, (text) => text.includes('"ready"'));
      assert.deepEqual(JSON.parse(ready), { status: 'ready' });
      assert.equal((await fetch(`${base}/healthz`)).status, 200);

      const [collected, averaged] = [`${MODEL}~collected`, `${MODEL}~averaged`];
      await emptyGroup(collected, 'collect'); // collect over no member: an empty list
      await emptyGroup(averaged, 'mean'); // mean over no member: empty_group fails the group
      for (const id of [collected, averaged, `${MODEL}~missing`]) await enqueueReduce(queue, id, RETRY);
      const text = await fetchUntil(`${base}/metrics`, (body) => sample(body, 'inferline_reduce_duration_seconds_count') === 3);
      assert.equal(sample(text, 'inferline_reduces_total{status="succeeded"}'), 1);
      assert.equal(sample(text, 'inferline_reduces_total{status="empty_group"}'), 1);
      assert.equal(sample(text, 'inferline_reduces_total{status="skipped"}'), 1, 'a job whose group does not exist');
      assert.equal(sample(text, 'inferline_reduce_backlog{state="waiting"}'), 0);
      assert.equal(await db.redis.hget(keys.group(averaged), 'error_code'), 'empty_group');
    } finally {
      stop.abort();
      await running;
      await queue.close();
    }
  });

  test('a worker metrics server with health checks answers /readyz 503 until ready', async () => {
    let ready = false;
    const metrics = new AggregatorMetrics({ getJobCounts: () => Promise.reject(new Error('no redis')) }, logger);
    const server = await serveMetrics(metrics.registry, 0, '127.0.0.1', { ready: () => (ready ? undefined : 'loading') });
    const address = server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    try {
      const before = await fetch(`${base}/readyz`);
      assert.equal(before.status, 503);
      assert.deepEqual(await before.json(), { error: { code: 'unavailable', message: 'loading' } });
      ready = true;
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const scrape = await fetch(`${base}/metrics`);
      assert.equal(scrape.status, 200, 'a backlog that cannot be read leaves the gauge out, not the scrape');
      assert.equal(sample(await scrape.text(), 'inferline_reduce_backlog{state="waiting"}'), undefined);
    } finally {
      server.close();
    }
  });
});
