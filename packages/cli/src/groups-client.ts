import { setTimeout as sleep } from 'node:timers/promises';
import { InferlineError, TERMINAL_STATUSES, type GroupCreateBody, type GroupView } from '@inferline/shared';
import { GatewayHttp, isApiError, isTransportError, retryWhileQueueFull } from './gateway-http.ts';
import { LONG_POLL_SLACK_MS } from './jobs-client.ts';

/**
 * A client of the gateway's aggregation group API (DESIGN.md sections 5 and 8): create a group, feed
 * it in chunks (`POST /v1/groups/:id/inputs` with `start`, so a retried chunk is never stored twice),
 * close it, follow its progress (server-sent events, long-poll as the fallback), read or cancel it.
 * {@link GroupsClient.runGroup} does all of it for a stream of inputs of any length.
 *
 * Errors (see `gateway-http.ts`): an error reply of the API → InferlineError with its code and
 * `details.http_status` (plus the reply's details: `index`, `size`, ...); the gateway unreachable
 * after the retries → InferlineError `unavailable`; an abort of the caller's signal → its reason.
 */

/** Inputs per chunk of {@link GroupsClient.runGroup} (the gateway takes at most `max_group_inputs`, default 10,000). */
export const DEFAULT_CHUNK_SIZE = 1_000;
/**
 * Largest JSON size of one chunk's inputs, bytes: a chunk closes early when the next input would take
 * it over (the gateway refuses bodies over `MAX_BODY_BYTES`, default 16 MiB). One input larger than
 * this still goes alone.
 */
export const DEFAULT_MAX_CHUNK_BYTES = 8 * 1024 * 1024;
/** `?wait=` of the long-poll requests that follow a group when its event stream is not available, s. */
const POLL_WAIT_S = 1;

export interface GroupsClientOptions {
  /** Sockets to open to the gateway; default 2 (an event stream and the requests beside it). */
  connections?: number;
  /** Longest `?wait=` of one long-poll, seconds; default 60 (the gateway's `max_wait_s`). */
  maxWaitS?: number;
  /**
   * Retries of a request that failed in transport (connection refused or reset, no reply) or was
   * answered `503 unavailable` (Redis unreachable, nothing stored), for the idempotent calls: a chunk
   * with its `start`, close, get. Default 5.
   */
  maxRetries?: number;
  /** Wait before the first such retry, ms, doubled per retry up to 5 s; default 250. */
  retryDelayMs?: number;
  /** Longest silence on an event stream before it is given up for long-polling, ms; default 60,000. */
  eventsSilenceMs?: number;
}

/** Options of {@link GroupsClient.runGroup}. */
export interface RunGroupOptions {
  model: string;
  version?: number;
  reduce: GroupCreateBody['reduce'];
  /** Member output the reducer reads (default: the reducer's). */
  output?: string;
  onItemError?: 'fail' | 'skip';
  /** Member inputs (the `input` of `POST /v1/jobs` each). An async iterable is read one chunk at a time. */
  inputs: AsyncIterable<unknown> | Iterable<unknown>;
  /** Inputs per `POST /v1/groups/:id/inputs`; default {@link DEFAULT_CHUNK_SIZE}. */
  chunkSize?: number;
  /** Largest JSON size of a chunk's inputs, bytes; default {@link DEFAULT_MAX_CHUNK_BYTES}. */
  maxChunkBytes?: number;
  /** Called with the group's view after each chunk, after the close and on each progress event. */
  onProgress?: (view: GroupView) => void;
  /** Called once the group is closed (every input accepted), with the close's view. */
  onClosed?: (view: GroupView) => void;
  /**
   * Cancel the run. The group is cancelled (`DELETE`, best effort) when the run stops before it was
   * closed or because of this signal; a group that was closed and then lost from sight is left running.
   */
  signal?: AbortSignal;
}

/** True when the group reached a terminal state (`succeeded`, `failed`, `cancelled`). */
export function isGroupTerminal(view: GroupView): boolean {
  return TERMINAL_STATUSES.has(view.status);
}

/** Client of one gateway's group API. `close()` it when done. */
export class GroupsClient {
  readonly #http: GatewayHttp;
  readonly #maxWaitS: number;
  readonly #maxRetries: number;
  readonly #retryDelayMs: number;
  readonly #eventsSilenceMs: number;

  /** @param baseUrl gateway URL, e.g. `http://localhost:8080` */
  constructor(baseUrl: string, options: GroupsClientOptions = {}) {
    this.#maxWaitS = options.maxWaitS ?? 60;
    this.#maxRetries = options.maxRetries ?? 5;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#eventsSilenceMs = options.eventsSilenceMs ?? 60_000;
    this.#http = new GatewayHttp(baseUrl, {
      connections: options.connections ?? 2,
      headersTimeoutMs: this.#maxWaitS * 1000 + LONG_POLL_SLACK_MS,
    });
  }

  /**
   * `POST /v1/groups`. Without `inputs` the group is created empty and `open`; with them it is closed
   * at once. A `429 queue_full` is retried after its `Retry-After` (nothing was stored); a transport
   * failure is not (the group may have been created).
   */
  async create(body: GroupCreateBody, signal?: AbortSignal): Promise<GroupView> {
    return retryWhileQueueFull(() => this.#http.json<GroupView>('POST', '/v1/groups', body, signal), signal);
  }

  /**
   * `POST /v1/groups/:id/inputs {inputs, start}`: add one chunk whose first input gets index `start`.
   * Retried, always with the same `start`: after `429 queue_full` once `Retry-After` has passed (no
   * limit), after a transport failure or `503` up to `maxRetries` times. A `409 index_conflict` whose
   * `size` equals `start + inputs.length` means the chunk is already stored (a reply lost on the way
   * back): success, answered with the group's current view.
   * @returns the group's view; `size` counts every input stored so far.
   * @throws InferlineError `invalid_input` / `invalid_image` for a refused input, with
   *   `details.index` (position in this chunk) and `details.input_index` (`start + index`, position in
   *   the group) and the group position in the message; `index_conflict` when the group holds another
   *   count of inputs (`details.size`); `group_closed`, `group_not_found`, `payload_too_large`, ...
   */
  async addInputs(id: string, inputs: readonly unknown[], start: number, signal?: AbortSignal): Promise<GroupView> {
    const path = `${groupPath(id)}/inputs`;
    try {
      return await this.#retrying(
        () => retryWhileQueueFull(() => this.#http.json<GroupView>('POST', path, { inputs, start }, signal), signal),
        signal,
      );
    } catch (error) {
      if (!isApiError(error)) throw error;
      if (error.details.remote_code === 'index_conflict' && error.details.size === start + inputs.length) return this.get(id, 0, signal);
      const index = error.details.index;
      if (typeof index === 'number') {
        throw new InferlineError(error.code, `input ${start + index}: ${error.message}`, { ...error.details, input_index: start + index });
      }
      throw error;
    }
  }

  /**
   * `POST /v1/groups/:id/close`: no more inputs; the group's members run and it reduces once they are
   * all settled. Retried like a chunk; a `409 group_closed` after a retried attempt counts as success.
   * @throws InferlineError `group_not_found`, `empty_group`, `group_closed` (closed before this call), ...
   */
  async close(id: string, signal?: AbortSignal): Promise<GroupView> {
    let attempts = 0;
    try {
      return await this.#retrying(() => {
        attempts += 1;
        return this.#http.json<GroupView>('POST', `${groupPath(id)}/close`, undefined, signal);
      }, signal);
    } catch (error) {
      if (attempts > 1 && isApiError(error) && error.details.remote_code === 'group_closed') return this.get(id, 0, signal);
      throw error;
    }
  }

  /**
   * `GET /v1/groups/:id?wait=waitS`: the group's view, once it is terminal or after `waitS` seconds
   * (0 = at once; capped at `maxWaitS`). Transport failures are retried.
   * @throws InferlineError `group_not_found`.
   */
  async get(id: string, waitS: number, signal?: AbortSignal): Promise<GroupView> {
    const wait = Math.max(0, Math.min(Math.ceil(waitS), this.#maxWaitS));
    return this.#retrying(() => this.#http.json<GroupView>('GET', `${groupPath(id)}?wait=${wait}`, undefined, signal), signal);
  }

  /**
   * `DELETE /v1/groups/:id`: cancel the group (members not yet run are dropped).
   * @throws InferlineError `group_finished` when it already reached a terminal state, `group_not_found`.
   */
  async cancel(id: string, signal?: AbortSignal): Promise<GroupView> {
    return this.#http.json<GroupView>('DELETE', groupPath(id), undefined, signal);
  }

  /**
   * Follow the group until it is terminal: read `GET /v1/groups/:id/events` (server-sent events) and
   * call `onProgress` with each view; when the stream is not available, breaks, ends early or stays
   * silent for `eventsSilenceMs`, go on with long-polls of {@link POLL_WAIT_S} s.
   * @returns the terminal view (with `output` once succeeded).
   * @throws InferlineError `group_not_found`; `unavailable` when the gateway stays unreachable.
   */
  async events(id: string, onProgress?: (view: GroupView) => void, signal?: AbortSignal): Promise<GroupView> {
    try {
      const body = await this.#http.stream(`${groupPath(id)}/events`, signal, this.#eventsSilenceMs);
      for await (const event of parseServerSentEvents(body)) {
        if (event.data === '') continue;
        const view = JSON.parse(event.data) as GroupView;
        onProgress?.(view);
        if (isGroupTerminal(view)) return view;
      }
    } catch (error) {
      if (signal?.aborted) throw error;
      if (isApiError(error) && error.details.remote_code === 'group_not_found') throw error;
    }
    for (;;) {
      const view = await this.get(id, POLL_WAIT_S, signal);
      onProgress?.(view);
      if (isGroupTerminal(view)) return view;
    }
  }

  /**
   * Run one group over `inputs`: create it empty, add the inputs in chunks of `chunkSize` (and at most
   * `maxChunkBytes`) in order, close it, follow it until it is terminal. Only one chunk of an async
   * iterable is held at a time.
   * @returns the terminal view: check `status` (`succeeded` with `output`, else `error`).
   * @throws what {@link create}, {@link addInputs}, {@link close} and {@link events} throw, and
   *   InferlineError `empty_group` when `inputs` is empty. The group is cancelled first when the run
   *   fails before it was closed, or is aborted.
   */
  async runGroup(options: RunGroupOptions): Promise<GroupView> {
    const { signal } = options;
    let view = await this.create(
      {
        model: options.model,
        reduce: options.reduce,
        ...(options.version === undefined ? {} : { version: options.version }),
        ...(options.output === undefined ? {} : { output: options.output }),
        ...(options.onItemError === undefined ? {} : { on_item_error: options.onItemError }),
      },
      signal,
    );
    const id = view.id;
    let closed = false;
    try {
      let start = 0;
      for await (const chunk of chunked(options.inputs, options.chunkSize ?? DEFAULT_CHUNK_SIZE, options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES)) {
        view = await this.addInputs(id, chunk, start, signal);
        start += chunk.length;
        options.onProgress?.(view);
      }
      if (start === 0) throw new InferlineError('empty_group', 'the group has no inputs');
      view = await this.close(id, signal);
      closed = true;
      options.onClosed?.(view);
      options.onProgress?.(view);
      return isGroupTerminal(view) ? view : await this.events(id, options.onProgress, signal);
    } catch (error) {
      if (!closed || signal?.aborted) await this.cancel(id, AbortSignal.timeout(5_000)).catch(() => undefined);
      throw error;
    }
  }

  /** Close the connections to the gateway (the client's `close(id)` closes a group). */
  async disconnect(): Promise<void> {
    await this.#http.close();
  }

  /** Run `attempt`, retrying transport failures and `503` up to `maxRetries` times with a doubling wait. */
  async #retrying<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    for (let retry = 0; ; retry++) {
      try {
        return await attempt();
      } catch (error) {
        const retriable = isTransportError(error) || (isApiError(error) && error.details.http_status === 503);
        if (!retriable || retry >= this.#maxRetries || signal?.aborted) throw error;
        await sleep(Math.min(this.#retryDelayMs * 2 ** retry, 5_000), undefined, { signal });
      }
    }
  }
}

function groupPath(id: string): string {
  return `/v1/groups/${encodeURIComponent(id)}`;
}

/**
 * Cut `inputs` into arrays of at most `size` inputs whose JSON takes at most `maxBytes` (an input
 * larger than that alone forms a chunk), in order; reads the source one input at a time.
 */
export async function* chunked(inputs: AsyncIterable<unknown> | Iterable<unknown>, size: number, maxBytes = Infinity): AsyncGenerator<unknown[]> {
  if (!Number.isInteger(size) || size < 1) throw new InferlineError('invalid_input', `chunk size must be a positive integer, got ${size}`);
  let chunk: unknown[] = [];
  let bytes = 0;
  for await (const input of inputs) {
    const inputBytes = maxBytes === Infinity ? 0 : Buffer.byteLength(JSON.stringify(input) ?? 'null') + 1;
    if (chunk.length > 0 && bytes + inputBytes > maxBytes) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(input);
    bytes += inputBytes;
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** One server-sent event: its `event` name (`message` when unnamed) and its `data` lines joined by `\n`. */
export interface ServerSentEvent {
  event: string;
  data: string;
}

/**
 * Parse a `text/event-stream` body (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 * `event:` and `data:` fields, comments (`:` lines, heartbeats) ignored, an event dispatched at each
 * blank line; `id:` and `retry:` are ignored.
 */
export async function* parseServerSentEvents(body: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  /** Where the search for the next line end resumes in `buffered` (a long `data:` line comes in many chunks). */
  let scanned = 0;
  let event = '';
  let data: string[] = [];
  /** Take one line; returns the event it completes, if any. */
  const takeLine = (line: string): ServerSentEvent | undefined => {
    if (line === '') {
      const done = data.length > 0 ? { event: event || 'message', data: data.join('\n') } : undefined;
      event = '';
      data = [];
      return done;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    return undefined;
  };
  for await (const chunk of body) {
    buffered += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let lineStart = 0;
    for (let i = scanned; i < buffered.length; i++) {
      const char = buffered[i];
      if (char !== '\n' && char !== '\r') continue;
      // A `\r` at the end of the buffer may be the first half of `\r\n`: wait for more.
      if (char === '\r' && i === buffered.length - 1) break;
      const line = buffered.slice(lineStart, i);
      if (char === '\r' && buffered[i + 1] === '\n') i++;
      lineStart = i + 1;
      const done = takeLine(line);
      if (done) yield done;
    }
    buffered = buffered.slice(lineStart);
    scanned = Math.max(0, buffered.length - 1);
  }
  // The stream ended right after a `\r` line end; an unterminated last line is dropped (as the spec says).
  if (buffered.endsWith('\r')) {
    const done = takeLine(buffered.slice(0, -1));
    if (done) yield done;
  }
}
