import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TEST_IMAGES_DIR } from './harness/fetch-test-data.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { ROOT, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

interface Detection {
  label: string;
  score: number;
  box: [number, number, number, number];
}
interface Job {
  id: string;
  status: string;
  output?: { detections?: Detection[]; label?: string; probabilities?: number[]; embedding?: number[] };
  error?: { code: string; message: string };
  timings?: { batch_size: number; batch_id: string };
}

async function photo(name: string): Promise<Buffer> {
  return readFile(join(TEST_IMAGES_DIR, name));
}

describe('image models through gateway + worker + real Redis', () => {
  let redis: TestRedis;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;

  before(async () => {
    redis = await startTestRedis();
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: join(ROOT, 'models') };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env, ['coco-detect', 'image-classify']);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
  });

  async function submitJson(model: string, input: unknown): Promise<string> {
    const response = await fetch(`${gateway.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, input }) });
    const body = (await response.json()) as { id: string };
    assert.equal(response.status, 202, JSON.stringify(body));
    return body.id;
  }

  async function submitMultipart(model: string, bytes: Buffer, filename: string): Promise<string> {
    const form = new FormData();
    form.set('model', model);
    form.set('input', new Blob([bytes]), filename);
    const response = await fetch(`${gateway.url}/v1/jobs`, { method: 'POST', body: form });
    const body = (await response.json()) as { id: string };
    assert.equal(response.status, 202, JSON.stringify(body));
    return body.id;
  }

  async function result(id: string): Promise<Job> {
    for (;;) {
      const job = (await (await fetch(`${gateway.url}/v1/jobs/${id}?wait=60`)).json()) as Job;
      if (job.status !== 'queued' && job.status !== 'running') return job;
    }
  }

  test('coco-detect finds what the photos show; a truncated JPEG fails alone in its batch', async () => {
    const coffee = await photo('coffee.png');
    const truncated = (await photo('rocket.jpg')).subarray(0, 60_000);
    const ids = {
      astronaut: await submitJson('coco-detect', { b64: (await photo('astronaut.png')).toString('base64') }),
      chelsea: await submitMultipart('coco-detect', await photo('chelsea.png'), 'chelsea.png'),
      coffee: await submitJson('coco-detect', { b64: coffee.toString('base64') }),
      motorcycle: await submitJson('coco-detect', { b64: (await photo('motorcycle_left.png')).toString('base64') }),
      truncated: await submitJson('coco-detect', { b64: truncated.toString('base64') }),
    };
    const jobs = Object.fromEntries(await Promise.all(Object.entries(ids).map(async ([name, id]) => [name, await result(id)] as const)));
    const labels = (name: string): string[] => (jobs[name]?.output?.detections ?? []).map((d) => d.label);

    assert.equal(jobs.truncated?.status, 'failed');
    assert.equal(jobs.truncated?.error?.code, 'invalid_image');
    for (const name of ['astronaut', 'chelsea', 'coffee', 'motorcycle']) assert.equal(jobs[name]?.status, 'succeeded', `${name}: ${JSON.stringify(jobs[name]?.error)}`);
    assert.ok(labels('astronaut').includes('person'), `astronaut: ${labels('astronaut').join(', ')}`);
    assert.ok(labels('chelsea').includes('cat'), `chelsea: ${labels('chelsea').join(', ')}`);
    assert.ok(labels('coffee').includes('cup'), `coffee: ${labels('coffee').join(', ')}`);
    assert.ok(labels('motorcycle').includes('motorcycle'), `motorcycle: ${labels('motorcycle').join(', ')}`);
    // Boxes are in source-image pixels: inside the 400x600 coffee photo.
    for (const { box } of jobs.coffee?.output?.detections ?? []) {
      assert.ok(box[0] >= 0 && box[1] >= 0 && box[2] <= 600 + 1e-6 && box[3] <= 400 + 1e-6 && box[0] < box[2] && box[1] < box[3], `box ${box.join(',')}`);
    }
    const sameBatch = Object.values(jobs).filter((job) => job.timings?.batch_id === jobs.truncated?.timings?.batch_id);
    assert.ok(sameBatch.some((job) => job.status === 'succeeded') || (jobs.truncated?.timings?.batch_size ?? 1) === 1, 'batch-mates of the bad image still succeeded');
  });

  test('image-classify gives probabilities, label and a unit embedding from one pass', async () => {
    const job = await result(await submitJson('image-classify', { b64: (await photo('chelsea.png')).toString('base64') }));
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    const { probabilities = [], label, embedding = [] } = job.output ?? {};
    assert.equal(probabilities.length, 5);
    assert.ok(Math.abs(probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    assert.ok(label === 'Neutral' || label === 'Drawing', `label ${label}`);
    assert.equal(embedding.length, 1280);
    assert.ok(Math.abs(Math.hypot(...embedding) - 1) < 1e-4);
  });
});
