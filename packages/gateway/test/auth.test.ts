import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { deadLetterJob, hashApiKey, keys, loadApiKeys, newApiKey, settleJobs, settleMember, startJobs, type ApiKeyEntry } from '@inferline/shared';
import { connectGrpcClients, grpcError, unaryCall } from '../../../test/harness/grpc-clients.ts';
import { startGrpcServer } from '../src/grpc/server.ts';
import type { GatewayApp } from '../src/server.ts';
import { entryOf, MODEL, settleJob, silentLogger, startFixture, type Fixture } from './fixture.ts';

const ALICE = newApiKey();
const BOB = newApiKey();
/** Alice's second key: one tenant may hold several. */
const ALICE_2 = newApiKey();
const LIMITED = newApiKey();
const METRICS_KEY = 'metrics-scrape-secret-0123456789';
const ENTRIES: ApiKeyEntry[] = [
  { tenant: 'alice', key_sha256: hashApiKey(ALICE), max_queued: 3, callback_secret: 'alice-callback-secret-0123' },
  { tenant: 'alice', key_sha256: hashApiKey(ALICE_2) },
  { tenant: 'bob', key_sha256: hashApiKey(BOB) },
  { tenant: 'limited', key_sha256: hashApiKey(LIMITED), rate_limit_rps: 1 },
];

interface ErrorBody {
  error: { code: string; message: string; retry_after_s?: number };
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

function post(app: GatewayApp, url: string, key: string | undefined, payload: Record<string, unknown>, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url, payload, headers: { ...(key ? bearer(key) : {}), ...headers } });
}

function get(app: GatewayApp, url: string, key?: string) {
  return app.inject({ method: 'GET', url, headers: key ? bearer(key) : {} });
}

describe('API keys and tenants (gateway, real Redis)', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { api_keys: JSON.stringify(ENTRIES), metrics_api_key: METRICS_KEY, callback_allow_private: true } });
  });
  after(async () => f.close());
  beforeEach(async () => f.reset());

  it('answers 401 with WWW-Authenticate: Bearer without a key or with an unknown one, on native, TF Serving and OIP routes', async () => {
    for (const [method, url] of [['POST', '/v1/jobs'], ['GET', '/v1/models'], ['GET', '/v1/models/glove-embed'], ['GET', '/v2/models/glove-embed'], ['GET', '/v1/jobs/x~y']] as const) {
      const none = await f.app.inject({ method, url, ...(method === 'POST' ? { payload: { model: MODEL, input: 'hi' } } : {}) });
      assert.equal(none.statusCode, 401, `${method} ${url}`);
      assert.equal(none.headers['www-authenticate'], 'Bearer realm="inferline"');
      const unknown = await f.app.inject({ method, url, headers: bearer(newApiKey()), ...(method === 'POST' ? { payload: { model: MODEL, input: 'hi' } } : {}) });
      assert.equal(unknown.statusCode, 401);
      assert.match(String(unknown.headers['www-authenticate']), /error="invalid_token"/);
    }
    assert.equal((await post(f.app, '/v1/jobs', undefined, { model: MODEL, input: 'hi' })).json<ErrorBody>().error.code, 'unauthorized');
    // The OIP routes answer their own error shape.
    assert.equal(typeof (await get(f.app, '/v2/models/glove-embed')).json<{ error: unknown }>().error, 'string');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 0, 'nothing stored');
  });

  it('keeps the probes and /docs open, and serves /metrics only to METRICS_API_KEY', async () => {
    for (const url of ['/healthz', '/v2/health/live', '/docs/json']) assert.equal((await get(f.app, url)).statusCode, 200, url);
    assert.notEqual((await get(f.app, '/readyz')).statusCode, 401);
    assert.notEqual((await get(f.app, '/v2/health/ready')).statusCode, 401);
    assert.equal((await get(f.app, '/metrics')).statusCode, 401);
    assert.equal((await get(f.app, '/metrics', ALICE)).statusCode, 401, 'a tenant key does not read metrics');
    const metrics = await get(f.app, '/metrics', METRICS_KEY);
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /inferline_requests_total|process_cpu/);
  });

  it('a job belongs to its key\'s tenant: another tenant reads, waits on and streams it as 404; every key of the tenant reads it', async () => {
    const created = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'hello' });
    assert.equal(created.statusCode, 202);
    const { id } = created.json<{ id: string }>();
    assert.equal(await f.redis.hget(keys.job(id), 'tenant'), 'alice');
    assert.equal((await get(f.app, `/v1/jobs/${id}`, ALICE)).statusCode, 200);
    assert.equal((await get(f.app, `/v1/jobs/${id}`, ALICE_2)).statusCode, 200);
    for (const url of [`/v1/jobs/${id}`, `/v1/jobs/${id}?wait=1`, `/v1/jobs/${id}/events`]) {
      const other = await get(f.app, url, BOB);
      assert.equal(other.statusCode, 404, url);
      const body = other.json<ErrorBody>();
      assert.equal(body.error.code, 'job_not_found');
      // The same answer as for an id that never existed: existence is not revealed.
      const missing = `${MODEL}~nonexistentnonexistent1`;
      assert.deepEqual(JSON.parse(JSON.stringify(body).replaceAll(id, missing)), (await get(f.app, url.replace(id, missing), BOB)).json());
    }
  });

  it('a group belongs to its key\'s tenant: another tenant gets 404 on every group route and changes nothing', async () => {
    const created = await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'mean' });
    assert.equal(created.statusCode, 202);
    const { id } = created.json<{ id: string }>();
    const attempts = [
      await get(f.app, `/v1/groups/${id}`, BOB),
      await get(f.app, `/v1/groups/${id}/events`, BOB),
      await get(f.app, `/v1/groups/${id}/output.png`, BOB),
      await post(f.app, `/v1/groups/${id}/inputs`, BOB, { inputs: ['x'] }),
      await f.app.inject({ method: 'POST', url: `/v1/groups/${id}/close`, headers: bearer(BOB) }),
      await f.app.inject({ method: 'DELETE', url: `/v1/groups/${id}`, headers: bearer(BOB) }),
    ];
    for (const reply of attempts) {
      assert.equal(reply.statusCode, 404);
      assert.equal(reply.json<ErrorBody>().error.code, 'group_not_found');
    }
    const view = (await get(f.app, `/v1/groups/${id}`, ALICE)).json<{ status: string; size: number }>();
    assert.deepEqual([view.status, view.size], ['open', 0]);
  });

  it('caps a tenant\'s queued requests per model (max_queued): 429 tenant_queue_full with Retry-After, freed exactly when jobs settle', async () => {
    const ids: string[] = [];
    for (const input of ['a', 'b']) ids.push((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input })).json<{ id: string }>().id);
    const bulk = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, inputs: ['c', 'd'] });
    assert.equal(bulk.statusCode, 429, 'a bulk request that does not fit stores none');
    assert.equal(bulk.json<ErrorBody>().error.code, 'tenant_queue_full');
    assert.ok(Number(bulk.headers['retry-after']) >= 1);
    assert.equal((await post(f.app, '/v1/jobs', ALICE_2, { model: MODEL, input: 'c' })).statusCode, 202, 'the cap is per tenant, over all its keys');
    assert.equal((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'e' })).statusCode, 429);
    assert.equal((await post(f.app, '/v1/jobs', BOB, { model: MODEL, input: 'e' })).statusCode, 202, 'another tenant is not held up');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '3');

    assert.equal(await settleJob(f.redis, ids[0] ?? ''), 1);
    assert.equal(await settleJob(f.redis, ids[0] ?? ''), 0, 'a redelivered settle writes nothing');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '2', 'released once');
    assert.equal((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'f' })).statusCode, 202);
  });

  it('counts group members against max_queued, and releases the unsettled ones when the group is cancelled', async () => {
    const group = await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'mean', inputs: ['a', 'b'], on_item_error: 'skip' });
    assert.equal(group.statusCode, 202);
    const { id } = group.json<{ id: string }>();
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '2');
    assert.equal((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, inputs: ['c', 'd'] })).json<ErrorBody>().error.code, 'tenant_queue_full');
    const [entry] = await f.redis.xrange(keys.requests(MODEL, 1), '-', '+');
    assert.equal(await settleMember(f.redis, { model: MODEL, version: 1, groupId: id, index: 0, entryId: entry?.[0] ?? '', result: { ok: false, code: 'x', message: 'y' } }), 'written');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '1');
    assert.equal((await f.app.inject({ method: 'DELETE', url: `/v1/groups/${id}`, headers: bearer(ALICE) })).statusCode, 200);
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), null, 'nothing left counted');
  });

  it('DELETE /v1/jobs/:id: another tenant gets 404 and changes nothing; the owner\'s cancel releases its max_queued slot and records its callback due, once', async () => {
    const ids: string[] = [];
    for (const input of ['a', 'b', 'c']) {
      const created = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input, callback_url: 'http://127.0.0.1:9/hook' });
      assert.equal(created.statusCode, 202);
      ids.push(created.json<{ id: string }>().id);
    }
    const id = ids[0] ?? '';
    assert.equal((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'd' })).json<ErrorBody>().error.code, 'tenant_queue_full');
    const remove = (key: string) => f.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}`, headers: bearer(key) });

    const other = await remove(BOB);
    assert.equal(other.statusCode, 404);
    assert.equal(other.json<ErrorBody>().error.code, 'job_not_found');
    assert.equal(await f.redis.hget(keys.job(id), 'status'), 'queued', 'another tenant cancels nothing');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 3);
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '3');

    const own = await remove(ALICE_2);
    assert.equal(own.statusCode, 200, 'any key of the owning tenant cancels');
    assert.equal(own.json<{ status: string }>().status, 'cancelled');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '2', 'the cancelled job no longer counts');
    assert.notEqual(await f.redis.zscore(keys.callbacksDue(MODEL), id), null, 'its callback is due');
    assert.equal(await f.redis.zcard(keys.callbacksDue(MODEL)), 1, 'only the cancelled job is due');
    assert.equal((await remove(ALICE)).json<ErrorBody>().error.code, 'job_finished');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '2', 'a second DELETE releases nothing more');
    assert.equal((await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'd' })).statusCode, 202, 'the slot is free again');
  });

  it('a job past its timeout_ms, failed deadline_exceeded by the worker without a run, releases its max_queued slot', async () => {
    const created = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'late', timeout_ms: 1 });
    assert.equal(created.statusCode, 202);
    const { id } = created.json<{ id: string }>();
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '1');
    // A batch formed after the deadline: start.lua reports it, and the worker settles it failed unrun
    // through settle.lua, as the version consumer does (test/callbacks.test.ts runs the real worker).
    const deadline = Number(await f.redis.hget(keys.job(id), 'deadline_at'));
    assert.deepEqual(await startJobs(f.redis, [id], deadline + 1), ['deadline_exceeded']);
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '1', 'still counted while it waits to be failed');
    const written = await settleJobs(f.redis, MODEL, 1, { inference_ms: 0, batch_size: 0, batch_id: '', result_ttl_s: 60 }, [
      { jobId: id, entryId: await entryOf(f.redis, id), level: 1, queue_ms: 1, result: { ok: false, code: 'deadline_exceeded', message: 'late' } },
    ]);
    assert.deepEqual(written, [true]);
    assert.equal(await f.redis.hget(keys.job(id), 'error_code'), 'deadline_exceeded');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), null, 'released');
  });

  it('a dead-lettered job and a group failed by a member (on_item_error "fail") release what they held, once', async () => {
    const job = (await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'poison' })).json<{ id: string }>().id;
    const group = (await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'mean', inputs: ['a', 'b'] })).json<{ id: string }>().id;
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '3');
    const letter = { model: MODEL, version: 1, jobId: job, entryId: await entryOf(f.redis, job), deliveries: 6, result_ttl_s: 60, message: 'poison' };
    assert.equal(await deadLetterJob(f.redis, letter), true);
    assert.equal(await deadLetterJob(f.redis, letter), false);
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '2');
    const entries = await f.redis.xrange(keys.requests(MODEL, 1), '-', '+');
    const member = entries.find(([, fields]) => fields.includes(group));
    const settle = () => settleMember(f.redis, { model: MODEL, version: 1, groupId: group, index: 0, entryId: member?.[0] ?? '', result: { ok: false, code: 'inference_failed', message: 'x' } });
    assert.equal(await settle(), 'group_failed');
    assert.equal(await settle(), 'nothing');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), null, 'the failed member and its unsettled sibling are released');
  });

  it('limits a tenant\'s requests per second (rate_limit_rps): 429 rate_limited with Retry-After', async () => {
    let limited;
    // rate_limit_rps is 1: of a few requests in a row, one past the first of its window is refused.
    for (let i = 0; i < 10 && !limited; i++) {
      const reply = await get(f.app, '/v1/models', LIMITED);
      if (reply.statusCode === 429) limited = reply;
      else assert.equal(reply.statusCode, 200);
    }
    assert.ok(limited, 'refused within 10 requests');
    assert.equal(limited.json<ErrorBody>().error.code, 'rate_limited');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    assert.equal((await get(f.app, '/v1/models', BOB)).statusCode, 200, 'a tenant without rate_limit_rps is not limited');
  });

  it('Idempotency-Key: the same key and body answers the first job; another body is 422; another tenant\'s key is its own', async () => {
    const headers = { 'idempotency-key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' };
    const first = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'same' }, headers);
    assert.equal(first.statusCode, 202);
    const { id } = first.json<{ id: string }>();
    const again = await post(f.app, '/v1/jobs', ALICE_2, { input: 'same', model: MODEL }, headers);
    assert.equal(again.statusCode, 202);
    assert.equal(again.json<{ id: string }>().id, id);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.headers.location, `/v1/jobs/${id}`);
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 1, 'one request stored');
    assert.equal(await f.redis.hget(keys.tenantQueued(MODEL), 'alice'), '1', 'counted once');

    const other = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'different' }, headers);
    assert.equal(other.statusCode, 422);
    assert.equal(other.json<ErrorBody>().error.code, 'idempotency_key_reused');

    const bob = await post(f.app, '/v1/jobs', BOB, { model: MODEL, input: 'same' }, headers);
    assert.equal(bob.statusCode, 202);
    assert.notEqual(bob.json<{ id: string }>().id, id);

    await settleJob(f.redis, id);
    const finished = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'same' }, headers);
    assert.equal(finished.statusCode, 200, 'a replay of a finished job answers it, 200');
    assert.equal(finished.json<{ status: string }>().status, 'succeeded');
  });

  it('Idempotency-Key on POST /v1/groups: a retried create answers the first group and stores nothing more', async () => {
    const headers = { 'idempotency-key': 'group-create-1' };
    const first = await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'mean', inputs: ['a'] }, headers);
    assert.equal(first.statusCode, 202);
    const { id } = first.json<{ id: string }>();
    const again = await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'mean', inputs: ['a'] }, headers);
    assert.equal(again.json<{ id: string }>().id, id);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 1);
    const reused = await post(f.app, '/v1/groups', ALICE, { model: MODEL, reduce: 'sum', inputs: ['a'] }, headers);
    assert.equal(reused.statusCode, 422);
    assert.equal(reused.json<ErrorBody>().error.code, 'idempotency_key_reused');
  });

  it('refuses a callback_url that is not http(s) or, unless allowed, resolves to a private address; needs a signing secret', async () => {
    for (const url of ['ftp://example.com/x', 'not a url', 'http://user:pw@example.com/']) {
      const reply = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'x', callback_url: url });
      assert.equal(reply.statusCode, 400, url);
      assert.equal(reply.json<ErrorBody>().error.code, 'invalid_callback_url');
    }
    // Bob has no callback_secret and there is no CALLBACK_SECRET: nothing could sign his callbacks.
    const unsigned = await post(f.app, '/v1/jobs', BOB, { model: MODEL, input: 'x', callback_url: 'http://127.0.0.1:9/hook' });
    assert.equal(unsigned.json<ErrorBody>().error.code, 'invalid_callback_url');
    const ok = await post(f.app, '/v1/jobs', ALICE, { model: MODEL, input: 'x', callback_url: 'http://127.0.0.1:9/hook' });
    assert.equal(ok.statusCode, 202, 'CALLBACK_ALLOW_PRIVATE=true in this suite');
    assert.equal(await f.redis.hget(keys.job(ok.json<{ id: string }>().id), 'callback_url'), 'http://127.0.0.1:9/hook');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 1, 'the refused ones stored nothing');
  });

  it('gRPC: a call without a known key is UNAUTHENTICATED; ServerLive stays open; a key runs the call as its tenant', async () => {
    const shutdown = new AbortController();
    const server = await startGrpcServer(
      { redis: f.appRedis, events: f.events, models: f.models, metrics: f.app.metrics, settings: f.settings, logger: silentLogger, shutdown: shutdown.signal, apiKeys: loadApiKeys(f.settings) },
      '127.0.0.1',
      0,
    );
    const clients = connectGrpcClients(`127.0.0.1:${server.port}`);
    try {
      const live = await unaryCall<{ live: boolean }>(clients.inference, 'ServerLive', {});
      assert.equal(live.live, true);
      const denied = await grpcError(unaryCall(clients.inference, 'ModelMetadata', { name: MODEL, version: '' }));
      assert.equal(denied.code, status.UNAUTHENTICATED);
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${BOB}`);
      const allowed = await unaryCall<{ name: string }>(clients.inference, 'ModelMetadata', { name: MODEL, version: '' }, 60_000, metadata);
      assert.equal(allowed.name, MODEL);
    } finally {
      clients.close();
      shutdown.abort();
      await server.close(1_000);
    }
  });
});

describe('without any API key configured', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture();
  });
  after(async () => f.close());

  it('the gateway stays open and records no tenant', async () => {
    const created = await post(f.app, '/v1/jobs', undefined, { model: MODEL, input: 'open' });
    assert.equal(created.statusCode, 202);
    const { id } = created.json<{ id: string }>();
    assert.equal(await f.redis.hget(keys.job(id), 'tenant'), null);
    assert.equal((await get(f.app, `/v1/jobs/${id}`)).statusCode, 200);
    assert.equal((await get(f.app, '/metrics')).statusCode, 200);
    assert.equal(await f.redis.exists(keys.tenantQueued(MODEL)), 0);
  });
});
