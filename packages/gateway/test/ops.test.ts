import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { keys } from '@inferline/shared';
import { MODEL, postJob, startFixture, type Fixture } from './fixture.ts';

describe('routes/ops', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ maxQueueSize: 2 });
  });
  after(async () => {
    await f.close();
  });

  it('/healthz answers 200', async () => {
    const res = await f.app.inject({ url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: 'ok' });
  });

  it('/readyz answers 200 when Redis answers, events are subscribed and every model has a version AVAILABLE on a live worker', async () => {
    const res = await f.app.inject({ url: '/readyz' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { status: 'ready', models: [MODEL] });
  });

  it('/readyz answers 503 naming the models no live worker has AVAILABLE (none yet, or still loading)', async () => {
    const g = await startFixture({ server: f.server, noWorker: true });
    try {
      const none = await g.app.inject({ url: '/readyz' });
      assert.equal(none.statusCode, 503);
      assert.equal(none.headers['retry-after'], '1');
      assert.deepEqual(none.json<{ error: { models_unavailable: string[] } }>().error.models_unavailable, [MODEL]);
      await g.announce([1], 'LOADING');
      assert.equal((await g.app.inject({ url: '/readyz' })).statusCode, 503);
      await g.announce([1], 'AVAILABLE');
      assert.equal((await g.app.inject({ url: '/readyz' })).statusCode, 200);
    } finally {
      await g.close();
      await f.announce();
    }
  });

  it('/metrics counts a request refused before a version was chosen (no worker has one AVAILABLE) with version=""', async () => {
    const g = await startFixture({ server: f.server, noWorker: true });
    try {
      const refused = await postJob(g.app, { model: MODEL, input: 'a' });
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json<{ error: { code: string } }>().error.code, 'model_unavailable');
      const text = (await g.app.inject({ url: '/metrics' })).body;
      assert.match(text, /^inferline_requests_total\{model="glove-embed",version="",status="model_unavailable"\} 1$/m);
    } finally {
      await g.close();
      await f.announce();
    }
  });

  it('/metrics exposes requests by status, request durations, queue depth, workers and process metrics', async () => {
    await postJob(f.app, { model: MODEL, input: 'a' });
    await postJob(f.app, { model: MODEL, input: 'b' });
    await postJob(f.app, { model: MODEL, input: 'c' }); // queue_full
    await postJob(f.app, { model: MODEL, input: 1 }); // invalid_input
    await postJob(f.app, { model: 'nope', input: 'x' }); // not counted: unknown names would grow the label set

    const res = await f.app.inject({ url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain/);
    const text = res.body;
    assert.match(text, /^inferline_requests_total\{model="glove-embed",version="1",status="accepted"\} 2$/m);
    assert.match(text, /^inferline_requests_total\{model="glove-embed",version="1",status="queue_full"\} 1$/m);
    assert.match(text, /^inferline_requests_total\{model="glove-embed",version="1",status="invalid_input"\} 1$/m);
    assert.doesNotMatch(text, /model="nope"/);
    assert.match(text, /^inferline_queue_depth\{model="glove-embed"\} 2$/m);
    assert.match(text, /^inferline_workers\{model="glove-embed"\} 1$/m);
    assert.match(text, /^inferline_dead_letters\{model="glove-embed"\} 0$/m);
    assert.match(text, /^inferline_request_duration_seconds_count\{method="POST",route="\/v1\/jobs",status_code="202"\} 2$/m);
    assert.match(text, /^process_cpu_user_seconds_total /m);
  });

  it('/metrics counts the requests kept in the dead-letter streams of a model', async () => {
    const dead = keys.deadLetter(MODEL, 1);
    await f.redis.xadd(dead, '*', 'deliveries', '6');
    await f.redis.xadd(dead, '*', 'deliveries', '6');
    try {
      const text = (await f.app.inject({ url: '/metrics' })).body;
      assert.match(text, /^inferline_dead_letters\{model="glove-embed"\} 2$/m);
    } finally {
      await f.redis.del(dead);
    }
  });

  it('/metrics counts open groups and groups ready for their reduce', async () => {
    const post = (body: Record<string, unknown>) => f.app.inject({ method: 'POST', url: '/v1/groups', payload: body });
    assert.equal((await post({ model: MODEL, reduce: 'mean' })).statusCode, 202); // open
    assert.equal((await post({ model: MODEL, reduce: 'collect', inputs: [] })).statusCode, 202); // closed, nothing to wait for: ready
    const text = (await f.app.inject({ url: '/metrics' })).body;
    assert.match(text, /^inferline_groups\{state="open"\} 1$/m);
    assert.match(text, /^inferline_groups\{state="ready"\} 1$/m);
  });
});
