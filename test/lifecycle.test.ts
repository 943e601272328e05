import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { JobView } from '../packages/shared/src/index.ts';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { gloveRepository } from './harness/repository.ts';

const LOW = 20;
const HIGH = 5;

/** Long-poll a job until it is terminal. */
async function waitJob(url: string, id: string): Promise<JobView> {
  for (;;) {
    const { json } = await callGateway<JobView>(url, 'GET', `/v1/jobs/${id}?wait=30`);
    if (!['queued', 'running'].includes(json.status)) return json;
  }
}

/** The batch counter of a batch id (`worker-<name>-<n>`). */
const batchNumber = (job: JobView): number => Number(/-(\d+)$/.exec(job.timings?.batch_id ?? '')?.[1] ?? NaN);

describe('how requests end, against gateway + worker processes and real Redis (priority, deadlines, cancel)', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: (RoleProcess & { url: string }) | undefined;
  let worker: RoleProcess | undefined;

  before(async () => {
    redis = await startTestRedis();
    // Small batches, one at a time, so the order in which levels are served shows in batch numbers.
    repository = await gloveRepository({ batching: { max_batch_size: 4, batch_timeout_ms: 0, max_inflight_batches: 1, priority_levels: 2, priority_max_skips: 4 } });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, INSTANCE_COUNT: '1' };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('queued behind a paused worker: priority 1 runs first, a passed deadline fails unrun, a cancel never runs, the rest succeed', async () => {
    const url = gateway?.url ?? '';
    const post = async (body: Record<string, unknown>): Promise<JobView> => {
      const { status, json } = await callGateway<JobView>(url, 'POST', '/v1/jobs', { model: 'glove-embed', ...body });
      assert.equal(status, 202, JSON.stringify(json));
      return json;
    };
    // The worker stops reading (SIGSTOP) while the queue builds up; its heartbeat outlives the pause.
    worker?.child.kill('SIGSTOP');
    try {
      const low = [];
      for (let i = 0; i < LOW; i++) low.push(await post({ input: `low priority text ${i}`, priority: 2 }));
      const high = [];
      for (let i = 0; i < HIGH; i++) high.push(await post({ input: `high priority text ${i}`, priority: 1 }));
      const expiring = await post({ input: 'nobody waits for this one', timeout_ms: 1 });
      const cancelled = await post({ input: 'cancelled before it runs', priority: 1 });
      const cancel = await callGateway<JobView>(url, 'DELETE', `/v1/jobs/${cancelled.id}`);
      assert.equal(cancel.status, 200);
      assert.equal(cancel.json.status, 'cancelled');
      // The 1 ms deadline has passed long before the worker resumes (it is stopped).
      await new Promise((resolve) => setTimeout(resolve, 20));
      worker?.child.kill('SIGCONT');

      const lows = await Promise.all(low.map((job) => waitJob(url, job.id)));
      const highs = await Promise.all(high.map((job) => waitJob(url, job.id)));
      for (const job of [...lows, ...highs]) assert.equal(job.status, 'succeeded', JSON.stringify(job.error));

      const expired = await waitJob(url, expiring.id);
      assert.equal(expired.status, 'failed');
      assert.equal(expired.error?.code, 'deadline_exceeded');
      assert.equal(expired.timings?.batch_size ?? 0, 0, 'never part of a batch');
      const stillCancelled = (await callGateway<JobView>(url, 'GET', `/v1/jobs/${cancelled.id}`)).json;
      assert.equal(stillCancelled.status, 'cancelled');
      assert.equal(stillCancelled.timings, undefined, 'never run');

      // Every priority-1 job ran before most priority-2 ones: at most the batch in hand at the pause
      // and one partly filled batch of priority 2 ran before the last priority-1 job.
      const lastHigh = Math.max(...highs.map(batchNumber));
      const lowsBefore = lows.filter((job) => batchNumber(job) <= lastHigh).length;
      assert.ok(lowsBefore <= 4 + 3, `${lowsBefore} priority-2 jobs ran no later than the last priority-1 job (batch ${lastHigh})`);
      assert.ok(Math.max(...lows.map(batchNumber)) > lastHigh, 'priority 2 kept running after priority 1 was done');
    } finally {
      worker?.child.kill('SIGCONT');
    }
  });
});
