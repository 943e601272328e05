import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { loadModelConfig } from '../packages/shared/src/config.ts';
import { keys } from '../packages/shared/src/keys.ts';
import { connectRedis } from '../packages/shared/src/redis.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';
import { freePort } from '../packages/cli/src/redis-server.ts';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { gloveRepository } from './harness/repository.ts';
import { ROOT, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

const MODEL_DIR = join(ROOT, 'models', 'glove-embed');
const TEXTS = 300;

interface Job {
  id: string;
  status: string;
  version: number;
  output?: { embedding: number[] };
  error?: { code: string; message: string };
  timings?: { queue_ms: number; inference_ms: number; batch_size: number; batch_id: string };
}

function postJob(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  return callGateway<Record<string, unknown>>(url, 'POST', '/v1/jobs', body);
}

async function waitJob(url: string, id: string): Promise<Job> {
  for (;;) {
    const response = await fetch(`${url}/v1/jobs/${id}?wait=30`);
    const job = (await response.json()) as Job;
    if (!['queued', 'running'].includes(job.status)) return job;
  }
}

describe('gateway + 2 worker processes + real Redis serve glove-embed', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const workers: RoleProcess[] = [];
  const metricsPorts: number[] = [];

  before(async () => {
    redis = await startTestRedis();
    // Pipelined workers (max_inflight_batches 2): batch n+1 is fetched and prepared while n runs.
    repository = await gloveRepository({ batching: { max_inflight_batches: 2 } });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    metricsPorts.push(await freePort(), await freePort());
    workers.push(
      ...(await Promise.all(metricsPorts.map((port) => startWorkerProcess({ ...env, METRICS_PORT: String(port), HOST: '127.0.0.1' }, ['glove-embed'])))),
    );
  });

  after(async () => {
    await Promise.all([gateway?.stop(), ...workers.map((worker) => worker.stop())]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('300 real texts, mixed with malformed requests, each equal the in-process embedding to 1e-5', async () => {
    const texts = loadMobyDickParagraphs().slice(0, TEXTS);
    assert.equal(texts.length, TEXTS);
    const malformed = [
      { model: 'glove-embed' },
      { model: 'glove-embed', input: 42 },
      { model: 'glove-embed', input: 'x', extra: true },
      { model: 'no-such-model', input: 'x' },
      { model: 'glove-embed', input: 'x'.repeat(70_000) },
    ];
    const submissions = await Promise.all(
      texts.flatMap((text, i) => [
        postJob(gateway.url, { model: 'glove-embed', input: text }),
        postJob(gateway.url, malformed[i % malformed.length]),
      ]),
    );
    const accepted = submissions.filter((_, i) => i % 2 === 0);
    const rejected = submissions.filter((_, i) => i % 2 === 1);
    for (const { status, json } of accepted) assert.equal(status, 202, JSON.stringify(json));
    for (const { status, json } of rejected) {
      assert.ok(status === 400 || status === 404, `malformed request answered ${status}`);
      assert.match(String((json.error as { code: string }).code), /^(invalid_input|model_not_found)$/);
    }

    const jobs = await Promise.all(accepted.map(({ json }) => waitJob(gateway.url, String(json.id))));

    await initBackend();
    const config = await loadModelConfig(MODEL_DIR);
    const servable = await loadServable(config, join(MODEL_DIR, '1'), 1);
    const expected = await servable.predict(texts);
    servable.dispose();

    jobs.forEach((job, i) => {
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const embedding = job.output?.embedding ?? [];
      const reference = expected[i]?.embedding as Float32Array;
      assert.equal(embedding.length, 100);
      for (let d = 0; d < 100; d++) {
        assert.ok(Math.abs((embedding[d] ?? NaN) - (reference[d] ?? NaN)) <= 1e-5, `text ${i} dim ${d}: ${embedding[d]} vs ${reference[d]}`);
      }
    });
    const batchSizes = jobs.map((job) => job.timings?.batch_size ?? 0);
    assert.ok(Math.max(...batchSizes) > 1, `expected batches larger than 1, got ${[...new Set(batchSizes)].join(',')}`);
    assert.ok(batchSizes.every((size) => size >= 1 && size <= config.batching.max_batch_size));

    // The workers' own metrics agree with the jobs: 300 requests run, one forward pass per batch id.
    const batchIds = new Set(jobs.map((job) => job.timings?.batch_id));
    // A batch id names its worker's consumer, not the worker's host or process.
    for (const id of batchIds) assert.match(id ?? '', /^worker-[A-Za-z0-9_-]{11}-\d+$/);
    // The pattern above already leaves no room for a host name beside the 11 random characters; a
    // short host name (say "vm") can still turn up in them by chance, so only a long one is checked.
    if (hostname().length >= 8) assert.ok(![...batchIds].some((id) => id?.includes(hostname()) === true), 'no host name in a batch id');
    let inferences = 0;
    let executions = 0;
    for (const port of metricsPorts) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const value = (name: string): number => Number(/\S+ (\S+)$/.exec(text.split('\n').find((line) => line.startsWith(`${name}{model="glove-embed",version="1"}`)) ?? '')?.[1] ?? 0);
      inferences += value('inferline_inference_count_total');
      executions += value('inferline_batch_executions_total');
    }
    assert.equal(inferences, TEXTS);
    assert.equal(executions, batchIds.size);
  });

  test('a request stream lost with its consumer group (Redis restarted without its data) is recreated and serving resumes', async () => {
    const probe = connectRedis(redis.url, { name: 'test-probe' });
    try {
      await probe.del(keys.requests('glove-embed', 1));
      const { status, json } = await postJob(gateway.url, { model: 'glove-embed', input: 'Call me Ishmael.' });
      assert.equal(status, 202);
      const job = await waitJob(gateway.url, String(json.id));
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      assert.ok(workers.some((worker) => worker.output().includes('consumer group missing; creating it again')));
    } finally {
      probe.disconnect();
    }
  });
});
