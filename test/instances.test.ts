import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../packages/cli/src/redis-server.ts';
import { callGateway } from './harness/gateway-http.ts';
import { ROOT, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { linkedRepository } from './harness/repository.ts';

/**
 * Model instances in worker threads (`instance_group`) and lazy loading under MODEL_MEMORY_BUDGET_MB,
 * with real processes, real Redis and the real models.
 */

interface JobView {
  id: string;
  model: string;
  status: string;
  output?: Record<string, unknown>;
  error?: { code: string; message: string };
  timings?: { queue_ms: number; load_ms?: number; batch_size: number };
}

/** POST /v1/jobs with `Prefer: wait=60`: the terminal view in one call. */
async function run(url: string, body: Record<string, unknown>): Promise<JobView> {
  const response = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=60' }, body: JSON.stringify(body) });
  const view = (await response.json()) as JobView;
  assert.ok(response.status === 200 || response.status === 202, `POST /v1/jobs answered ${response.status}: ${JSON.stringify(view)}`);
  return view;
}

async function submit(url: string, body: Record<string, unknown>): Promise<string> {
  const { status, json } = await callGateway<JobView>(url, 'POST', '/v1/jobs', body);
  assert.equal(status, 202, JSON.stringify(json));
  return json.id;
}

async function view(url: string, id: string, wait = 0): Promise<JobView> {
  return (await callGateway<JobView>(url, 'GET', `/v1/jobs/${id}${wait > 0 ? `?wait=${wait}` : ''}`)).json;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A counter's value from a Prometheus text exposition, summed over the series matching `labels`. */
function counter(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const photo = async (name: string): Promise<string> => (await readFile(join(ROOT, 'test', 'data', 'images', name))).toString('base64');

describe('a slow model and a fast model on one worker', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;

  before(async () => {
    redis = await startTestRedis();
    // The detector gathers 8 images per pass (several seconds on this runtime); one instance each.
    repository = await linkedRepository([
      { name: 'coco-detect', from: 'coco-detect', fields: { batching: { max_batch_size: 8, batch_timeout_ms: 2_000 }, instance_group: { count: 1 } } },
      { name: 'glove-embed', from: 'glove-embed', fields: { instance_group: { count: 1 } } },
    ]);
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, HEARTBEAT_INTERVAL_MS: '250' };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });
  after(async () => {
    await Promise.all([gateway.stop(), worker.stop()]);
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('the fast model\'s requests finish while a batch of the slow model is running', async () => {
    const images = ['astronaut.png', 'coffee.png', 'chelsea.png', 'motorcycle_left.png', 'motorcycle_right.png', 'rocket.jpg', 'camera.png', 'astronaut.png'];
    const slow = await Promise.all(images.map(async (name) => submit(gateway.url, { model: 'coco-detect', input: { b64: await photo(name) } })));
    // The batch is formed (its jobs marked running) before its pass starts.
    await waitUntil('the detector batch is running', async () => (await view(gateway.url, slow[0] as string)).status === 'running');
    const fast = await Promise.all(Array.from({ length: 16 }, (_, i) => run(gateway.url, { model: 'glove-embed', input: `call me ishmael ${i}` })));
    const slowNow = await Promise.all(slow.map((id) => view(gateway.url, id)));
    for (const job of fast) assert.equal(job.status, 'succeeded', JSON.stringify(job));
    // Every text was served while the detector's pass still held its batch.
    assert.ok(slowNow.every((job) => job.status === 'running'), `detector jobs: ${slowNow.map((job) => job.status).join(', ')}`);
    const finished = await Promise.all(slow.map((id) => view(gateway.url, id, 60)));
    for (const job of finished) assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    assert.ok(finished.some((job) => (job.timings?.batch_size ?? 0) > 1), 'the detector batched its images');
  });
});

describe('an instance thread that crashes', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  const CRASH_TEXT = 'this text ends the instance thread';

  before(async () => {
    redis = await startTestRedis();
    // Batches gather for 500 ms, so the texts below run as one batch of 8.
    repository = await linkedRepository([{ name: 'glove-embed', from: 'glove-embed', fields: { batching: { max_batch_size: 8, batch_timeout_ms: 500 }, instance_group: { count: 1 } } }]);
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, INFERLINE_FAILPOINT_INSTANCE_EXIT: CRASH_TEXT };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });
  after(async () => {
    await Promise.all([gateway.stop(), worker.stop()]);
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('fails only the request that crashed it, is started again, and the worker keeps serving', async () => {
    const texts = ['whale', 'ship', 'sea', CRASH_TEXT, 'harpoon', 'captain', 'sail', 'storm'];
    const ids = await Promise.all(texts.map((text) => submit(gateway.url, { model: 'glove-embed', input: text })));
    const views = await Promise.all(ids.map((id) => view(gateway.url, id, 60)));
    views.forEach((job, i) => {
      if (texts[i] === CRASH_TEXT) {
        assert.equal(job.status, 'failed');
        assert.equal(job.error?.code, 'inference_failed');
        assert.match(job.error?.message ?? '', /instance 0 .* ended/);
      } else {
        assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
        assert.ok((job.output?.embedding as number[]).some((value) => value !== 0));
      }
    });
    assert.ok(worker.lines.some((line) => line.includes('"msg":"model instance ended; starting it again"')));
    await worker.waitFor(/"msg":"model instance started again"/);
    const later = await Promise.all(['white whale', 'call me ishmael'].map((text) => run(gateway.url, { model: 'glove-embed', input: text })));
    for (const job of later) assert.equal(job.status, 'succeeded');
    assert.equal(worker.child.exitCode, null, 'the worker process is still running');
  });
});

describe('two models under a memory budget that fits one', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  let metricsUrl: string;

  before(async () => {
    redis = await startTestRedis();
    // Each is the 20.6 MB glove-embed v1 on one instance (+ 80 MB for its thread): the budget holds one of them.
    repository = await linkedRepository([
      { name: 'text-a', from: 'glove-embed', fields: { instance_group: { count: 1 }, batching: { max_batch_size: 8, batch_timeout_ms: 5 } } },
      { name: 'text-b', from: 'glove-embed', fields: { instance_group: { count: 1 }, batching: { max_batch_size: 8, batch_timeout_ms: 5 } } },
    ]);
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, HEARTBEAT_INTERVAL_MS: '250', MODEL_MEMORY_BUDGET_MB: '150', INSTANCE_OVERHEAD_MB: '80', METRICS_PORT: String(metricsPort), HOST: '127.0.0.1' };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });
  after(async () => {
    await Promise.all([gateway.stop(), worker.stop()]);
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('nothing is loaded at start: both are AVAILABLE, served on demand', async () => {
    await waitUntil('the gateway is ready', async () => (await callGateway(gateway.url, 'GET', '/readyz')).status === 200);
    const { json } = await callGateway<{ models: { name: string; worker_versions: { versions: Record<string, { state: string; loaded?: boolean }> }[] }[] }>(gateway.url, 'GET', '/v1/models');
    for (const model of json.models) assert.deepEqual(model.worker_versions.map((w) => w.versions['1']), [{ state: 'AVAILABLE', loaded: false }]);
  });

  test('alternating requests for both all succeed; each load and eviction is counted; no batch in flight loses its model', async () => {
    const metrics = async (): Promise<string> => (await fetch(metricsUrl)).text();
    // One model at a time, several times over: each switch loads one and evicts the other.
    const sequential: JobView[] = [];
    for (let round = 0; round < 3; round++) {
      for (const model of ['text-a', 'text-b']) sequential.push(await run(gateway.url, { model, input: `round ${round} of the white whale` }));
    }
    for (const job of sequential) assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    // The first request of each switch waited for its model to load, and says so.
    for (const job of sequential) assert.ok((job.timings?.load_ms ?? 0) > 0, `job ${job.id} of ${job.model} reports load_ms`);
    const text = await metrics();
    assert.equal(counter(text, 'inferline_model_loads_total', { model: 'text-a' }), 3);
    assert.equal(counter(text, 'inferline_model_loads_total', { model: 'text-b' }), 3);
    assert.equal(counter(text, 'inferline_model_evictions_total', {}), 5);

    // Both at once, many requests each: batches are in flight while the other model asks for room.
    const concurrent = await Promise.all(
      Array.from({ length: 60 }, (_, i) => run(gateway.url, { model: i % 2 === 0 ? 'text-a' : 'text-b', input: `request ${i} call me ishmael` })),
    );
    for (const job of concurrent) assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    const evictions = worker.lines.filter((line) => line.includes('"msg":"model version evicted'));
    assert.ok(evictions.length >= 5, 'evictions logged');
    assert.ok(!worker.lines.some((line) => line.includes('version_unloaded')), 'no request failed for an unloaded version');
  });
});
