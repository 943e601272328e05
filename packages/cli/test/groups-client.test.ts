import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { GroupView } from '@inferline/shared';
import { runGroupCommand } from '../src/commands/group.ts';
import { chunked, GroupsClient, parseServerSentEvents, type ServerSentEvent } from '../src/groups-client.ts';

/**
 * A fake gateway implementing the `/v1/groups` contract (DESIGN.md section 8), scripted per test
 * through {@link FakeGateway.script}:
 * - `refuseFirstChunk`: the first `POST .../inputs` is refused with `429 queue_full`, `Retry-After: 0.2`;
 * - `dropReplyOfChunk`: that chunk (by its `start`) is stored, then the socket is destroyed before any
 *   reply, so the client must retry it and meet `409 index_conflict` with the stored `size`;
 * - `rejectInput`: a chunk holding this input is refused with `400 invalid_input` and its `index`;
 * - `events`: `sse` serves progress events then the terminal one; `missing` answers 404 `not_found`
 *   (a gateway without the route), so the client long-polls.
 * Members "complete" as soon as the group is closed; the output is `{count: size}`.
 */
interface Script {
  refuseFirstChunk: boolean;
  dropReplyOfChunk: number | undefined;
  rejectInput: string | undefined;
  events: 'sse' | 'missing';
  reduce: GroupView['reduce'];
}

interface FakeGroup {
  view: GroupView;
  inputs: unknown[];
}

class FakeGateway {
  server: Server;
  script: Script = defaultScript();
  groups = new Map<string, FakeGroup>();
  /** Every inputs request: `start` sent, number of inputs, reply status (0 = connection dropped), time. */
  chunks: { start: number | undefined; length: number; status: number; at: number }[] = [];
  deletes: string[] = [];
  polls = 0;
  /** Called when a chunk is stored, before it is answered. */
  onStored: (group: FakeGroup) => void = () => undefined;

  constructor() {
    this.server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => response.writeHead(500).end(String(error)));
    });
  }

  async listen(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(script: Partial<Script> = {}): void {
    this.script = { ...defaultScript(), ...script };
    this.groups.clear();
    this.chunks = [];
    this.deletes = [];
    this.polls = 0;
    this.onStored = () => undefined;
  }

  reply(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  }

  error(response: ServerResponse, status: number, code: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
    this.reply(response, status, { error: { code, message: `scripted ${code}`, ...details } }, headers);
  }

  async body(request: IncomingMessage): Promise<Record<string, unknown>> {
    let raw = '';
    for await (const chunk of request) raw += String(chunk);
    return raw === '' ? {} : (JSON.parse(raw) as Record<string, unknown>);
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://fake');
    const method = request.method ?? 'GET';
    if (method === 'POST' && url.pathname === '/v1/groups') {
      const body = await this.body(request);
      const id = `group-${this.groups.size + 1}`;
      const view: GroupView = {
        id,
        model: String(body.model),
        version: 1,
        reduce: body.reduce as GroupView['reduce'],
        on_item_error: (body.on_item_error as GroupView['on_item_error'] | undefined) ?? 'fail',
        status: 'open',
        size: 0,
        completed: 0,
        failed: 0,
        created_at: new Date(0).toISOString(),
      };
      this.groups.set(id, { view, inputs: [] });
      return this.reply(response, 202, view, { location: `/v1/groups/${id}` });
    }
    const match = /^\/v1\/groups\/([^/]+)(\/[a-z.]+)?$/.exec(url.pathname);
    const group = match?.[1] ? this.groups.get(match[1]) : undefined;
    if (!match || !group) return this.error(response, 404, match ? 'group_not_found' : 'not_found');
    const action = match[2] ?? '';

    if (method === 'POST' && action === '/inputs') {
      const { inputs, start } = (await this.body(request)) as { inputs: unknown[]; start?: number };
      const record = (status: number): void => void this.chunks.push({ start, length: inputs.length, status, at: Date.now() });
      if (group.view.status !== 'open') return (record(409), this.error(response, 409, 'group_closed'));
      if (this.script.refuseFirstChunk && this.chunks.length === 0) {
        record(429);
        return this.error(response, 429, 'queue_full', {}, { 'retry-after': '0.2' });
      }
      if (start !== undefined && start !== group.inputs.length) {
        record(409);
        return this.error(response, 409, 'index_conflict', { size: group.inputs.length });
      }
      const rejected = inputs.findIndex((input) => input === this.script.rejectInput);
      if (rejected !== -1) return (record(400), this.error(response, 400, 'invalid_input', { index: rejected }));
      group.inputs.push(...inputs);
      group.view = { ...group.view, size: group.inputs.length };
      this.onStored(group);
      if (start === this.script.dropReplyOfChunk) {
        this.script.dropReplyOfChunk = undefined;
        record(0);
        request.socket.destroy();
        return;
      }
      record(202);
      return this.reply(response, 202, group.view);
    }
    if (method === 'POST' && action === '/close') {
      if (group.view.status === 'open') group.view = { ...group.view, status: 'queued' };
      return this.reply(response, 200, group.view);
    }
    if (method === 'DELETE' && action === '') {
      this.deletes.push(group.view.id);
      group.view = { ...group.view, status: 'cancelled' };
      return this.reply(response, 200, group.view);
    }
    if (method === 'GET' && action === '') {
      this.polls += 1;
      return this.reply(response, 200, this.advance(group));
    }
    if (method === 'GET' && action === '/events') {
      if (this.script.events === 'missing') return this.error(response, 404, 'not_found');
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      // A comment (heartbeat), a progress event split across writes with CRLF line ends, then the end.
      response.write(': heartbeat\n\n');
      const half = { ...group.view, status: 'queued', completed: Math.floor(group.view.size / 2) };
      const progress = `event: progress\r\ndata: ${JSON.stringify(half)}\r\n\r\n`;
      response.write(progress.slice(0, 20));
      await new Promise((resolve) => setTimeout(resolve, 20));
      response.write(progress.slice(20));
      const final = this.advance(group);
      response.end(`event: ${final.status}\ndata: ${JSON.stringify(final)}\n\n`);
      return;
    }
    this.error(response, 404, 'not_found');
  }

  /** A closed group finishes on its first read: every member succeeds. */
  advance(group: FakeGroup): GroupView {
    if (group.view.status === 'queued') {
      const size = group.view.size;
      const output = this.script.reduce === 'boxes'
        ? { image: { b64: Buffer.from('not really a png').toString('base64') }, width: 1, height: 1, detections: [] }
        : { count: size };
      group.view = { ...group.view, status: 'succeeded', completed: size, output, finished_at: new Date(1).toISOString() };
    }
    return group.view;
  }
}

function defaultScript(): Script {
  return { refuseFirstChunk: false, dropReplyOfChunk: undefined, rejectInput: undefined, events: 'sse', reduce: 'mean' };
}

/** `count` texts `text 0`, `text 1`, ... as an async iterable (one tick per input) that counts what was read from it. */
function texts(count: number): AsyncIterable<string> & { produced: number } {
  const source = {
    produced: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<string> {
      for (let i = 0; i < count; i++) {
        await new Promise(setImmediate);
        source.produced = i + 1;
        yield `text ${i}`;
      }
    },
  };
  return source;
}

describe('GroupsClient', () => {
  const gateway = new FakeGateway();
  let client: GroupsClient;

  before(async () => {
    client = new GroupsClient(await gateway.listen(), { retryDelayMs: 10 });
  });
  beforeEach(() => gateway.reset());
  after(async () => {
    await client.disconnect();
    gateway.server.close();
  });

  it('streams chunks in order with their start, reading one chunk ahead at most, then follows the events', async () => {
    const inputs = texts(2_500);
    const readAhead: number[] = [];
    gateway.onStored = (group) => readAhead.push(inputs.produced - group.inputs.length);
    const progress: GroupView[] = [];
    let closedSize: number | undefined;
    const view = await client.runGroup({
      model: 'glove-embed',
      reduce: 'mean',
      inputs,
      chunkSize: 1_000,
      onProgress: (v) => progress.push(v),
      onClosed: (v) => (closedSize = v.size),
    });

    assert.equal(view.status, 'succeeded');
    assert.deepEqual(view.output, { count: 2_500 });
    assert.deepEqual(gateway.chunks.map(({ start, length, status }) => [start, length, status]), [[0, 1000, 202], [1000, 1000, 202], [2000, 500, 202]]);
    const stored = gateway.groups.get(view.id)?.inputs;
    assert.deepEqual(stored, Array.from({ length: 2_500 }, (_, i) => `text ${i}`), 'every input once, in order');
    assert.ok(readAhead.every((n) => n === 0), `the source is read one chunk at a time (read ahead: ${readAhead.join(',')})`);
    assert.equal(closedSize, 2_500);
    assert.deepEqual(progress.map((v) => [v.status, v.size]), [['open', 1000], ['open', 2000], ['open', 2500], ['queued', 2500], ['queued', 2500], ['succeeded', 2500]]);
    assert.equal(progress[4]?.completed, 1_250, 'the progress event split across writes was parsed');
    assert.equal(gateway.polls, 0, 'no long-poll when the event stream works');
  });

  it('retries a chunk refused with 429 after Retry-After, with the same start', async () => {
    gateway.reset({ refuseFirstChunk: true });
    const view = await client.runGroup({ model: 'glove-embed', reduce: 'mean', inputs: texts(30), chunkSize: 10 });

    assert.equal(view.status, 'succeeded');
    const [refused, retried, ...rest] = gateway.chunks;
    assert.deepEqual([refused?.start, refused?.status], [0, 429]);
    assert.deepEqual([retried?.start, retried?.status], [0, 202]);
    assert.ok((retried?.at ?? 0) - (refused?.at ?? 0) >= 190, `retried ${(retried?.at ?? 0) - (refused?.at ?? 0)} ms after the 429 (Retry-After 0.2)`);
    assert.deepEqual(rest.map((chunk) => [chunk.start, chunk.status]), [[10, 202], [20, 202]]);
    assert.equal(gateway.groups.get(view.id)?.inputs.length, 30);
  });

  it('takes index_conflict with the chunk\'s end as size for success after a lost reply', async () => {
    gateway.reset({ dropReplyOfChunk: 10 });
    const view = await client.runGroup({ model: 'glove-embed', reduce: 'mean', inputs: texts(30), chunkSize: 10 });

    assert.equal(view.status, 'succeeded');
    assert.deepEqual(gateway.chunks.map(({ start, status }) => [start, status]), [[0, 202], [10, 0], [10, 409], [20, 202]]);
    assert.deepEqual(gateway.groups.get(view.id)?.inputs, Array.from({ length: 30 }, (_, i) => `text ${i}`), 'the retried chunk was stored once');
  });

  it('addInputs: an index_conflict that does not match the chunk is an error with the size held', async () => {
    const group = await client.create({ model: 'glove-embed', reduce: 'mean' });
    await client.addInputs(group.id, ['a', 'b'], 0);
    await assert.rejects(client.addInputs(group.id, ['c'], 5), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'index_conflict');
      assert.equal(error.details?.size, 2);
      return true;
    });
  });

  it('names a refused input by its position in the group and cancels the group', async () => {
    gateway.reset({ rejectInput: 'text 13' });
    await assert.rejects(client.runGroup({ model: 'glove-embed', reduce: 'mean', inputs: texts(30), chunkSize: 10 }), (error: Error & { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'invalid_input');
      assert.equal(error.details?.index, 3);
      assert.equal(error.details?.input_index, 13);
      assert.match(error.message, /^input 13: /);
      return true;
    });
    assert.deepEqual(gateway.deletes, ['group-1']);
  });

  it('long-polls when the event stream is not available', async () => {
    gateway.reset({ events: 'missing' });
    const view = await client.runGroup({ model: 'glove-embed', reduce: 'sum', inputs: ['a', 'b', 'c'], chunkSize: 2 });
    assert.equal(view.status, 'succeeded');
    assert.equal(gateway.polls, 1);
  });

  it('gives up after maxRetries when the gateway cannot be reached', async () => {
    const unreachable = new GroupsClient('http://127.0.0.1:1', { maxRetries: 2, retryDelayMs: 1 });
    await assert.rejects(unreachable.addInputs('g', ['a'], 0), { code: 'unavailable', message: /cannot reach the gateway/ });
    await unreachable.disconnect();
  });
});

describe('inferline group', () => {
  const gateway = new FakeGateway();
  let url = '';
  let dir = '';

  before(async () => {
    url = await gateway.listen();
    dir = await mkdtemp(join(tmpdir(), 'inferline-group-'));
  });
  beforeEach(() => gateway.reset());
  after(async () => {
    gateway.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(options: { lines: string[]; reduce?: GroupView['reduce']; png?: string }): Promise<{ code: number; stdout: string; stderr: string }> {
    const file = join(dir, 'texts.txt');
    await writeFile(file, options.lines.join('\n'));
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const code = await runGroupCommand({
      url,
      model: 'glove-embed',
      reduce: options.reduce ?? 'mean',
      file,
      chunkSize: 2,
      ...(options.png ? { png: options.png } : {}),
      stdout,
      stderr,
      progress: false,
    });
    return { code, stdout: out, stderr: err };
  }

  it('sends the non-empty lines and prints the output as JSON', async () => {
    const { code, stdout, stderr } = await run({ lines: ['one', '', 'two', '  ', 'three', ''] });
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { count: 3 });
    assert.deepEqual(gateway.groups.get('group-1')?.inputs, ['one', 'two', 'three']);
    assert.match(stderr, /group group-1: succeeded, 3 inputs, 3 succeeded, 0 failed/);
  });

  it('names a refused input by its line', async () => {
    gateway.reset({ rejectInput: 'bad' });
    await assert.rejects(run({ lines: ['one', '', 'two', 'bad'] }), { code: 'invalid_input', message: /^input 2 \(.*texts\.txt line 4\): scripted invalid_input$/ });
  });

  it('writes the picture of a boxes group to --png and prints the rest', async () => {
    gateway.reset({ reduce: 'boxes' });
    const png = join(dir, 'out.png');
    const { code, stdout } = await run({ lines: ['a'], reduce: 'boxes', png });
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { width: 1, height: 1, detections: [], png });
    assert.equal(await readFile(png, 'utf8'), 'not really a png');
  });
});

describe('chunked', () => {
  it('cuts by count and by JSON size, a lone oversized input going alone', async () => {
    const sizes = async (inputs: unknown[], size: number, maxBytes?: number): Promise<number[]> => {
      const out: number[] = [];
      for await (const chunk of chunked(inputs, size, maxBytes)) out.push(chunk.length);
      return out;
    };
    assert.deepEqual(await sizes([1, 2, 3, 4, 5], 2), [2, 2, 1]);
    assert.deepEqual(await sizes([], 2), []);
    // "aaaa" is 6 bytes of JSON + 1.
    assert.deepEqual(await sizes(['aaaa', 'aaaa', 'aaaa', 'a'.repeat(40), 'aaaa'], 10, 15), [2, 1, 1, 1]);
  });
});

describe('parseServerSentEvents', () => {
  it('parses named and unnamed events across arbitrary splits, ignoring comments', async () => {
    const text = ': hi\n\nevent: progress\r\ndata: {"a":1}\r\n\r\ndata: x\ndata: y\n\nevent: succeeded\rdata:z\r\r';
    for (const step of [1, 3, 7, text.length]) {
      const parts: string[] = [];
      for (let i = 0; i < text.length; i += step) parts.push(text.slice(i, i + step));
      const events: ServerSentEvent[] = [];
      for await (const event of parseServerSentEvents(parts.map((part) => Buffer.from(part)))) events.push(event);
      assert.deepEqual(events, [
        { event: 'progress', data: '{"a":1}' },
        { event: 'message', data: 'x\ny' },
        { event: 'succeeded', data: 'z' },
      ], `split every ${step} characters`);
    }
  });
});
