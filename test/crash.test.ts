import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { CONSUMER_GROUP, JOB_EVENTS_CHANNEL, connectRedis, jobEventsOf, keys, type Redis } from '../packages/shared/src/index.ts';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { startTestRedis, waitForPending, type TestRedis } from './harness/redis.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { gloveRepository } from './harness/repository.ts';

const JOBS = 40;

describe('a worker killed with SIGKILL while it holds a batch', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  const workers: RoleProcess[] = [];
  const clients: Redis[] = [];

  /** A test-side connection, closed in after() whatever the outcome. */
  function client(url: string): Redis {
    const connection = connectRedis(url, { name: 'test', maxRetriesPerRequest: 1 });
    connection.on('error', () => undefined);
    clients.push(connection);
    return connection;
  }

  before(async () => {
    redis = await startTestRedis();
    // A long batch_timeout_ms keeps the first worker holding its delivered, unsettled batch while it
    // waits for the batch to fill; a short visibility timeout lets the survivor claim it soon.
    repository = await gloveRepository({
      // allowed_batch_sizes: the 40 requests run padded to 64; the padding rows are dropped.
      batching: { max_batch_size: 64, batch_timeout_ms: 5_000, allowed_batch_sizes: [8, 64] },
      queue: { visibility_timeout_ms: 1_000 },
    });
  });

  after(async () => {
    for (const connection of clients) connection.disconnect();
    await Promise.all([gateway?.stop(), ...workers.map((worker) => worker.stop())]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test('every accepted job still succeeds, and each result is written once', async () => {
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    const events = client(redis.url);
    const terminal = new Map<string, string[]>();
    await events.subscribe(JOB_EVENTS_CHANNEL);
    events.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      for (const event of jobEventsOf(message)) {
        const [id = '', status = ''] = event.toString().split('\t');
        if (status !== 'running') terminal.set(id, [...(terminal.get(id) ?? []), status]);
      }
    });

    // The gateway admits requests only for a version a live worker has AVAILABLE: the victim first.
    const victim = await startWorkerProcess(env);
    workers.push(victim);
    const texts = loadMobyDickParagraphs().slice(0, JOBS);
    const ids = await Promise.all(
      texts.map(async (text) => {
        const response = await fetch(`${gateway.url}/v1/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'glove-embed', input: text }),
        });
        assert.equal(response.status, 202);
        return ((await response.json()) as { id: string }).id;
      }),
    );

    const redisClient = client(redis.url);
    const stream = keys.requests('glove-embed', 1);
    assert.equal(await waitForPending(redisClient, stream, JOBS), JOBS, 'the first worker holds every request, delivered and unsettled');
    await victim.kill();
    assert.equal(terminal.size, 0, 'nothing was settled before the crash');

    workers.push(await startWorkerProcess(env));
    const jobs = await Promise.all(
      ids.map(async (id) => {
        for (;;) {
          const job = (await (await fetch(`${gateway.url}/v1/jobs/${id}?wait=30`)).json()) as { status: string; output?: { embedding: number[] } };
          if (job.status !== 'queued' && job.status !== 'running') return job;
        }
      }),
    );
    for (const job of jobs) {
      assert.equal(job.status, 'succeeded');
      assert.equal(job.output?.embedding.length, 100);
    }
    // The gateway woke on the same PUBLISH; give this subscriber the same chance to have read it.
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const id of ids) assert.deepEqual(terminal.get(id), ['succeeded'], `job ${id} settled exactly once`);
    assert.equal(Number(((await redisClient.xpending(stream, CONSUMER_GROUP)) as [number])[0]), 0, 'no pending entries left');
    assert.equal(await redisClient.xlen(stream), 0, 'settled entries are deleted from the stream');
  });
});
