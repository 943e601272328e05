import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { connectRedis, keys, type ErrorReply } from '@inferline/shared';
import { startTestRedis } from '../../../test/harness/redis.ts';
import { JobEvents } from '../src/job-events.ts';
import { buildApp } from '../src/server.ts';
import { MODEL, postJob, silentLogger, startFixture, type Fixture, storedKeys } from './fixture.ts';

type Reply = { statusCode: number; headers: Record<string, unknown>; json<T>(): T };

function assertError(res: Reply, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, JSON.stringify(res.json()));
  const body = res.json<ErrorReply>();
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  if (message) assert.match(body.error.message, message);
}

describe('error-handler: every error answers {"error":{"code","message"}} with its status', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ versions: [1, 2], versionPolicy: { specific: { versions: [2] } }, workerVersions: [2], maxQueueSize: 3, maxTextBytes: 64, settings: { max_body_bytes: 2048 } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  /** No key but the reduce queue's own metadata (BullMQ writes it when the gateway opens the queue). */
  async function assertNothingStored(): Promise<void> {
    assert.deepEqual(await storedKeys(f.redis), []);
  }

  it('missing input → 400 invalid_input naming the field', async () => {
    assertError(await postJob(f.app, { model: MODEL }), 400, 'invalid_input', /exactly one of "input"/);
    await assertNothingStored();
  });

  it('non-string input for a text model → 400 invalid_input', async () => {
    assertError(await postJob(f.app, { model: MODEL, input: 42 }), 400, 'invalid_input', /JSON string, got a number/);
    assertError(await postJob(f.app, { model: MODEL, input: ['a'] }), 400, 'invalid_input', /got an array/);
    await assertNothingStored();
  });

  it('unknown field → 400 invalid_input naming it (rejected, not stripped)', async () => {
    assertError(await postJob(f.app, { model: MODEL, input: 'x', foo: 1 }), 400, 'invalid_input', /unknown field "foo"/);
    await assertNothingStored();
  });

  it('a version given as a string is not coerced → 400 invalid_input', async () => {
    assertError(await postJob(f.app, { model: MODEL, version: '2', input: 'x' }), 400, 'invalid_input', /field "version"/);
  });

  it('text over max_text_bytes (UTF-8 bytes, not characters) → 400 invalid_input', async () => {
    assertError(await postJob(f.app, { model: MODEL, input: 'é'.repeat(33) }), 400, 'invalid_input', /66 UTF-8 bytes, more than the 64/);
    assert.equal((await postJob(f.app, { model: MODEL, input: 'é'.repeat(32) })).statusCode, 202);
  });

  it('unknown model → 404 model_not_found', async () => {
    assertError(await postJob(f.app, { model: 'nope', input: 'x' }), 404, 'model_not_found', /"nope"/);
  });

  it('a version not served (present on disk but outside the policy, or absent) → 404 version_not_found', async () => {
    assertError(await postJob(f.app, { model: MODEL, version: 1, input: 'x' }), 404, 'version_not_found', /served: 2/);
    assertError(await postJob(f.app, { model: MODEL, version: 7, input: 'x' }), 404, 'version_not_found');
    await assertNothingStored();
  });

  it('unknown job → 404 job_not_found', async () => {
    assertError(await f.app.inject({ url: '/v1/jobs/unknown' }), 404, 'job_not_found');
  });

  it('body over max_body_bytes → 413 payload_too_large', async () => {
    assertError(await postJob(f.app, { model: MODEL, input: 'x'.repeat(4096) }), 413, 'payload_too_large', /2048 bytes/);
    await assertNothingStored();
  });

  it('a malformed multipart body (no boundary; a file part cut short) → 400 invalid_input, not 500, storing nothing', async () => {
    const noBoundary = await f.app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'multipart/form-data' }, payload: 'whatever' });
    assertError(noBoundary, 400, 'invalid_input', /malformed multipart\/form-data body: .*Boundary not found/);
    // Over a socket, as a client whose upload was cut: the closing boundary never comes.
    const body = '--XX\r\nContent-Disposition: form-data; name="model"\r\n\r\nglove-embed\r\n--XX\r\n' +
      'Content-Disposition: form-data; name="input"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff';
    // The app keeps listening until the fixture closes it; the other tests use inject.
    const address = await f.app.listen({ port: 0, host: '127.0.0.1' });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpRequest(`${address}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=XX', 'content-length': Buffer.byteLength(body) } }, (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      });
      request.on('error', reject);
      request.end(body);
    });
    assert.equal(answer.status, 400, answer.body);
    assert.match(answer.body, /"code":"invalid_input".*Part terminated early/);
    await assertNothingStored();
  });

  it('text/plain content type → 415 unsupported_media_type', async () => {
    const res = await f.app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'text/plain' }, payload: 'hello' });
    assertError(res, 415, 'unsupported_media_type');
  });

  it('malformed or empty JSON → 400 invalid_input', async () => {
    const headers = { 'content-type': 'application/json' };
    assertError(await f.app.inject({ method: 'POST', url: '/v1/jobs', headers, payload: '{"model": "glove-embed", ' }), 400, 'invalid_input', /not valid JSON/);
    assertError(await f.app.inject({ method: 'POST', url: '/v1/jobs', headers, payload: '' }), 400, 'invalid_input');
    assertError(await f.app.inject({ method: 'POST', url: '/v1/jobs', headers, payload: '[1,2]' }), 400, 'invalid_input');
  });

  it('unknown route → 404 not_found', async () => {
    assertError(await f.app.inject({ url: '/v9/nothing' }), 404, 'not_found', /GET \/v9\/nothing/);
  });

  it('queue full → 429 queue_full with Retry-After, and the job is not stored', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await postJob(f.app, { model: MODEL, input: `t${i}` })).statusCode, 202);
    const res = await postJob(f.app, { model: MODEL, input: 'one too many' });
    assertError(res, 429, 'queue_full', /max_queue_size/);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 2)), 3);
    assert.equal((await f.redis.keys(keys.job(`${MODEL}~*`))).length, 3);
  });

  it('a burst of 200 mixed malformed and valid requests stores exactly the valid ones', async () => {
    const big = await startFixture({ server: f.server, maxTextBytes: 64 });
    try {
      const headers = { 'content-type': 'application/json' };
      const kinds = ['valid', 'no-input', 'number', 'unknown-field', 'too-long', 'bad-json', 'no-model', 'bad-version'] as const;
      const requests = Array.from({ length: 200 }, (_, i) => {
        const kind = kinds[i % kinds.length] ?? 'valid';
        const input = `text ${i}`;
        const payloads: Record<(typeof kinds)[number], string> = {
          valid: JSON.stringify({ model: MODEL, input }),
          'no-input': JSON.stringify({ model: MODEL }),
          number: JSON.stringify({ model: MODEL, input: i }),
          'unknown-field': JSON.stringify({ model: MODEL, input, extra: true }),
          'too-long': JSON.stringify({ model: MODEL, input: 'x'.repeat(65) }),
          'bad-json': `{"model":"${MODEL}","input":"${input}"`,
          'no-model': JSON.stringify({ model: 'missing', input }),
          'bad-version': JSON.stringify({ model: MODEL, version: 9, input }),
        };
        return { kind, input, promise: big.app.inject({ method: 'POST', url: '/v1/jobs', headers, payload: payloads[kind] }) };
      });
      const replies = await Promise.all(requests.map((r) => r.promise));
      const accepted = new Map<string, string>();
      replies.forEach((res, i) => {
        const { kind, input } = requests[i] ?? { kind: 'valid', input: '' };
        if (kind === 'valid') {
          assert.equal(res.statusCode, 202);
          accepted.set(res.json<{ id: string }>().id, input);
        } else {
          assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${kind} → ${res.statusCode}`);
        }
      });
      assert.equal(accepted.size, 25);
      const entries = await big.redis.xrange(keys.requests(MODEL, 1), '-', '+');
      assert.equal(entries.length, 25);
      const streamJobs = new Set(entries.map(([, fields]) => fields[1]));
      assert.deepEqual(streamJobs, new Set(accepted.keys()));
      const jobKeys = await big.redis.keys(keys.job(`${MODEL}~*`));
      assert.deepEqual(new Set(jobKeys), new Set([...accepted.keys()].map((id) => keys.job(id))));
    } finally {
      await big.close();
    }
  });
});

describe('error-handler: unexpected errors', () => {
  it('an unexpected error → 500 internal whose message reveals nothing', async () => {
    const f = await startFixture();
    const app = buildApp({ redis: f.appRedis, events: f.events, models: f.models, settings: f.settings, logger: silentLogger });
    app.get('/boom', () => {
      throw new TypeError('secret detail');
    });
    try {
      assertError(await app.inject({ url: '/boom' }), 500, 'internal', /^internal error$/);
    } finally {
      await app.close();
      await f.close();
    }
  });
});

describe('error-handler: Redis unreachable → 503 unavailable, nothing stored', () => {
  it('POST /v1/jobs and /readyz answer 503 when the command connection points at a closed port', async () => {
    const f = await startFixture();
    const port = await closedPort();
    const deadRedis = connectRedis(`redis://127.0.0.1:${port}`, { name: 'dead', failFast: true });
    deadRedis.on('error', () => undefined);
    const app = buildApp({ redis: deadRedis, events: f.events, models: f.models, settings: f.settings, logger: silentLogger });
    try {
      assertError(await postJob(app, { model: MODEL, input: 'x' }), 503, 'unavailable');
      assertError(await app.inject({ url: '/readyz' }), 503, 'unavailable');
      assertError(await app.inject({ url: '/v1/jobs/whatever' }), 503, 'unavailable');
      assert.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    } finally {
      await app.close();
      deadRedis.disconnect();
      await f.close();
    }
  });

  it('a command connection that dropped while Redis is up answers 503 and stores nothing', async () => {
    const f = await startFixture();
    try {
      f.appRedis.disconnect();
      assertError(await postJob(f.app, { model: MODEL, input: 'x' }), 503, 'unavailable');
      const waiting = await f.app.inject({ method: 'POST', url: '/v1/jobs', payload: { model: MODEL, inputs: ['x', 'y'] }, headers: { prefer: 'wait=5' } });
      assertError(waiting, 503, 'unavailable');
      assert.equal(f.events.watchedJobs, 0, 'Prefer: wait leaves no waiter behind');
      assert.deepEqual(await storedKeys(f.redis), []);
    } finally {
      await f.close();
    }
  });

  it('after the test Redis is stopped, POST /v1/jobs and /readyz answer 503', async () => {
    const server = await startTestRedis();
    const f = await startFixture({ server });
    try {
      assert.equal((await f.app.inject({ url: '/readyz' })).statusCode, 200);
      assert.equal((await postJob(f.app, { model: MODEL, input: 'before' })).statusCode, 202);
      f.redis.disconnect();
      await server.stop();
      assertError(await postJob(f.app, { model: MODEL, input: 'after' }), 503, 'unavailable');
      assertError(await f.app.inject({ url: '/readyz' }), 503, 'unavailable');
    } finally {
      await f.close();
    }
  });
});

describe('error-handler: readiness needs the event subscription', () => {
  it('/readyz answers 503 while the job events subscription is down', async () => {
    const f = await startFixture();
    const events = new JobEvents(connectRedis('redis://127.0.0.1:1', { name: 'no-events', lazyConnect: true }), silentLogger);
    const app = buildApp({ redis: f.appRedis, events, models: f.models, settings: f.settings, logger: silentLogger });
    try {
      assertError(await app.inject({ url: '/readyz' }), 503, 'unavailable', /subscription/);
    } finally {
      await app.close();
      await events.close();
      await f.close();
    }
  });
});

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
