import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { addGloveVersion, editGloveConfig, gloveRepository } from './harness/repository.ts';
import { startGatewayProcess, startRole, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

/**
 * Model versions that change under load, with real processes, real Redis and the real glove-embed v1
 * (50,000 words) and v2 (100,000 words, staged by `npm run models`). "sanding" is word 60,000: v1 does
 * not know it (its embedding is all zeros), v2 does, so an output tells which version computed it.
 */
const RARE_TEXT = 'sanding';
/** Fast repository polls and heartbeats, so a roll-out takes a second, not ten. */
const FAST = { POLL_INTERVAL_MS: '200', HEARTBEAT_INTERVAL_MS: '250', LOG_LEVEL: 'info' };

interface JobView {
  id: string;
  status: string;
  version: number;
  output?: { embedding: number[] };
  error?: { code: string; message: string };
}

/** Which glove-embed version computed an embedding of {@link RARE_TEXT}: 1 (all zeros) or 2. */
function computedBy(view: JobView): 1 | 2 {
  return (view.output?.embedding ?? []).some((value) => value !== 0) ? 2 : 1;
}

/** POST /v1/jobs with `Prefer: wait=30`: the terminal view in one call. */
async function run(url: string, body: Record<string, unknown>): Promise<{ status: number; view: JobView; sentAt: number }> {
  const sentAt = Date.now();
  const response = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=30' }, body: JSON.stringify(body) });
  return { status: response.status, view: (await response.json()) as JobView, sentAt };
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function states(url: string): Promise<Record<string, string>> {
  const { json } = await callGateway<{ model_version_status: { version: string; state: string }[] }>(url, 'GET', '/v1/models/glove-embed');
  return Object.fromEntries(json.model_version_status.map((s) => [s.version, s.state]));
}

/** The JSON log lines of a process whose msg is `msg`. */
function logLines(role: RoleProcess, msg: string): Record<string, unknown>[] {
  return role.lines.filter((line) => line.includes(`"msg":"${msg}"`)).map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('a new version rolled out under load, with health that tells the truth', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess | undefined;

  before(async () => {
    redis = await startTestRedis();
    // On an instance thread (glove-embed ships with `kind: "main_thread"`): the roll-out test checks
    // that unloading v1 gives its table's memory back, which the end of its thread does. A main-thread
    // instance frees its tensors for the next load, but a WebAssembly heap never shrinks
    // (packages/worker/test/instance-pool.test.ts checks those tensors are freed).
    repository = await gloveRepository({ versions: [1], fields: { instance_group: { count: 1 } } });
    gateway = await startGatewayProcess({ REDIS_URL: redis.url, MODEL_REPOSITORY: repository, ...FAST });
  });
  after(async () => {
    await Promise.all([gateway.stop(), worker?.stop()]);
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('/readyz and the model status say 503 / START until a worker has the model AVAILABLE; requests meanwhile are refused, not queued', async () => {
    const early = await callGateway<{ error: { code: string; models_unavailable: string[] } }>(gateway.url, 'GET', '/readyz');
    assert.equal(early.status, 503);
    assert.deepEqual(early.json.error.models_unavailable, ['glove-embed']);
    assert.deepEqual(await states(gateway.url), { 1: 'START' });
    const refused = await callGateway<{ error: { code: string } }>(gateway.url, 'POST', '/v1/jobs', { model: 'glove-embed', input: 'hello' });
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, 'model_unavailable');

    worker = startRole(['worker'], { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, ...FAST, DRAIN_TIMEOUT_MS: '30000' });
    await worker.waitFor(/"msg":"worker ready"/);
    await waitUntil('/readyz is 200', async () => (await fetch(`${gateway.url}/readyz`)).status === 200);
    assert.deepEqual(await states(gateway.url), { 1: 'AVAILABLE' });
  });

  test('a version folder 2/ dropped in while 8 clients keep requests in flight: none fails or sticks, traffic moves to v2, v1 drains and frees its memory', async () => {
    assert.ok(worker, 'the first test started the worker');
    const results: Awaited<ReturnType<typeof run>>[] = [];
    let stop = false;
    const clients = Array.from({ length: 8 }, async () => {
      while (!stop) results.push(await run(gateway.url, { model: 'glove-embed', input: RARE_TEXT }));
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await addGloveVersion(repository, 2);
    const role = worker;
    await waitUntil('v1 is unloaded', () => Promise.resolve(logLines(role, 'model version unloaded').length > 0));
    const unloadedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 500));
    stop = true;
    await Promise.all(clients);

    assert.ok(results.length > 50, `${results.length} requests`);
    const notOk = results.filter((r) => r.status !== 200 || r.view.status !== 'succeeded');
    assert.deepEqual(notOk.map((r) => [r.status, r.view.status, r.view.error?.code]), [], 'every request succeeded within its wait');
    for (const r of results) assert.equal(computedBy(r.view), r.view.version, `job ${r.view.id} says v${r.view.version}`);
    assert.ok(results.some((r) => r.view.version === 1), 'v1 served before the switch');
    const after = results.filter((r) => r.sentAt > unloadedAt);
    assert.ok(after.length > 0);
    assert.ok(after.every((r) => r.view.version === 2), 'every request sent after v1 unloaded is served by v2');
    assert.deepEqual(await states(gateway.url), { 2: 'AVAILABLE' });

    // v1's instance thread ends, and with it its 50,000 × 100 float32 table (20 MB) in its wasm heap.
    const [unloaded] = logLines(role, 'model version unloaded') as { version: number; before: { rss_bytes: number }; after: { rss_bytes: number } }[];
    assert.equal(unloaded?.version, 1);
    assert.ok((unloaded?.before.rss_bytes ?? 0) - (unloaded?.after.rss_bytes ?? 0) >= 20_000_000, `RSS did not fall by the table's size: ${JSON.stringify(unloaded)}`);
  });

  test('a broken version 3/ fails alone, its error in the status, while v2 keeps serving; a batching change applies without a restart', async () => {
    assert.ok(worker);
    const role = worker;
    await mkdir(join(repository, 'glove-embed', '3'));
    await writeFile(join(repository, 'glove-embed', '3', 'model.json'), '{"weightsManifest": "not a list"}');
    await waitUntil('v3 failed to load', async () => (await states(gateway.url))['3'] === 'END');
    const { json } = await callGateway<{ model_version_status: { version: string; state: string; status: { error_message: string } }[] }>(gateway.url, 'GET', '/v1/models/glove-embed/versions/3');
    assert.notEqual(json.model_version_status[0]?.status.error_message, '', 'the status carries the load error');
    assert.deepEqual(await states(gateway.url), { 2: 'AVAILABLE', 3: 'END' });
    const served = await run(gateway.url, { model: 'glove-embed', input: RARE_TEXT });
    assert.equal(served.status, 200);
    assert.equal(served.view.version, 2);

    await editGloveConfig(repository, { batching: { max_batch_size: 2, batch_timeout_ms: 5, allowed_batch_sizes: [], max_queue_size: 100_000 } });
    await waitUntil('the worker took the new config', () => Promise.resolve(logLines(role, 'model config changed; applied to the versions being served').length > 0));
    const response = await fetch(`${gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ model: 'glove-embed', inputs: Array.from({ length: 64 }, (_, i) => `whale ${i}`) }),
    });
    const { jobs } = (await response.json()) as { jobs: (JobView & { timings: { batch_size: number } })[] };
    assert.equal(response.status, 200);
    assert.ok(jobs.every((job) => job.status === 'succeeded' && job.timings.batch_size <= 2), JSON.stringify(jobs.map((job) => job.timings.batch_size)));

    await rm(join(repository, 'glove-embed', '3'), { recursive: true });
    await waitUntil('v3 is gone from the status', async () => !('3' in (await states(gateway.url))));
  });

  test('a worker killed leaves the model unavailable (503, readyz 503) instead of queueing for nobody', async () => {
    assert.ok(worker);
    await worker.kill();
    worker = undefined;
    await waitUntil('the dead worker no longer counts', async () => (await fetch(`${gateway.url}/readyz`)).status === 503, 10_000);
    // The gateway re-reads the workers' states every heartbeat period (250 ms here) for admission.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const refused = await callGateway<{ error: { code: string } }>(gateway.url, 'POST', '/v1/jobs', { model: 'glove-embed', input: 'hello' });
    assert.equal(refused.status, 503);
    assert.deepEqual(await states(gateway.url), { 2: 'START' }, 'v2 is still selected, and no live worker holds it');
  });
});

describe('several served versions, labels, a policy change with a backlog, and a killed worker', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const workers: RoleProcess[] = [];

  before(async () => {
    redis = await startTestRedis();
    repository = await gloveRepository({
      versions: [1, 2],
      fields: { version_policy: { latest: { num_versions: 2 } }, version_labels: { stable: 1, canary: 2 } },
    });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, ...FAST, DRAIN_TIMEOUT_MS: '0' };
    gateway = await startGatewayProcess(env);
    workers.push(...(await Promise.all([startWorkerProcess(env), startWorkerProcess(env)])));
    await waitUntil('/readyz is 200', async () => (await fetch(`${gateway.url}/readyz`)).status === 200);
  });
  after(async () => {
    await Promise.all([gateway.stop(), ...workers.map((w) => w.stop())]);
    await redis.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('latest{2}: explicit v1 and v2 requests are both served, by those versions', async () => {
    for (const version of [1, 2] as const) {
      const { status, view } = await run(gateway.url, { model: 'glove-embed', version, input: RARE_TEXT });
      assert.equal(status, 200);
      assert.equal(view.version, version);
      assert.equal(computedBy(view), version);
    }
    const latest = await run(gateway.url, { model: 'glove-embed', input: RARE_TEXT });
    assert.equal(latest.view.version, 2, 'no version, no traffic: the latest');
  });

  test('labels route natively and through TF Serving /labels/:label:predict; an unknown label is 404', async () => {
    const canary = await run(gateway.url, { model: 'glove-embed', label: 'canary', input: RARE_TEXT });
    assert.equal(canary.view.version, 2);
    assert.equal(computedBy(canary.view), 2);
    const stable = await callGateway<{ predictions: number[][] }>(gateway.url, 'POST', '/v1/models/glove-embed/labels/stable:predict', { instances: [RARE_TEXT] });
    assert.equal(stable.status, 200);
    assert.ok(stable.json.predictions[0]?.every((value) => value === 0), 'stable is v1, which does not know the word');
    const status = await callGateway<{ model_version_status: { version: string; state: string }[] }>(gateway.url, 'GET', '/v1/models/glove-embed/labels/canary');
    assert.deepEqual(status.json.model_version_status.map((s) => [s.version, s.state]), [['2', 'AVAILABLE']]);
    assert.equal((await callGateway(gateway.url, 'POST', '/v1/jobs', { model: 'glove-embed', label: 'beta', input: 'x' })).status, 404);
  });

  test('v1 removed from the policy with requests queued for it: each succeeds or fails with version_unloaded, none waits; v1 is then 404', async () => {
    // A backlog for v1: 3,000 requests in three bulk calls, then the policy drops v1 at once.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { status, json } = await callGateway<{ jobs: { id: string }[] }>(gateway.url, 'POST', '/v1/jobs', {
        model: 'glove-embed',
        version: 1,
        inputs: Array.from({ length: 1_000 }, (_, k) => `call me ishmael ${i} ${k}`),
      });
      assert.equal(status, 202);
      ids.push(...json.jobs.map((job) => job.id));
    }
    await editGloveConfig(repository, { version_policy: { specific: { versions: [2] } }, version_labels: { canary: 2 } });
    const outcomes = new Map<string, number>();
    const queue = [...ids];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
          const { json } = await callGateway<JobView>(gateway.url, 'GET', `/v1/jobs/${id}?wait=30`);
          const outcome = json.status === 'succeeded' ? 'succeeded' : `${json.status}:${json.error?.code ?? ''}`;
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
      }),
    );
    const allowed = new Set(['succeeded', 'failed:version_unloaded']);
    assert.deepEqual([...outcomes.keys()].filter((outcome) => !allowed.has(outcome)), [], JSON.stringify(Object.fromEntries(outcomes)));
    assert.equal([...outcomes.values()].reduce((a, b) => a + b, 0), ids.length);
    await waitUntil('v1 is gone from the status', async () => !('1' in (await states(gateway.url))));
    const gone = await callGateway<{ error: { code: string } }>(gateway.url, 'POST', '/v1/jobs', { model: 'glove-embed', version: 1, input: 'x' });
    assert.equal(gone.status, 404);
    assert.equal(gone.json.error.code, 'version_not_found');
  });

  test('a worker killed leaves its versions AVAILABLE through the other one, and requests keep succeeding', async () => {
    await workers[0]?.kill();
    workers.shift();
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // beyond 3 heartbeats of 250 ms
    assert.deepEqual(await states(gateway.url), { 2: 'AVAILABLE' });
    assert.equal((await fetch(`${gateway.url}/readyz`)).status, 200);
    const { status, view } = await run(gateway.url, { model: 'glove-embed', input: RARE_TEXT });
    assert.equal(status, 200);
    assert.equal(view.version, 2);
  });
});
