import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { announceWorker, decode, keys, setAdmission, type JobView } from '@inferline/shared';
import { fakeWorker, MODEL, postJob, readEvents, settleJob, STAND_IN_WORKER, startFixture, startJob, type Fixture, type SseEvent, storedKeys } from './fixture.ts';

describe('routes/jobs', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 10 } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  async function enqueue(input = 'the quick brown fox'): Promise<JobView> {
    const res = await postJob(f.app, { model: MODEL, input });
    assert.equal(res.statusCode, 202, res.body);
    return res.json<JobView>();
  }

  it('POST /v1/jobs stores the job record and one stream entry holding the encoded input, and answers 202 + Location', async () => {
    const res = await postJob(f.app, { model: MODEL, version: 1, input: 'hello world' });
    assert.equal(res.statusCode, 202);
    const body = res.json<JobView>();
    assert.match(body.id, new RegExp(`^${MODEL}~[A-Za-z0-9_-]{21}$`), 'the id carries its model (its hash tag) and 21 random characters');
    assert.deepEqual({ ...body, id: '', created_at: '' }, { id: '', model: MODEL, version: 1, status: 'queued', created_at: '' });
    assert.ok(!Number.isNaN(Date.parse(body.created_at)));
    assert.equal(res.headers.location, `/v1/jobs/${body.id}`);

    const record = await f.redis.hgetall(keys.job(body.id));
    assert.equal(record.status, 'queued');
    assert.equal(record.model, MODEL);
    assert.equal(record.version, '1');
    const entries = await f.redis.xrangeBuffer(keys.requests(MODEL, 1), '-', '+');
    assert.equal(entries.length, 1);
    const [entryId, fields] = entries[0] ?? [Buffer.alloc(0), []];
    assert.equal(entryId.toString(), record.entry);
    assert.equal(fields[0]?.toString(), 'job');
    assert.equal(fields[1]?.toString(), body.id);
    assert.equal(fields[2]?.toString(), 'input');
    assert.equal(decode(fields[3] ?? Buffer.alloc(0)), 'hello world');
  });

  it('GET /v1/jobs/:id answers queued, then running, then succeeded with 100 numbers and timings', async () => {
    const job = await enqueue();
    const queued = await f.app.inject({ url: `/v1/jobs/${job.id}` });
    assert.equal(queued.statusCode, 200);
    assert.equal(queued.json<JobView>().status, 'queued');
    assert.equal(queued.json<JobView>().output, undefined);

    assert.deepEqual(await startJob(f.redis, job.id), ['queued']);
    assert.equal((await f.app.inject({ url: `/v1/jobs/${job.id}` })).json<JobView>().status, 'running');

    assert.equal(await settleJob(f.redis, job.id), 1);
    const done = (await f.app.inject({ url: `/v1/jobs/${job.id}` })).json<JobView>();
    assert.equal(done.status, 'succeeded');
    const embedding = (done.output as { embedding: unknown }).embedding;
    assert.ok(Array.isArray(embedding));
    assert.equal(embedding.length, 100);
    for (const value of embedding) assert.ok(typeof value === 'number' && Math.abs(value - 0.1) < 1e-6);
    assert.deepEqual(done.timings, { queue_ms: 12, inference_ms: 3, batch_size: 4, batch_id: 'batch-1' });
    assert.equal(done.error, undefined);
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 0, 'settle deleted the entry');
  });

  it('GET /v1/jobs/:id of a failed job carries its error and timings, no output', async () => {
    const job = await enqueue();
    await settleJob(f.redis, job.id, { status: 'failed', code: 'inference_failed', message: 'model threw' });
    const view = (await f.app.inject({ url: `/v1/jobs/${job.id}` })).json<JobView>();
    assert.equal(view.status, 'failed');
    assert.deepEqual(view.error, { code: 'inference_failed', message: 'model threw' });
    assert.equal(view.output, undefined);
    assert.ok(view.timings);
  });

  it('GET /v1/jobs/:id of an unknown job answers 404 job_not_found', async () => {
    const res = await f.app.inject({ url: '/v1/jobs/AAAAAAAAAAAAAAAAAAAAA' });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json<{ error: { code: string } }>().error.code, 'job_not_found');
  });

  it('?wait=5 returns the terminal state once a settle fires during the wait', async () => {
    const job = await enqueue();
    const timer = setTimeout(() => void settleJob(f.redis, job.id), 150);
    const res = await f.app.inject({ url: `/v1/jobs/${job.id}?wait=5` });
    clearTimeout(timer);
    assert.equal(res.statusCode, 200);
    assert.equal(res.json<JobView>().status, 'succeeded');
    assert.equal(f.events.watchedJobs, 0, 'the waiter was removed');
  });

  it('?wait=5 answers at once when the job is already terminal', async () => {
    const job = await enqueue();
    await settleJob(f.redis, job.id);
    const res = await f.app.inject({ url: `/v1/jobs/${job.id}?wait=5` });
    assert.equal(res.json<JobView>().status, 'succeeded');
  });

  it('?wait=1 answers the current, non-terminal state when nothing settles, and sees a running start', async () => {
    const job = await enqueue();
    const timer = setTimeout(() => void startJob(f.redis, job.id), 100);
    const res = await f.app.inject({ url: `/v1/jobs/${job.id}?wait=1` });
    clearTimeout(timer);
    assert.equal(res.statusCode, 200);
    assert.equal(res.json<JobView>().status, 'running');
    assert.equal(f.events.watchedJobs, 0);
  });

  it('?wait outside 0..max_wait_s or not a number answers 400 invalid_input', async () => {
    const job = await enqueue();
    for (const wait of ['11', '-1', 'soon']) {
      const res = await f.app.inject({ url: `/v1/jobs/${job.id}?wait=${wait}` });
      assert.equal(res.statusCode, 400, wait);
      const { error } = res.json<{ error: { code: string; message: string } }>();
      assert.equal(error.code, 'invalid_input');
      assert.match(error.message, /wait/);
    }
  });

  it('?wait on an unknown job answers 404 and leaves no waiter', async () => {
    const res = await f.app.inject({ url: '/v1/jobs/AAAAAAAAAAAAAAAAAAAAA?wait=2' });
    assert.equal(res.statusCode, 404);
    assert.equal(f.events.watchedJobs, 0);
  });

  describe('over a real socket', () => {
    let base: string;
    before(async () => {
      await f.app.listen({ port: 0, host: '127.0.0.1' });
      base = `http://127.0.0.1:${(f.app.server.address() as AddressInfo).port}`;
    });

    it('a long-poll whose client disconnects removes its waiter', async () => {
      const job = await enqueue();
      const req = httpRequest(`${base}/v1/jobs/${job.id}?wait=10`);
      req.on('error', () => undefined);
      req.end();
      await until(() => f.events.watchedJobs === 1);
      req.destroy();
      await until(() => f.events.watchedJobs === 0);
    });

    it('POST with Prefer: wait whose client disconnects removes its waiter', async () => {
      const req = httpRequest(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=10' } });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ model: MODEL, input: 'nobody will read this answer' }));
      await until(() => f.events.watchedJobs === 1);
      req.destroy();
      await until(() => f.events.watchedJobs === 0);
    });

    it('GET /v1/jobs/:id/events streams queued, running, succeeded, then closes', async () => {
      const job = await enqueue();
      const res = await fetch(`${base}/v1/jobs/${job.id}/events`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      const events: SseEvent<JobView>[] = [];
      const reading = readEvents<JobView>(res, (event, data) => events.push({ event, data }));
      await until(() => events.length === 1);
      await startJob(f.redis, job.id);
      await until(() => events.length === 2);
      await settleJob(f.redis, job.id);
      await reading; // ends only when the server closes the stream
      assert.deepEqual(
        events.map((e) => e.event),
        ['queued', 'running', 'succeeded'],
      );
      assert.equal(events[2]?.data.status, 'succeeded');
      assert.equal((events[2]?.data.output as { embedding: number[] }).embedding.length, 100);
      assert.equal(f.events.watchedJobs, 0);
    });

    it('GET /v1/jobs/:id/events of a finished job sends the one terminal event and closes', async () => {
      const job = await enqueue();
      await settleJob(f.redis, job.id, { status: 'failed', code: 'inference_failed', message: 'boom' });
      const text = await (await fetch(`${base}/v1/jobs/${job.id}/events`)).text();
      assert.match(text, /^event: failed\ndata: \{.*"inference_failed".*\}\n\n$/);
    });

    it('GET /v1/jobs/:id/events of an unknown job answers 404 JSON', async () => {
      const res = await fetch(`${base}/v1/jobs/AAAAAAAAAAAAAAAAAAAAA/events`);
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'job_not_found');
    });

    it('an event stream whose client disconnects removes its waiter', async () => {
      const job = await enqueue();
      const controller = new AbortController();
      const res = await fetch(`${base}/v1/jobs/${job.id}/events`, { signal: controller.signal });
      assert.equal(res.status, 200);
      await until(() => f.events.watchedJobs === 1);
      controller.abort();
      await until(() => f.events.watchedJobs === 0);
    });
  });
});

describe('routes/jobs: Prefer: wait (RFC 7240) and the bulk form', () => {
  let f: Fixture;
  let worker: { stop(): Promise<void> } | undefined;
  before(async () => {
    f = await startFixture({ maxQueueSize: 5, settings: { max_wait_s: 2, max_bulk_inputs: 4 } });
  });
  after(async () => {
    await worker?.stop();
    await f.close();
  });
  beforeEach(async () => {
    await worker?.stop();
    worker = undefined;
    await f.reset();
  });

  const post = (payload: Record<string, unknown>, prefer?: string) =>
    f.app.inject({ method: 'POST', url: '/v1/jobs', payload, headers: prefer === undefined ? {} : { prefer } });

  it('answers 200 with the terminal view, output included, when the job finishes within the wait', async () => {
    worker = fakeWorker(f.server.url);
    const res = await post({ model: MODEL, input: 'abcde' }, 'wait=5');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['preference-applied'], 'wait=2', 'the wait is capped at max_wait_s');
    const view = res.json<JobView>();
    assert.equal(view.status, 'succeeded');
    assert.equal(res.headers.location, `/v1/jobs/${view.id}`);
    const embedding = view.output?.embedding as number[];
    assert.equal(embedding.length, 100);
    assert.equal(Math.fround(embedding[0] ?? 0), Math.fround(0.05), 'the fake worker writes length / 100');
    assert.deepEqual(view, (await f.app.inject({ url: `/v1/jobs/${view.id}` })).json<JobView>(), 'the same view GET answers');
    assert.equal(f.events.watchedJobs, 0);
  });

  it('a failed job also answers 200 (it is terminal), with its error', async () => {
    worker = fakeWorker(f.server.url);
    const res = await post({ model: MODEL, input: 'fail this one' }, 'respond-async, wait=1');
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json<JobView>().error, { code: 'inference_failed', message: 'model threw' });
  });

  it('answers 202 queued after max_wait_s when nothing runs it (wait=N above the cap waits only the cap)', async () => {
    const started = Date.now();
    const res = await post({ model: MODEL, input: 'nobody serves me' }, 'wait=60');
    const waited = Date.now() - started;
    assert.equal(res.statusCode, 202);
    assert.equal(res.headers['preference-applied'], 'wait=2');
    assert.equal(res.json<JobView>().status, 'queued');
    assert.ok(waited >= 1_900 && waited < 10_000, `waited ${waited} ms, max_wait_s is 2`);
    assert.equal(f.events.watchedJobs, 0);
  });

  it('without the header, or with a malformed one, answers 202 at once', async () => {
    for (const prefer of [undefined, 'wait=soon', 'respond-async']) {
      const res = await post({ model: MODEL, input: 'x' }, prefer);
      assert.equal(res.statusCode, 202, String(prefer));
      assert.equal(res.headers['preference-applied'], undefined);
    }
  });

  it('bulk: one job per input, answered in input order, each its own result', async () => {
    worker = fakeWorker(f.server.url);
    const texts = ['a', 'abcd', 'ab', 'abc'];
    const res = await post({ model: MODEL, inputs: texts }, 'wait=2');
    assert.equal(res.statusCode, 200, res.body);
    const { jobs } = res.json<{ jobs: JobView[] }>();
    assert.equal(new Set(jobs.map((job) => job.id)).size, 4);
    assert.deepEqual(
      jobs.map((job) => Math.round(((job.output?.embedding as number[])[0] ?? 0) * 100)),
      texts.map((text) => text.length),
    );
    const queued = await post({ model: MODEL, inputs: ['x', 'y'] });
    assert.equal(queued.statusCode, 202);
    assert.deepEqual(queued.json<{ jobs: JobView[] }>().jobs.map((job) => job.status), ['queued', 'queued']);
  });

  it('bulk: an invalid input, too many inputs, or a full queue stores nothing', async () => {
    const invalid = await post({ model: MODEL, inputs: ['fine', 7, 'also fine'] });
    assert.equal(invalid.statusCode, 400);
    assert.equal(invalid.json<{ error: { code: string; index: number } }>().error.index, 1);
    const tooMany = await post({ model: MODEL, inputs: ['1', '2', '3', '4', '5'] });
    assert.equal(tooMany.statusCode, 413);
    assert.deepEqual(await storedKeys(f.redis), []);

    assert.equal((await post({ model: MODEL, inputs: ['1', '2', '3'] })).statusCode, 202);
    const full = await post({ model: MODEL, inputs: ['4', '5', '6'] });
    assert.equal(full.statusCode, 429, 'max_queue_size 5: three more do not fit');
    assert.equal((await f.redis.keys(keys.job(`${MODEL}~*`))).length, 3, 'none of the refused call is stored');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 3);
  });

  it('both or neither of input and inputs → 400', async () => {
    for (const payload of [{ model: MODEL }, { model: MODEL, input: 'a', inputs: ['b'] }, { model: MODEL, inputs: [] }]) {
      const res = await post(payload);
      assert.equal(res.statusCode, 400, JSON.stringify(payload));
    }
  });
});

/** Wait (bounded) for a condition the test cannot await directly. */
async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('routes/jobs and routes/groups: versions and labels', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ versions: [1, 2], versionPolicy: { all: {} }, versionLabels: { stable: 1, canary: 2 }, traffic: { stable: 100 } });
  });
  after(async () => {
    await f.close();
  });

  it('a label picks its version for a job and a group; version and label together are refused; a version being unloaded is refused without storing', async () => {
    const stable = await postJob(f.app, { model: MODEL, label: 'stable', input: 'x' });
    assert.equal(stable.statusCode, 202);
    assert.equal(stable.json<{ version: number }>().version, 1);
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 1);
    const group = await f.app.inject({ method: 'POST', url: '/v1/groups', payload: { model: MODEL, label: 'canary', reduce: 'mean', inputs: ['a'] } });
    assert.equal(group.statusCode, 202);
    assert.equal(group.json<{ version: number }>().version, 2);
    const both = await postJob(f.app, { model: MODEL, version: 1, label: 'stable', input: 'x' });
    assert.equal(both.statusCode, 400);

    // traffic sends everything to stable (v1). The worker closed v1 (it is draining) but this gateway
    // has not re-read the workers yet: the enqueue is refused atomically, the gateway reads again, and
    // the request goes to the latest AVAILABLE version instead.
    await setAdmission(f.redis, MODEL, 1, 'closed');
    await announceWorker(f.redis, MODEL, { consumer: STAND_IN_WORKER, backend: 'cpu', versions: { 1: { state: 'UNLOADING' }, 2: { state: 'AVAILABLE' } } }, [2], f.settings.heartbeat_interval_ms);
    const rerouted = await postJob(f.app, { model: MODEL, input: 'x' });
    assert.equal(rerouted.statusCode, 202);
    assert.equal(rerouted.json<{ version: number }>().version, 2);
    const pinned = await postJob(f.app, { model: MODEL, version: 1, input: 'x' });
    assert.equal(pinned.statusCode, 503);
    assert.equal(pinned.headers['retry-after'], '1');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1)), 1, 'nothing more reached the closed version');
  });
});
