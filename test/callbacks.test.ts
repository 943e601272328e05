import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  BULLMQ_PREFIX,
  CALLBACKS_QUEUE,
  DELIVERY_HEADER,
  hashApiKey,
  keys,
  newApiKey,
  SIGNATURE_HEADER,
  verifyCallbackSignature,
  type ApiKeyEntry,
} from '../packages/shared/src/index.ts';
import { startAggregatorProcess, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { gloveRepository } from './harness/repository.ts';

const MODEL = 'glove-embed';
const KEY = newApiKey();
const SECRET = 'callback-secret-of-acme-0123456789';
/** A tenant that may have one request queued per model (max_queued 1), and another tenant. */
const CAPPED_KEY = newApiKey();
const OTHER_KEY = newApiKey();
const ENTRIES: ApiKeyEntry[] = [
  { tenant: 'acme', key_sha256: hashApiKey(KEY), callback_secret: SECRET },
  { tenant: 'capped', key_sha256: hashApiKey(CAPPED_KEY), callback_secret: SECRET, max_queued: 1 },
  { tenant: 'other', key_sha256: hashApiKey(OTHER_KEY) },
];
/** Attempts of a delivery in this suite (CALLBACK_ATTEMPTS). */
const ATTEMPTS = 3;

/** One request the receiver got. */
interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A callback receiver: records every request; a path's first `failFirst[path]` requests are answered
 * 500, the rest 204. `next(path, n)` resolves once `n` requests reached the path.
 */
async function startReceiver(failFirst: Record<string, number>): Promise<{ url: string; server: Server; got: Received[]; next(path: string, n: number): Promise<Received[]> }> {
  const got: Received[] = [];
  const waiters: (() => void)[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const path = req.url ?? '';
      got.push({ path, headers: req.headers, body: Buffer.concat(chunks) });
      const seen = got.filter((r) => r.path === path).length;
      res.writeHead(seen <= (failFirst[path] ?? 0) ? 500 : 204).end();
      for (const wake of waiters.splice(0)) wake();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const next = (path: string, n: number): Promise<Received[]> =>
    new Promise((resolve) => {
      const check = (): void => {
        const matching = got.filter((r) => r.path === path);
        if (matching.length >= n) resolve(matching);
        else waiters.push(check);
      };
      check();
    });
  return { url, server, got, next };
}

async function call<T>(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, key = KEY): Promise<{ status: number; json: T; headers: Headers }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as T, headers: response.headers };
}

describe('callbacks and idempotent retries: gateway + worker + aggregator + real Redis', () => {
  let redis: TestRedis;
  let probe: Redis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const roles: RoleProcess[] = [];
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  before(async () => {
    redis = await startTestRedis();
    probe = new Redis(redis.url);
    repository = await gloveRepository({});
    receiver = await startReceiver({ '/flaky': 2, '/down': 1_000 });
    const env = {
      REDIS_URL: redis.url,
      MODEL_REPOSITORY: repository,
      API_KEYS: JSON.stringify(ENTRIES),
      CALLBACK_ALLOW_PRIVATE: 'true',
      CALLBACK_ATTEMPTS: String(ATTEMPTS),
      CALLBACK_BACKOFF_MS: '50',
      CALLBACK_POLL_INTERVAL_MS: '50',
    };
    gateway = await startGatewayProcess(env);
    roles.push(...(await Promise.all([startWorkerProcess(env), startAggregatorProcess(env)])));
  });

  after(async () => {
    probe?.disconnect();
    await Promise.all([gateway?.stop(), ...roles.map((role) => role.stop())]);
    receiver?.server.close();
    await redis?.stop();
    if (repository) await rm(repository, { recursive: true, force: true });
  });

  test('a job\'s terminal view is POSTed signed with the tenant\'s secret, again after the receiver failed twice', async () => {
    const created = await call<{ id: string }>(gateway.url, 'POST', '/v1/jobs', { model: MODEL, input: 'Call me Ishmael.', callback_url: `${receiver.url}/flaky` });
    assert.equal(created.status, 202);
    const { id } = created.json;
    const deliveries = await receiver.next('/flaky', 3);
    assert.equal(deliveries.length, 3, 'two failed attempts, then the one answered 204; no more');
    const view = await call<Record<string, unknown>>(gateway.url, 'GET', `/v1/jobs/${id}`);
    for (const delivery of deliveries) {
      assert.equal(delivery.headers[DELIVERY_HEADER], `job:${id}`);
      assert.equal(delivery.headers['content-type'], 'application/json');
      const signature = String(delivery.headers[SIGNATURE_HEADER]);
      assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/);
      assert.ok(verifyCallbackSignature(SECRET, signature, delivery.body, Math.floor(Date.now() / 1000)), 'signed with the tenant secret');
      assert.ok(!verifyCallbackSignature('another-secret-0123456789', signature, delivery.body, Math.floor(Date.now() / 1000)));
      assert.deepEqual(JSON.parse(delivery.body.toString()), view.json, 'the body is the terminal view GET shows');
    }
    assert.equal(view.json.status, 'succeeded');
    assert.equal(await probe.zcard(keys.callbacksDue(MODEL)), 0, 'the due set is drained');
  });

  test('a group\'s terminal view is POSTed once it is reduced', async () => {
    const created = await call<{ id: string }>(gateway.url, 'POST', '/v1/groups', { model: MODEL, reduce: 'mean', inputs: ['a whale', 'the sea'], callback_url: `${receiver.url}/group` });
    assert.equal(created.status, 202);
    const [delivery] = await receiver.next('/group', 1);
    assert.ok(delivery);
    assert.equal(delivery.headers[DELIVERY_HEADER], `group:${created.json.id}`);
    assert.ok(verifyCallbackSignature(SECRET, String(delivery.headers[SIGNATURE_HEADER]), delivery.body, Math.floor(Date.now() / 1000)));
    const body = JSON.parse(delivery.body.toString()) as { id: string; status: string; output?: { embedding?: number[] } };
    assert.equal(body.id, created.json.id);
    assert.equal(body.status, 'succeeded');
    assert.equal(body.output?.embedding?.length, 100);
  });

  test('a callback whose receiver keeps failing is dead-lettered after CALLBACK_ATTEMPTS: kept in the failed set, logged', async () => {
    const created = await call<{ id: string }>(gateway.url, 'POST', '/v1/jobs', { model: MODEL, input: 'nobody listens', callback_url: `${receiver.url}/down` });
    const { id } = created.json;
    const deliveries = await receiver.next('/down', ATTEMPTS);
    assert.equal(deliveries.length, ATTEMPTS);
    const aggregator = roles[1];
    assert.ok(aggregator);
    await aggregator.waitFor(/callback dead-lettered/);
    const queue = new Queue(CALLBACKS_QUEUE, { connection: probe, prefix: BULLMQ_PREFIX });
    try {
      const job = await queue.getJob(`job-${id}`);
      assert.equal(await job?.getState(), 'failed');
      assert.equal(job?.attemptsMade, ATTEMPTS);
    } finally {
      await queue.close();
    }
    assert.equal(receiver.got.filter((r) => r.path === '/down').length, ATTEMPTS, 'no attempt past the last');
  });

  test('behind a paused worker: a cancelled job frees its tenant\'s max_queued slot and its callback is POSTed cancelled; another tenant\'s DELETE is 404; a job failed deadline_exceeded frees its slot', async () => {
    const as = <T>(key: string, method: string, path: string, body?: unknown) => call<T>(gateway.url, method, path, body, {}, key);
    const worker = roles[0];
    assert.ok(worker);
    // The worker stops reading (SIGSTOP), so the jobs stay queued; its heartbeat outlives the pause.
    worker.child.kill('SIGSTOP');
    try {
      const first = await as<{ id: string }>(CAPPED_KEY, 'POST', '/v1/jobs', { model: MODEL, input: 'to be cancelled', callback_url: `${receiver.url}/cancelled` });
      assert.equal(first.status, 202);
      const { id } = first.json;
      const full = await as<{ error: { code: string } }>(CAPPED_KEY, 'POST', '/v1/jobs', { model: MODEL, input: 'over the cap' });
      assert.equal(full.status, 429);
      assert.equal(full.json.error.code, 'tenant_queue_full');

      const foreign = await as<{ error: { code: string } }>(OTHER_KEY, 'DELETE', `/v1/jobs/${id}`);
      assert.equal(foreign.status, 404);
      assert.equal(foreign.json.error.code, 'job_not_found');
      assert.equal((await as<{ status: string }>(CAPPED_KEY, 'GET', `/v1/jobs/${id}`)).json.status, 'queued', 'another tenant cancelled nothing');

      const cancelled = await as<{ status: string }>(CAPPED_KEY, 'DELETE', `/v1/jobs/${id}`);
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.json.status, 'cancelled');
      const [delivery] = await receiver.next('/cancelled', 1);
      assert.ok(delivery);
      assert.equal(delivery.headers[DELIVERY_HEADER], `job:${id}`);
      assert.ok(verifyCallbackSignature(SECRET, String(delivery.headers[SIGNATURE_HEADER]), delivery.body, Math.floor(Date.now() / 1000)));
      const view = JSON.parse(delivery.body.toString()) as { id: string; status: string; error?: { code: string } };
      assert.deepEqual([view.id, view.status, view.error?.code], [id, 'cancelled', 'cancelled']);

      const expiring = await as<{ id: string }>(CAPPED_KEY, 'POST', '/v1/jobs', { model: MODEL, input: 'nobody waits for this one', timeout_ms: 1 });
      assert.equal(expiring.status, 202, 'the cancel freed the slot');
      assert.equal((await as<unknown>(CAPPED_KEY, 'POST', '/v1/jobs', { model: MODEL, input: 'over the cap' })).status, 429, 'the expiring job holds it');
      // The 1 ms deadline has passed long before the worker resumes (it is stopped).
      await new Promise((resolve) => setTimeout(resolve, 20));
      worker.child.kill('SIGCONT');
      let expired: { status: string; error?: { code: string } };
      do expired = (await as<typeof expired>(CAPPED_KEY, 'GET', `/v1/jobs/${expiring.json.id}?wait=30`)).json;
      while (expired.status === 'queued' || expired.status === 'running');
      assert.deepEqual([expired.status, expired.error?.code], ['failed', 'deadline_exceeded']);
      assert.equal(await probe.hget(keys.tenantQueued(MODEL), 'capped'), null, 'nothing counted for the tenant');
      const next = await call<{ status: string }>(gateway.url, 'POST', '/v1/jobs', { model: MODEL, input: 'after the deadline' }, { prefer: 'wait=30' }, CAPPED_KEY);
      assert.equal(next.status, 200, 'the failed job freed the slot');
      assert.equal(next.json.status, 'succeeded');
    } finally {
      worker.child.kill('SIGCONT');
    }
  });

  test('a client whose connection dropped after its job was stored retries with the same Idempotency-Key: the first job, not a second', async () => {
    const body = JSON.stringify({ model: MODEL, input: 'dropped connection' });
    const idempotency = 'retry-after-drop-1';
    const jobCount = async (): Promise<number> => (await probe.keys(keys.job(`${MODEL}~*`))).length;
    const before = await jobCount();
    // Send the whole request, then drop the connection without reading the answer.
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${gateway.url}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'idempotency-key': idempotency, 'content-length': Buffer.byteLength(body) },
      });
      req.on('error', () => resolve());
      req.end(body, () => {
        req.destroy();
        resolve();
      });
    });
    // The retry may reach the gateway before or after the first request was stored: either way one job.
    const retry = await call<{ id: string; status: string }>(gateway.url, 'POST', '/v1/jobs', JSON.parse(body), { 'idempotency-key': idempotency, prefer: 'wait=30' });
    assert.equal(retry.status, 200);
    assert.equal(retry.json.status, 'succeeded');
    const again = await call<{ id: string }>(gateway.url, 'POST', '/v1/jobs', JSON.parse(body), { 'idempotency-key': idempotency });
    assert.equal(again.json.id, retry.json.id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await jobCount(), before + 1, 'one job for the dropped request and its retries');
    const reused = await call<{ error: { code: string } }>(gateway.url, 'POST', '/v1/jobs', { model: MODEL, input: 'another text' }, { 'idempotency-key': idempotency });
    assert.equal(reused.status, 422);
    assert.equal(reused.json.error.code, 'idempotency_key_reused');
    assert.equal(await jobCount(), before + 1);
  });
});
