import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { startTestRedis, type TestRedis } from '../../../test/harness/redis.ts';
import { startGateway } from '../src/index.ts';
import { connectRedis } from '@inferline/shared';
import { announceStandIn, createRepository, MODEL, silentLogger, STAND_IN_HEARTBEAT_MS, testSettings } from './fixture.ts';

describe('startGateway', () => {
  let server: TestRedis;
  let repository: string;
  before(async () => {
    server = await startTestRedis();
    repository = await createRepository();
    const redis = connectRedis(server.url, { name: 'test' });
    await announceStandIn(redis, MODEL, [1], STAND_IN_HEARTBEAT_MS);
    redis.disconnect();
  });
  after(async () => {
    await server.stop();
    await rm(repository, { recursive: true, force: true });
  });

  it('listens on settings.host:port, accepts a job over HTTP, and close() stops everything', async () => {
    const gateway = await startGateway(testSettings({ redis_url: server.url, model_repository: repository, host: '127.0.0.1', port: 0, heartbeat_interval_ms: STAND_IN_HEARTBEAT_MS }), silentLogger);
    try {
      assert.match(gateway.address, /^http:\/\/127\.0\.0\.1:\d+$/);
      let ready = await fetch(`${gateway.address}/readyz`);
      for (let i = 0; i < 50 && ready.status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        ready = await fetch(`${gateway.address}/readyz`);
      }
      assert.equal(ready.status, 200);
      const res = await fetch(`${gateway.address}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, input: 'hello' }),
      });
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      const job = await fetch(`${gateway.address}/v1/jobs/${id}`);
      assert.equal(((await job.json()) as { status: string }).status, 'queued');
    } finally {
      await gateway.close();
    }
    await assert.rejects(fetch(`${gateway.address}/healthz`));
  });

  it('close() ends a pending long-poll at once with the current state, and ends event streams', async () => {
    const gateway = await startGateway(testSettings({ redis_url: server.url, model_repository: repository, host: '127.0.0.1', port: 0, heartbeat_interval_ms: STAND_IN_HEARTBEAT_MS }), silentLogger);
    const res = await fetch(`${gateway.address}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: 'hello' }),
    });
    const { id } = (await res.json()) as { id: string };
    const poll = fetch(`${gateway.address}/v1/jobs/${id}?wait=30`);
    const stream = await fetch(`${gateway.address}/v1/jobs/${id}/events`);
    const streamText = stream.text();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = Date.now();
    await gateway.close();
    const answer = await poll;
    assert.ok(Date.now() - started < 5_000, `close took ${Date.now() - started} ms`);
    assert.equal(((await answer.json()) as { status: string }).status, 'queued');
    assert.match(await streamText, /^event: queued\n/);
  });

  it('fails with invalid_config when the model repository cannot be read', async () => {
    await assert.rejects(
      startGateway(testSettings({ redis_url: server.url, model_repository: '/nonexistent/models', host: '127.0.0.1', port: 0 }), silentLogger),
      /invalid_config|model repository/,
    );
  });
});
