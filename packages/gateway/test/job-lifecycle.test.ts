import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { keys, settleJobs, startJobs, type JobView } from '@inferline/shared';
import { embeddingOutput, entryOf, MODEL, postJob, startFixture, startJob, type Fixture } from './fixture.ts';

/** How a request ends before it runs: DELETE /v1/jobs/:id, timeout_ms, and where priority puts it. */
describe('routes/jobs: cancel, deadlines, priority', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 10 }, maxQueueSize: 4, batching: { priority_levels: 2, default_timeout_ms: 600_000 } });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  async function enqueue(body: Record<string, unknown> = {}): Promise<JobView> {
    const res = await postJob(f.app, { model: MODEL, input: 'the quick brown fox', ...body });
    assert.equal(res.statusCode, 202, res.body);
    return res.json<JobView>();
  }
  const remove = (id: string) => f.app.inject({ method: 'DELETE', url: `/v1/jobs/${id}` });

  it('DELETE of a queued job answers 200 cancelled, deletes its stream entry, and start.lua never runs it', async () => {
    const job = await enqueue({ priority: 1 });
    const res = await remove(job.id);
    assert.equal(res.statusCode, 200, res.body);
    const view = res.json<JobView>();
    assert.equal(view.status, 'cancelled');
    assert.equal(view.error?.code, 'cancelled');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1, 1)), 0, 'the entry no longer counts against max_queue_size');
    assert.ok((await f.redis.ttl(keys.job(job.id))) > 0, 'the record expires result_ttl_s later');
    assert.deepEqual(await startJob(f.redis, job.id), ['cancelled'], 'a worker that read it before drops it');
    assert.equal((await remove(job.id)).json<{ error: { code: string } }>().error.code, 'job_finished', 'a second DELETE finds it finished');
  });

  it('a DELETE that names a JSON content type and sends no body cancels, as one without the header does', async () => {
    const job = await enqueue();
    const res = await f.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.id}`, headers: { 'content-type': 'application/json' } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json<JobView>().status, 'cancelled');
    const malformed = await f.app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': 'application/json' }, payload: '' });
    assert.equal(malformed.statusCode, 400, 'a POST with an empty JSON body is still refused');
  });

  it('a long-poll on a queued job ends with cancelled as soon as it is cancelled', async () => {
    const job = await enqueue();
    const poll = f.app.inject({ url: `/v1/jobs/${job.id}?wait=9` });
    // The waiter is registered before the DELETE is sent.
    while (f.events.watchedJobs === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.equal((await remove(job.id)).statusCode, 200);
    const res = await poll;
    assert.equal(res.json<JobView>().status, 'cancelled');
  });

  it('DELETE of a running job answers 409 not_cancellable and the job still succeeds; of a finished job 409 job_finished; of an unknown job 404', async () => {
    const job = await enqueue();
    await startJob(f.redis, job.id);
    const running = await remove(job.id);
    assert.equal(running.statusCode, 409);
    assert.equal(running.json<{ error: { code: string; status: string } }>().error.code, 'not_cancellable');
    const [written] = await settleJobs(f.redis, MODEL, 1, { inference_ms: 1, batch_size: 1, batch_id: 'b', result_ttl_s: 60 }, [
      { jobId: job.id, entryId: await entryOf(f.redis, job.id), level: 2, queue_ms: 1, result: { ok: true, output: embeddingOutput() } },
    ]);
    assert.equal(written, true, 'the running job keeps its result');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1, 2)), 0, 'settled on its own level stream');
    const finished = await remove(job.id);
    assert.equal(finished.statusCode, 409);
    assert.equal(finished.json<{ error: { code: string } }>().error.code, 'job_finished');
    assert.equal((await remove(`${MODEL}~nosuchjob`)).statusCode, 404);
  });

  it('timeout_ms is stored as the deadline; start.lua reports a queued job past it as deadline_exceeded and does not start it', async () => {
    const before = Date.now();
    const job = await enqueue({ timeout_ms: 5_000 });
    const deadline = Number(await f.redis.hget(keys.job(job.id), 'deadline_at'));
    assert.ok(deadline >= before + 5_000 && deadline <= Date.now() + 5_000, 'deadline = acceptance + timeout_ms');
    assert.deepEqual(await startJobs(f.redis, [job.id], deadline - 1), ['queued'], 'before its deadline it starts');
    const late = await enqueue({ timeout_ms: 5_000 });
    const lateDeadline = Number(await f.redis.hget(keys.job(late.id), 'deadline_at'));
    assert.deepEqual(await startJobs(f.redis, [late.id], lateDeadline), ['deadline_exceeded']);
    assert.equal(await f.redis.hget(keys.job(late.id), 'status'), 'queued', 'not marked running: the worker settles it failed');
  });

  it('without timeout_ms the model default_timeout_ms applies', async () => {
    const job = await enqueue();
    const deadline = Number(await f.redis.hget(keys.job(job.id), 'deadline_at'));
    const created = Date.parse(job.created_at);
    assert.equal(deadline - created, 600_000);
  });

  it('priority picks the level stream (default: the lowest), max_queue_size counts every level, a priority above priority_levels is refused', async () => {
    const high = await enqueue({ priority: 1 });
    const low = await enqueue();
    assert.equal(await f.redis.hget(keys.job(high.id), 'priority'), '1');
    assert.equal(await f.redis.hget(keys.job(low.id), 'priority'), '2');
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1, 1)), 1);
    assert.equal(await f.redis.xlen(keys.requests(MODEL, 1, 2)), 1);
    await enqueue({ priority: 1 });
    await enqueue({ priority: 2 });
    const full = await postJob(f.app, { model: MODEL, input: 'one too many', priority: 1 });
    assert.equal(full.statusCode, 429, 'four requests over two levels fill max_queue_size 4');
    const tooLow = await postJob(f.app, { model: MODEL, input: 'x', priority: 3 });
    assert.equal(tooLow.statusCode, 400);
    assert.match(tooLow.json<{ error: { message: string } }>().error.message, /priority_levels/);
    for (const bad of [0, 1.5, 'high', -1, 17]) assert.equal((await postJob(f.app, { model: MODEL, input: 'x', priority: bad })).statusCode, 400, `priority ${String(bad)}`);
    for (const bad of [0, 'soon', 1e12]) assert.equal((await postJob(f.app, { model: MODEL, input: 'x', timeout_ms: bad })).statusCode, 400, `timeout_ms ${String(bad)}`);
  });
});
