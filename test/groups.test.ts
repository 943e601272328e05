import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { connectRedis, groupAdd, keys, loadModelConfig, newGroupId, type GroupView } from '../packages/shared/src/index.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';
import { ROOT, startAggregatorProcess, startGatewayProcess, startRole, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { callGateway, waitGroup } from './harness/gateway-http.ts';
import { startTestRedis, waitForPending, type TestRedis } from './harness/redis.ts';
import { gloveRepository } from './harness/repository.ts';

const MODEL_DIR = join(ROOT, 'models', 'glove-embed');

/** The API's group view, with the outputs these tests read, or an error reply's `error`. */
type Group = Omit<GroupView, 'output' | 'error'> & {
  output?: { embedding?: number[]; outputs?: { embedding: number[] }[]; indexes?: number[] };
  error?: { code: string; message: string; index?: number };
};

/** Call the gateway; answers the status and the JSON body (a group view or an error). */
function call(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Group }> {
  return callGateway<Group>(url, method, path, body);
}

/** In-process glove-embed embeddings of `texts` (the reference for what the served model answers). */
async function embed(texts: readonly string[]): Promise<Float32Array[]> {
  await initBackend();
  const servable = await loadServable(await loadModelConfig(MODEL_DIR), join(MODEL_DIR, '1'), 1);
  const outputs = await servable.predict(texts);
  servable.dispose();
  return outputs.map((output) => output.embedding as Float32Array);
}

/** Element-wise mean in float64. */
function meanOf(vectors: readonly Float32Array[]): number[] {
  const sum = new Array<number>(vectors[0]?.length ?? 0).fill(0);
  for (const vector of vectors) vector.forEach((value, d) => (sum[d] = (sum[d] ?? 0) + value));
  return sum.map((value) => value / vectors.length);
}

function assertClose(actual: readonly number[] | undefined, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.ok(actual, `${what}: no output`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let d = 0; d < expected.length; d++) {
    assert.ok(Math.abs((actual[d] ?? NaN) - (expected[d] ?? NaN)) <= tolerance, `${what} dim ${d}: ${actual[d]} vs ${expected[d]}`);
  }
}

describe('aggregation groups over glove-embed: gateway + 2 workers + aggregator + real Redis', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const roles: RoleProcess[] = [];
  const texts = loadMobyDickParagraphs().slice(0, 500);
  let reference: Float32Array[];
  let probe: Redis;

  before(async () => {
    redis = await startTestRedis();
    probe = new Redis(redis.url);
    repository = await gloveRepository({});
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    // A short sweep interval, for the test of a reduce job lost before it was added.
    const aggregatorEnv = { ...env, REDUCE_SWEEP_INTERVAL_MS: '300' };
    roles.push(...(await Promise.all([startWorkerProcess(env), startWorkerProcess(env), startAggregatorProcess(aggregatorEnv)])));
    assert.equal(texts.length, 500);
    reference = await embed(texts);
  });

  after(async () => {
    probe?.disconnect();
    await Promise.all([gateway?.stop(), ...roles.map((role) => role.stop())]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('mean over 500 texts equals the mean of the in-process embeddings to 1e-5', async () => {
    const created = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', inputs: texts, reduce: 'mean' });
    assert.equal(created.status, 202);
    assert.equal(created.json.size, 500);
    assert.equal(created.json.status, 'queued');
    const group = await waitGroup<Group>(gateway.url, created.json.id);
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    assert.equal(group.completed, 500);
    assertClose(group.output?.embedding, meanOf(reference), 1e-5, 'mean');

    assert.equal(await probe.exists(keys.groupResults(group.id)), 0, 'member outputs are deleted once reduced');
    assert.ok((await probe.ttl(keys.group(group.id))) > 0, 'the group output follows result_ttl_s');
  });

  test('collect keeps input order while 2 workers race, with the group fed in chunks', async () => {
    const created = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', reduce: 'collect' });
    assert.equal(created.status, 202);
    assert.equal(created.json.status, 'open');
    const id = created.json.id;
    for (let start = 0; start < 300; start += 100) {
      const chunk = await call(gateway.url, 'POST', `/v1/groups/${id}/inputs`, { inputs: texts.slice(start, start + 100), start });
      assert.equal(chunk.status, 202, JSON.stringify(chunk.json));
      assert.equal(chunk.json.size, start + 100);
    }
    const retried = await call(gateway.url, 'POST', `/v1/groups/${id}/inputs`, { inputs: texts.slice(200, 300), start: 200 });
    assert.equal(retried.status, 409, 'a retried chunk is not stored twice');
    assert.equal(retried.json.error?.code, 'index_conflict');
    const closed = await call(gateway.url, 'POST', `/v1/groups/${id}/close`);
    assert.equal(closed.status, 200);
    const group = await waitGroup<Group>(gateway.url, id);
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    const outputs = group.output?.outputs ?? [];
    assert.equal(outputs.length, 300);
    assert.deepEqual(group.output?.indexes, Array.from({ length: 300 }, (_, i) => i));
    outputs.forEach((output, i) => assertClose(output.embedding, reference[i] as Float32Array, 1e-6, `member ${i}`));
    const served = roles.slice(0, 2).map((worker) => worker.output().includes(`"${id}/`));
    assert.deepEqual(served, [true, true], 'both workers ran members of the group');
  });

  test('progress events, then the final state, on GET /v1/groups/:id/events', async () => {
    const created = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', inputs: texts.slice(0, 200), reduce: 'sum' });
    const response = await fetch(`${gateway.url}/v1/groups/${created.json.id}/events`);
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const events = [...(await response.text()).matchAll(/^event: (\w+)\ndata: (.*)$/gm)].map((m) => ({ name: m[1], view: JSON.parse(m[2] ?? '{}') as Group }));
    const last = events.at(-1);
    assert.equal(last?.name, 'succeeded');
    assert.equal(last?.view.completed, 200);
    const progress = events.slice(0, -1);
    assert.ok(progress.every((event) => event.name === 'progress' && event.view.output === undefined));
    const counts = progress.map((event) => event.view.completed);
    assert.deepEqual(counts, [...counts].sort((a, b) => a - b), 'completed never goes back');
    const expected = reference.slice(0, 200).reduce((sum, vector) => sum.map((value, d) => value + (vector[d] ?? 0)), new Array<number>(100).fill(0));
    assertClose(last?.view.output?.embedding, expected, 1e-4, 'sum');
  });

  test('one invalid input rejects the whole request with its index, and stores nothing', async () => {
    const before = await probe.xlen(keys.requests('glove-embed', 1));
    const groupsBefore = (await probe.keys('il:{m:*}:group:*')).length;
    const { status, json } = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', inputs: ['fine', 'also fine', 42, {}], reduce: 'mean' });
    assert.equal(status, 400);
    assert.equal(json.error?.code, 'invalid_input');
    assert.equal(json.error?.index, 2);
    assert.equal(await probe.xlen(keys.requests('glove-embed', 1)), before);
    assert.equal((await probe.keys('il:{m:*}:group:*')).length, groupsBefore, 'no group record');

    const labels = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', inputs: ['a'], reduce: 'labels' });
    assert.equal(labels.status, 400);
    assert.equal(labels.json.error?.code, 'invalid_reduce');
    const unknown = await call(gateway.url, 'GET', '/v1/groups/no-such-group');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error?.code, 'group_not_found');
  });

  test('inferline group streams a file of texts and prints the reduced output', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'inferline-group-cli-'));
    try {
      const file = join(dir, 'texts.txt');
      // Blank lines are skipped; 250 texts in chunks of 100 (three chunks, the last one short).
      await writeFile(file, `${texts.slice(0, 250).join('\n\n')}\n`);
      const cli = startRole(['group', '--url', gateway.url, '--model', 'glove-embed', '--reduce', 'mean', '--file', file, '--chunk-size', '100'], {});
      assert.equal(await cli.exited, 0, cli.output());
      const printed = cli.lines.find((line) => line.startsWith('{"embedding"'));
      assert.ok(printed, cli.output());
      assertClose((JSON.parse(printed) as { embedding: number[] }).embedding, meanOf(reference.slice(0, 250)), 1e-5, 'CLI mean');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a ready group whose reduce job was never added (its process died first) is reduced after the sweep finds it', async () => {
    // What the gateway's close does, minus the job: the group is closed with nothing left to settle and
    // recorded in the ready set, and then the process "dies" before adding the reduce job.
    const id = newGroupId('glove-embed');
    const connection = connectRedis(redis.url, { name: 'test' });
    try {
      const { status, ready } = await groupAdd(connection, {
        groupId: id,
        model: 'glove-embed',
        version: 1,
        max_queue_size: 1000,
        inputs: [],
        create: { reduce: 'collect', output_name: '*', on_item_error: 'fail', result_ttl_s: 60 },
        close: true,
        keep_inputs: false,
      });
      assert.deepEqual([status, ready], ['reducing', true]);
    } finally {
      connection.disconnect();
    }
    const group = await waitGroup<Group>(gateway.url, id);
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    assert.deepEqual(group.output, { outputs: [], indexes: [] });
  });

  test('DELETE cancels an open group; it then takes no inputs', async () => {
    const created = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', reduce: 'mean' });
    const id = created.json.id;
    assert.equal((await call(gateway.url, 'POST', `/v1/groups/${id}/inputs`, { inputs: texts.slice(0, 10) })).status, 202);
    const cancelled = await call(gateway.url, 'DELETE', `/v1/groups/${id}`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.json.status, 'cancelled');
    assert.equal(cancelled.json.error?.code, 'cancelled');
    const late = await call(gateway.url, 'POST', `/v1/groups/${id}/inputs`, { inputs: ['more'] });
    assert.equal(late.status, 409);
    assert.equal(late.json.error?.code, 'group_closed');
    const again = await call(gateway.url, 'DELETE', `/v1/groups/${id}`);
    assert.equal(again.status, 409);
    assert.equal(again.json.error?.code, 'group_finished');
  });
});

describe('a worker killed with SIGKILL while it holds members of a group', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const roles: RoleProcess[] = [];
  const MEMBERS = 40;
  let probe: Redis;

  before(async () => {
    redis = await startTestRedis();
    probe = new Redis(redis.url);
    // A long batch_timeout_ms keeps the first worker holding its delivered, unsettled members while it
    // waits for the batch to fill; a short visibility timeout lets the survivor claim them soon.
    repository = await gloveRepository({ batching: { max_batch_size: 64, batch_timeout_ms: 5_000 }, queue: { visibility_timeout_ms: 1_000 } });
  });

  after(async () => {
    probe?.disconnect();
    await Promise.all([gateway?.stop(), ...roles.map((role) => role.stop())]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('the group still completes with the right output, and its reduce runs once', async () => {
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    roles.push(await startAggregatorProcess(env));
    // The gateway admits requests only for a version a live worker has AVAILABLE: the victim first.
    const victim = await startWorkerProcess(env);
    roles.push(victim);
    const texts = loadMobyDickParagraphs().slice(0, MEMBERS);
    const created = await call(gateway.url, 'POST', '/v1/groups', { model: 'glove-embed', inputs: texts, reduce: 'mean' });
    assert.equal(created.status, 202);
    const stream = keys.requests('glove-embed', 1);
    assert.equal(await waitForPending(probe, stream, MEMBERS), MEMBERS, 'the first worker holds every member, delivered and unsettled');
    await victim.kill('SIGKILL');
    roles.push(await startWorkerProcess(env));

    const group = await waitGroup<Group>(gateway.url, created.json.id);
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    assert.equal(group.completed, MEMBERS);
    assertClose(group.output?.embedding, meanOf(await embed(texts)), 1e-5, 'mean');
    assert.equal(await probe.hget(keys.group(group.id), 'reduce_runs'), '1');
  });
});
