import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { keys } from '../packages/shared/src/keys.ts';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { linkedRepository } from './harness/repository.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

/**
 * `scale_to_zero` with real processes, a real Redis and the real glove-embed: what a KEDA
 * `redis-streams` trigger (`streamLength`, minReplicaCount 0) needs from the gateway. A model with the
 * flag is admitted while no worker runs (its requests wait in the stream, where XLEN shows them), and
 * the gateways' readiness does not wait for it; a model without it is refused 503 as before.
 */
const FAST = { POLL_INTERVAL_MS: '200', HEARTBEAT_INTERVAL_MS: '250', LOG_LEVEL: 'info' };

interface JobView {
  id: string;
  status: string;
  output?: { embedding: number[] };
  error?: { code: string };
}

describe('a model that scales to zero and back', () => {
  let redis: TestRedis;
  let client: Redis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let env: Record<string, string>;

  before(async () => {
    redis = await startTestRedis();
    client = new Redis(redis.url);
    repository = await linkedRepository([
      { name: 'elastic', from: 'glove-embed', fields: { scale_to_zero: true } },
      { name: 'steady', from: 'glove-embed' },
    ]);
    env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, ...FAST };
    gateway = await startGatewayProcess(env);
  });
  after(async () => {
    await gateway.stop();
    client.disconnect();
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('at zero workers (never started): readiness waits only for the other model; the scale-to-zero model queues, the other refuses 503', async () => {
    const ready = await callGateway<{ error: { models_unavailable: string[] } }>(gateway.url, 'GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.json.error.models_unavailable, ['steady']);

    const refused = await callGateway<{ error: { code: string } }>(gateway.url, 'POST', '/v1/jobs', { model: 'steady', input: 'hello' });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, 'model_unavailable');
    assert.equal(await client.xlen(keys.requests('steady', 1)), 0);

    // The gateway opens the never-opened version within a heartbeat period of its first read.
    let queued: { status: number; json: JobView } | undefined;
    for (let attempt = 0; attempt < 40; attempt++) {
      queued = await callGateway<JobView>(gateway.url, 'POST', '/v1/jobs', { model: 'elastic', input: 'whale' });
      if (queued.status === 202) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(queued?.status, 202, JSON.stringify(queued?.json));
    assert.equal(queued?.json.status, 'queued');
    assert.equal(await client.xlen(keys.requests('elastic', 1)), 1, 'what KEDA streamLength counts');

    const expiring = await callGateway<JobView>(gateway.url, 'POST', '/v1/jobs', { model: 'elastic', input: 'whale', timeout_ms: 1 });
    assert.equal(expiring.status, 202);

    // A worker starts (the autoscaler saw XLEN > 0): the waiting request is served, the expired one fails.
    const worker = await startWorkerProcess(env, ['elastic']);
    try {
      const served = await callGateway<JobView>(gateway.url, 'GET', `/v1/jobs/${queued?.json.id}?wait=30`);
      assert.equal(served.json.status, 'succeeded', JSON.stringify(served.json));
      assert.equal(served.json.output?.embedding.length, 100);
      assert.ok(served.json.output?.embedding.some((value) => value !== 0));
      const expired = await callGateway<JobView>(gateway.url, 'GET', `/v1/jobs/${expiring.json.id}?wait=30`);
      assert.equal(expired.json.status, 'failed');
      assert.equal(expired.json.error?.code, 'deadline_exceeded');
    } finally {
      await worker.stop();
    }
  });

  test('scaled back to zero (its last worker stopped): requests queue again, and the next worker serves them', async () => {
    const queued = await callGateway<JobView>(gateway.url, 'POST', '/v1/jobs', { model: 'elastic', input: 'ocean' });
    assert.equal(queued.status, 202, JSON.stringify(queued.json));
    assert.equal(await client.xlen(keys.requests('elastic', 1)), 1);
    const still = await callGateway<JobView>(gateway.url, 'GET', `/v1/jobs/${queued.json.id}`);
    assert.equal(still.json.status, 'queued');

    const worker = await startWorkerProcess(env, ['elastic']);
    try {
      const served = await callGateway<JobView>(gateway.url, 'GET', `/v1/jobs/${queued.json.id}?wait=30`);
      assert.equal(served.json.status, 'succeeded', JSON.stringify(served.json));
      assert.equal(await client.xlen(keys.requests('elastic', 1)), 0, 'settled entries are deleted');
    } finally {
      await worker.stop();
    }
  });
});
