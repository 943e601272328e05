import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRedisServer, type RedisServer } from '../packages/cli/src/redis-server.ts';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { finalJobView, postJob, submitUnderLoad } from './harness/gateway-http.ts';
import { gloveRepository } from './harness/repository.ts';

/**
 * Faults under load with real processes and a real redis-server with AOF: Redis killed (SIGKILL) and
 * restarted from its append-only file, and a gateway killed while clients retry with
 * Idempotency-Key. Nothing accepted may be lost; nothing may be stored twice.
 */

const texts = loadMobyDickParagraphs().slice(0, 200);

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('Redis killed under load and restarted from its append-only file', () => {
  let dir: string;
  let repository: string;
  let redis: RedisServer;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-fault-redis-'));
    redis = await startRedisServer({ dir, appendonly: true });
    repository = await gloveRepository({});
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, HEARTBEAT_INTERVAL_MS: '250' };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });
  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(repository, { recursive: true, force: true });
  });

  test('every job accepted before, during and after the outage succeeds; the gateway answers 503 meanwhile, never stores half', async () => {
    const load = submitUnderLoad(gateway.url, texts);
    const { accepted, statuses } = load;
    await delay(1_000);
    const before = accepted.length;
    redis.process.kill('SIGKILL');
    await new Promise((resolve) => redis.process.once('exit', resolve));
    await delay(1_500);
    // The same port and data folder: the server replays its append-only file.
    redis = await startRedisServer({ dir, port: redis.port, appendonly: true });
    await delay(2_500);
    await load.stop();

    assert.ok(before > 0, 'jobs were accepted before the kill');
    assert.ok((statuses.get(503) ?? 0) > 0, `the gateway refused with 503 while Redis was down (statuses: ${JSON.stringify([...statuses])})`);
    assert.ok(accepted.length > before, 'jobs were accepted again after the restart');
    for (const status of statuses.keys()) assert.ok([200, 202, 503].includes(status), `status ${status}: ${JSON.stringify([...statuses])}`);
    const views = await Promise.all(accepted.map((id) => finalJobView(gateway.url, id)));
    const notSucceeded = views.filter((view) => view.status !== 'succeeded');
    assert.deepEqual(notSucceeded, [], 'every accepted job succeeded');
    assert.equal(new Set(accepted).size, accepted.length, 'each accepted id once');
  });
});

describe('a gateway killed under load, clients retrying with Idempotency-Key', () => {
  let dir: string;
  let repository: string;
  let redis: RedisServer;
  let gateways: (RoleProcess & { url: string })[];
  let worker: RoleProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-fault-gateway-'));
    redis = await startRedisServer({ dir, appendonly: true });
    repository = await gloveRepository({});
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, HEARTBEAT_INTERVAL_MS: '250' };
    gateways = await Promise.all([startGatewayProcess(env), startGatewayProcess(env)]);
    worker = await startWorkerProcess(env);
  });
  after(async () => {
    await Promise.all([...gateways.map((gateway) => gateway.stop()), worker?.stop()]);
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(repository, { recursive: true, force: true });
  });

  test('each request creates exactly one job, whichever gateway answers its retry, and every job succeeds', async () => {
    const [doomed, survivor] = gateways as [RoleProcess & { url: string }, RoleProcess & { url: string }];
    const ids = new Map<string, Set<string>>();
    let stop = false;
    let next = 0;
    let retried = 0;
    const client = async (c: number): Promise<void> => {
      while (!stop) {
        const key = `client-${c}-request-${next++}`;
        const body = { model: 'glove-embed', input: texts[next % texts.length] };
        // First to the gateway that will die; a request with no answer is sent again, same key, to the other.
        let { status, view } = await postJob(doomed.url, body, { 'idempotency-key': key });
        while (status === 0 || status === 503) {
          retried++;
          ({ status, view } = await postJob(survivor.url, body, { 'idempotency-key': key }));
        }
        assert.ok((status === 200 || status === 202) && view, `request ${key}: ${status}`);
        const seen = ids.get(key) ?? new Set<string>();
        seen.add(view.id);
        ids.set(key, seen);
        // The same key again, to the survivor: the first job, not a new one.
        const replay = await postJob(survivor.url, body, { 'idempotency-key': key });
        if (replay.view) seen.add(replay.view.id);
      }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    await delay(1_000);
    await doomed.kill('SIGKILL');
    await delay(1_000);
    stop = true;
    await Promise.all(clients);

    assert.ok(retried > 0, 'some requests lost their answer with the gateway and were sent again');
    for (const [key, seen] of ids) assert.equal(seen.size, 1, `request ${key} created ${seen.size} jobs`);
    const views = await Promise.all([...ids.values()].map((seen) => finalJobView(survivor.url, [...seen][0] as string)));
    assert.deepEqual(views.filter((view) => view.status !== 'succeeded'), [], 'every job succeeded');
  });
});
