import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { decode, keys, type JobView } from '@inferline/shared';
import { MODEL, postJob, readEvents, settleJob, startFixture, startJob, type Fixture, type SseEvent } from './fixture.ts';

describe('routes/jobs', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 10 } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.redis.flushall();
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
    assert.equal(body.id.length, 21);
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

/** Wait (bounded) for a condition the test cannot await directly. */
async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
