import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { connectRedis, idShard, keys, keySlot, masterNodes, whenConnected, type Redis } from '../packages/shared/src/index.ts';
import { startAggregatorProcess, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { TEST_REDIS_CLUSTER, startTestRedis, type TestRedis } from './harness/redis.ts';
import { finalJobView, postJob, submitUnderLoad } from './harness/gateway-http.ts';
import { gloveRepository } from './harness/repository.ts';

/**
 * Partitioned request streams against a real Redis (a 3-master Redis Cluster under
 * `INFERLINE_TEST_REDIS=cluster`, `npm run test:cluster`; one redis-server otherwise): glove-embed
 * with `partitions: 3` behind a gateway and a worker process. The requests land on all three
 * partitions (on the cluster: on more than one master), every one succeeds, and on the cluster a
 * master killed (SIGKILL) under load and restarted from its append-only file loses no accepted job.
 */

const texts = loadMobyDickParagraphs().slice(0, 120);
const PARTITIONS = 3;

interface JobView {
  id: string;
  status: string;
  error?: { code: string };
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe(`partitions: ${PARTITIONS} (${TEST_REDIS_CLUSTER ? '3-master Redis Cluster' : 'one Redis'})`, () => {
  let redis: TestRedis;
  let probe: Redis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  let aggregator: RoleProcess;

  before(async () => {
    redis = await startTestRedis();
    probe = connectRedis(redis.url, { name: 'test-probe' });
    await whenConnected(probe);
    repository = await gloveRepository({ fields: { partitions: PARTITIONS } });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, HEARTBEAT_INTERVAL_MS: '250' };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
    aggregator = await startAggregatorProcess({ ...env, REDUCE_SWEEP_INTERVAL_MS: '500' });
  });
  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop(), aggregator?.stop()]);
    probe?.disconnect();
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('requests spread over every partition (and over several masters), each one succeeds, each found by its id alone', async () => {
    const ids: string[] = [];
    for (const text of texts) {
      const { status, view } = await postJob(gateway.url, { model: 'glove-embed', input: text });
      assert.equal(status, 202, JSON.stringify(view));
      ids.push((view as JobView).id);
    }
    // A bulk call goes to one partition, in one script call.
    const bulk = await fetch(`${gateway.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'glove-embed', inputs: texts.slice(0, 10) }) });
    const bulkIds = ((await bulk.json()) as { jobs: JobView[] }).jobs.map((view) => view.id);
    assert.equal(new Set(bulkIds.map((id) => idShard(id))).size, 1, 'one bulk call, one partition');
    ids.push(...bulkIds);

    const shards = new Set(ids.map((id) => idShard(id)));
    assert.deepEqual([...shards].sort(), ['glove-embed', 'glove-embed~1', 'glove-embed~2']);
    const views = await Promise.all(ids.map((id) => finalJobView(gateway.url, id)));
    assert.deepEqual(views.filter((view) => view.status !== 'succeeded'), [], 'every job succeeded');

    // The records are where their ids say: on the master of their shard's slot.
    const masters = masterNodes(probe);
    const perMaster = await Promise.all(masters.map(async (node) => (await node.keys('il:*:job:*')).length));
    assert.equal(perMaster.reduce((a, b) => a + b, 0), ids.length, `every record stored once (${perMaster.join(', ')})`);
    if (TEST_REDIS_CLUSTER) {
      assert.ok(perMaster.filter((n) => n > 0).length > 1, `job records on more than one master: ${perMaster.join(', ')}`);
      const slots = new Set([...shards].map((shard) => keySlot(keys.job(`${shard as string}~x`))));
      assert.equal(slots.size, PARTITIONS, 'each partition in its own slot');
    }
  });

  test('the same Idempotency-Key always reaches the same partition: the retry returns the first job', async () => {
    const body = { model: 'glove-embed', input: texts[0] };
    const first = await postJob(gateway.url, body, { 'idempotency-key': 'cluster-key-1' });
    const again = await postJob(gateway.url, body, { 'idempotency-key': 'cluster-key-1' });
    assert.ok(first.view && again.view);
    assert.equal(again.view.id, first.view.id);
    assert.equal((await finalJobView(gateway.url, first.view.id)).status, 'succeeded');
  });

  test('a group on the partitioned model lives on partition 0; collect gives each member the output a single job gets', async () => {
    const inputs = texts.slice(0, 24);
    const created = await fetch(`${gateway.url}/v1/groups`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'glove-embed', reduce: 'collect', inputs }) });
    assert.equal(created.status, 202);
    const group = (await created.json()) as { id: string };
    assert.equal(idShard(group.id), 'glove-embed', 'a group is on partition 0');
    let view: { status: string; output?: { outputs: { embedding: number[] }[] } } = { status: 'queued' };
    while (!['succeeded', 'failed', 'cancelled'].includes(view.status)) view = (await (await fetch(`${gateway.url}/v1/groups/${group.id}?wait=30`)).json()) as typeof view;
    assert.equal(view.status, 'succeeded', JSON.stringify(view));
    // Each member's output equals the single job's output for the same text (served from any partition).
    const singles = await Promise.all(inputs.slice(0, 4).map(async (input) => {
      const { view: job } = await postJob(gateway.url, { model: 'glove-embed', input }, { prefer: 'wait=30' });
      return (job as JobView & { output?: { embedding: number[] } }).output?.embedding ?? [];
    }));
    singles.forEach((embedding, i) => {
      const member = view.output?.outputs[i]?.embedding ?? [];
      assert.equal(member.length, 100);
      member.forEach((x, k) => assert.ok(Math.abs(x - (embedding[k] ?? NaN)) < 1e-6, `member ${i} element ${k}`));
    });
  });

  test('a master killed under load and restarted from its append-only file loses no accepted job', { skip: TEST_REDIS_CLUSTER ? false : 'needs the cluster (npm run test:cluster)' }, async () => {
    const cluster = redis.cluster;
    assert.ok(cluster);
    const load = submitUnderLoad(gateway.url, texts);
    const { accepted, statuses } = load;
    await delay(1_000);
    const before = accepted.length;
    await cluster.restart(1, 1_000);
    await delay(2_500);
    await load.stop();

    assert.ok(before > 0, 'jobs were accepted before the kill');
    assert.ok(accepted.length > before, 'jobs were accepted after the restart');
    const errors = gateway.lines.filter((line) => /"level":50|"err"/.test(line));
    for (const status of statuses.keys()) assert.ok([200, 202, 503].includes(status), `status ${status}: ${JSON.stringify([...statuses])}\n${errors.slice(0, 5).join('\n')}`);
    const views = await Promise.all(accepted.map((id) => finalJobView(gateway.url, id)));
    assert.deepEqual(views.filter((view) => view.status !== 'succeeded'), [], 'every accepted job succeeded');
    assert.equal(new Set(accepted).size, accepted.length, 'each accepted id once');
  });
});
