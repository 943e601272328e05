import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { submit, type SubmitLine } from '../src/commands/submit.ts';
import { parseRetryAfter } from '../src/jobs-client.ts';

/**
 * A fake gateway implementing the `/v1/jobs` contract (DESIGN.md section 8), scripted:
 * - the first POST is refused with `429 queue_full` and `Retry-After: 1`;
 * - the input `"reject me"` is refused with `400 invalid_input`;
 * - the input `"fail me"` becomes a failed job;
 * - jobs finish after a delay that shrinks with the input's position, so they complete out of order;
 * - `GET ?wait=` answers when the job is terminal (long-poll), or after `wait` seconds.
 */
interface FakeJob {
  id: string;
  input: string;
  doneAt: number;
  fail: boolean;
}

class FakeGateway {
  server: Server;
  jobs = new Map<string, FakeJob>();
  posts: { at: number; status: number }[] = [];
  waits: string[] = [];
  /** Inputs in the order their terminal state was served. */
  completed: string[] = [];
  refusedOnce = false;
  /** Sizes of the bulk requests (`inputs`) received. */
  bulkPosts: number[] = [];
  inFlight = 0;
  maxInFlight = 0;

  constructor() {
    this.server = createServer((request, response) => {
      this.inFlight += 1;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      response.once('close', () => (this.inFlight -= 1));
      this.handle(request, response).catch((error: unknown) => {
        response.writeHead(500).end(String(error));
      });
    });
  }

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reply(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }

  view(job: FakeJob): Record<string, unknown> {
    const base = { id: job.id, model: 'glove-embed', version: 1, created_at: new Date(0).toISOString() };
    if (Date.now() < job.doneAt) return { ...base, status: 'queued' };
    if (job.fail) return { ...base, status: 'failed', error: { code: 'inference_failed', message: 'scripted failure' } };
    return { ...base, status: 'succeeded', output: { length: [job.input.length] } };
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    if (request.method === 'POST' && url.pathname === '/v1/jobs') {
      let raw = '';
      for await (const chunk of request) raw += String(chunk);
      const body = JSON.parse(raw) as { model: string; input: string; inputs?: string[] };
      if (body.inputs) {
        this.bulkPosts.push(body.inputs.length);
        if (body.inputs.includes('reject me')) return this.reply(response, 400, { error: { code: 'invalid_input', message: 'scripted rejection', index: body.inputs.indexOf('reject me') } });
        const jobs = body.inputs.map((input) => {
          const job: FakeJob = { id: `job-${this.jobs.size + 1}`, input, doneAt: Date.now() + 20, fail: input === 'fail me' };
          this.jobs.set(job.id, job);
          return this.view({ ...job, doneAt: Infinity });
        });
        return this.reply(response, 202, { jobs });
      }
      if (!this.refusedOnce) {
        this.refusedOnce = true;
        this.posts.push({ at: Date.now(), status: 429 });
        return this.reply(response, 429, { error: { code: 'queue_full', message: 'queue is full' } }, { 'retry-after': '1' });
      }
      if (body.input === 'reject me') {
        this.posts.push({ at: Date.now(), status: 400 });
        return this.reply(response, 400, { error: { code: 'invalid_input', message: 'scripted rejection' } });
      }
      this.posts.push({ at: Date.now(), status: 202 });
      const id = `job-${this.jobs.size + 1}`;
      // Later inputs finish sooner, so completions arrive out of input order.
      const index = Number(/\d+/.exec(body.input)?.[0] ?? 0);
      const job: FakeJob = { id, input: body.input, doneAt: Date.now() + Math.max(0, 60 - index * 5), fail: body.input === 'fail me' };
      this.jobs.set(id, job);
      return this.reply(response, 202, this.view({ ...job, doneAt: Infinity }), { location: `/v1/jobs/${id}` });
    }
    const match = /^\/v1\/jobs\/([^/]+)$/.exec(url.pathname);
    if (request.method === 'GET' && match?.[1]) {
      const job = this.jobs.get(match[1]);
      if (!job) return this.reply(response, 404, { error: { code: 'job_not_found', message: 'no such job' } });
      const wait = url.searchParams.get('wait') ?? '0';
      this.waits.push(wait);
      const until = Math.min(job.doneAt, Date.now() + Number(wait) * 1000);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now())));
      const view = this.view(job);
      if (view.status !== 'queued') this.completed.push(job.input);
      return this.reply(response, 200, view);
    }
    this.reply(response, 404, { error: { code: 'not_found', message: 'no route' } });
  }
}

function collect(stream: PassThrough): () => string {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return () => text;
}

describe('submit --file', () => {
  const gateway = new FakeGateway();
  let url = '';
  let dir = '';

  before(async () => {
    url = await gateway.listen();
    dir = await mkdtemp(join(tmpdir(), 'inferline-submit-'));
  });
  after(async () => {
    gateway.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(lines: string[], concurrency = 4, bulkSize = 1): Promise<{ code: number; results: SubmitLine[]; stderr: string }> {
    const file = join(dir, `inputs-${Math.random()}.txt`);
    await writeFile(file, lines.join('\n'));
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out = collect(stdout);
    const err = collect(stderr);
    const code = await submit({ url, model: 'glove-embed', file, concurrency, bulkSize, waitS: 5, stdout, stderr, progress: false });
    const results = out().trim().split('\n').map((line) => JSON.parse(line) as SubmitLine);
    return { code, results, stderr: err() };
  }

  it('prints one line per non-empty input in input order, resubmitting after a 429 once Retry-After has passed', async () => {
    const inputs = Array.from({ length: 12 }, (_, i) => `text ${i}`);
    const { code, results, stderr } = await run(['', ...inputs.slice(0, 6), '   ', ...inputs.slice(6), '']);

    assert.equal(code, 0);
    assert.equal(results.length, 12);
    // File line numbers: line 1 is empty, line 8 is blank.
    const expectedLines = [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14];
    assert.deepEqual(results.map((r) => r.line), expectedLines);
    results.forEach((result, i) => {
      assert.equal(result.status, 'succeeded');
      assert.deepEqual(result.output, { length: [inputs[i]?.length] });
      assert.equal(result.error, undefined);
    });
    assert.equal(new Set(results.map((r) => r.id)).size, 12);
    assert.notDeepEqual(gateway.completed, inputs, 'the fake completes jobs out of input order');

    const [refused, ...accepted] = gateway.posts;
    assert.equal(refused?.status, 429);
    assert.equal(accepted.length, 12);
    // The refused input came back only after Retry-After (1 s).
    const retried = accepted.reduce((latest, post) => Math.max(latest, post.at), 0);
    assert.ok(retried - (refused?.at ?? 0) >= 950, `resubmitted ${retried - (refused?.at ?? 0)} ms after the 429`);
    assert.ok(gateway.maxInFlight <= 4, `at most --concurrency requests in flight, saw ${gateway.maxInFlight}`);
    assert.ok(gateway.waits.every((wait) => Number(wait) >= 1 && Number(wait) <= 5), `long-poll waits ${gateway.waits.join(',')}`);
    assert.match(stderr, /12 inputs: 12 succeeded, 0 not/);
  });

  it('--bulk-size: sends chunks as bulk requests, keeps input order, and reruns a refused chunk input by input', async () => {
    gateway.bulkPosts = [];
    const lines = ['text 1', 'text 2', 'text 3', 'fail me', 'text 5', 'reject me', 'text 7'];
    const { code, results } = await run(lines, 2, 3);
    assert.equal(code, 1);
    assert.deepEqual(
      results.map((r) => [r.line, r.status]),
      [[1, 'succeeded'], [2, 'succeeded'], [3, 'succeeded'], [4, 'failed'], [5, 'succeeded'], [6, 'rejected'], [7, 'succeeded']],
    );
    assert.deepEqual(results[0]?.output, { length: [6] });
    assert.deepEqual(gateway.bulkPosts.sort(), [3, 3], 'chunks of 3, 3 and a last one of 1 (sent alone)');
  });

  it('reports failed and refused inputs in place and exits non-zero', async () => {
    const { code, results } = await run(['text 1', 'fail me', 'reject me', 'text 4'], 2);

    assert.equal(code, 1);
    assert.deepEqual(
      results.map((r) => [r.line, r.status, r.error?.code]),
      [
        [1, 'succeeded', undefined],
        [2, 'failed', 'inference_failed'],
        [3, 'rejected', 'invalid_input'],
        [4, 'succeeded', undefined],
      ],
    );
    assert.equal(results[2]?.id, null);
    assert.equal(typeof results[1]?.id, 'string');
  });

  it('--text prints the terminal job as JSON and exits 0 only when it succeeded', async () => {
    for (const [text, status, code] of [['text 9', 'succeeded', 0], ['fail me', 'failed', 1]] as const) {
      const stdout = new PassThrough();
      const out = collect(stdout);
      const exit = await submit({ url, model: 'glove-embed', text, concurrency: 1, waitS: 5, stdout, stderr: new PassThrough(), progress: false });
      const job = JSON.parse(out()) as { id: string; status: string };
      assert.equal(job.status, status);
      assert.equal(exit, code);
    }
  });

  it('fails the run with a clear error when the gateway cannot be reached', async () => {
    const file = join(dir, 'one.txt');
    await writeFile(file, 'hello\n');
    const stdout = new PassThrough();
    await assert.rejects(
      submit({ url: 'http://127.0.0.1:1', model: 'glove-embed', file, concurrency: 2, waitS: 1, stdout, stderr: new PassThrough(), progress: false }),
      { code: 'unavailable', message: /cannot reach the gateway at http:\/\/127\.0\.0\.1:1/ },
    );
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates, and falls back to 1 s', () => {
    assert.equal(parseRetryAfter('2'), 2000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 7_000), 3000);
    assert.equal(parseRetryAfter(undefined), 1000);
    assert.equal(parseRetryAfter('soon'), 1000);
  });
});
