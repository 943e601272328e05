import { JOB_EVENTS_CHANNEL, TERMINAL_STATUSES, jobEventsOf, type Logger, type Redis } from '@inferline/shared';

const CHANNEL_BYTES = Buffer.from(JOB_EVENTS_CHANNEL);
/** The byte that separates an event's fields (`\t`). */
const TAB = 0x09;

/**
 * What a {@link JobWatch} reports:
 * - `{ jobId, status, detail? }`: a status change announced on {@link JOB_EVENTS_CHANNEL} (`running` or
 *   terminal); settle.lua's terminal events carry what it wrote in `detail`, as the UTF-8 bytes
 *   received (see `settledRecord`; the buffer may share memory with the message: copy what is kept);
 * - `{ resync: true }`: the subscription was re-established after a disconnect, so events may have
 *   been missed; re-read the job record;
 * - `{ timeout: true }`: nothing arrived within the wait;
 * - `{ closed: true }`: the watch was closed or its signal aborted.
 */
export type JobWatchEvent =
  | { jobId: string; status: string; detail?: Buffer }
  | { resync: true }
  | { timeout: true }
  | { closed: true };

/**
 * Events for a set of job ids, buffered from the moment the watch is created: a caller creates the
 * watch, then reads the job record, then waits, and so never loses a wake-up that fires between the
 * read and the wait. Close it when done (it is also closed by its signal).
 */
export class JobWatch {
  readonly #queue: JobWatchEvent[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  /** The signals given to {@link next} (one, in practice): each has one listener for the watch's life, which closes it. */
  readonly #signals: AbortSignal[] = [];
  readonly #onAbort = (): void => this.close();
  /** Made on the first read of {@link signal}, aborted by {@link close}. */
  #closedController: AbortController | undefined;

  /**
   * @param terminalOnly report only terminal statuses (and resyncs): a waiter for the final state
   *   (`waitForJobs`) is not woken by `running`
   */
  constructor(
    readonly jobIds: readonly string[],
    private readonly detach: (watch: JobWatch) => void,
    readonly terminalOnly = false,
  ) {}

  /** Called by {@link JobEvents} for each event of one of {@link jobIds}. */
  push(event: JobWatchEvent): void {
    if (this.#closed) return;
    this.#queue.push(event);
    this.#wake?.();
  }

  /**
   * The next buffered event, or wait up to `timeoutMs` for one.
   * Resolves `{ closed: true }` at once when the watch is closed or `signal` aborts (the watch is then closed).
   */
  async next(timeoutMs: number, signal?: AbortSignal): Promise<JobWatchEvent> {
    const ready = this.#queue.shift();
    if (ready) return ready;
    if (this.#closed || signal?.aborted) {
      this.close();
      return { closed: true };
    }
    if (signal && !this.#signals.includes(signal)) {
      // An abort closes the watch, which wakes this wait (and ends every later one at once).
      this.#signals.push(signal);
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    return new Promise<JobWatchEvent>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve(this.#queue.shift() ?? (this.#closed || signal?.aborted ? { closed: true } : { timeout: true }));
      };
      const timer = setTimeout(finish, Math.max(0, timeoutMs));
      this.#wake = finish;
    });
  }

  /**
   * A signal that aborts when the watch closes (made on first use: a watch closed by
   * `closeWithRequest` needs none unless its waiter also waits on something else, such as the Redis
   * connection's return).
   */
  get signal(): AbortSignal {
    this.#closedController ??= new AbortController();
    if (this.#closed) this.#closedController.abort();
    return this.#closedController.signal;
  }

  /** Stop receiving events and wake a pending {@link next}. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.detach(this);
    for (const signal of this.#signals) signal.removeEventListener('abort', this.#onAbort);
    this.#closedController?.abort();
    this.#wake?.();
  }
}

/**
 * The gateway's one subscriber connection on {@link JOB_EVENTS_CHANNEL}: start.lua, settle.lua and
 * dead-letter.lua publish `<job id>\t<status>[\t<detail>]` there, a call's events as one batch message
 * (`*` then `<byte length>:<event>` per event, lua/includes/event-batch.lua), and this class wakes the
 * {@link JobWatch}es registered for each job id. Messages are read as bytes: an event of a job no
 * watch here waits for (another gateway's) is skipped after its id, without decoding the rest. No Redis polling: a waiter reads the job record before waiting and
 * after each wake-up, nothing in between.
 *
 * The connection re-subscribes after every reconnect (ioredis `ready`), then tells every watch to
 * re-read (`resync`), since events published while it was away are lost (pub/sub keeps nothing).
 */
export class JobEvents {
  readonly #watches = new Map<string, Set<JobWatch>>();
  #subscribed = false;
  #everSubscribed = false;
  #closed = false;
  readonly #firstSubscribe: Promise<void>;
  #resolveFirst: () => void = () => undefined;
  #rejectFirst: (error: Error) => void = () => undefined;

  /**
   * @param subscriber a dedicated connection (it enters subscriber mode and can run nothing else),
   *   e.g. `connectRedis(url, { name: 'inferline-gateway-events' })`; this instance owns and closes it.
   */
  constructor(
    private readonly subscriber: Redis,
    private readonly logger: Logger,
  ) {
    this.#firstSubscribe = new Promise<void>((resolve, reject) => {
      this.#resolveFirst = resolve;
      this.#rejectFirst = reject;
    });
    // A rejection nobody awaits (close before any subscribe) is not an error.
    this.#firstSubscribe.catch(() => undefined);
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.equals(CHANNEL_BYTES)) this.#dispatchMessage(message);
    });
    subscriber.on('ready', () => this.#subscribe());
    subscriber.on('close', () => {
      this.#subscribed = false;
    });
    if (subscriber.status === 'ready') this.#subscribe();
  }

  /** True while the subscription is active (part of `/readyz`). */
  get subscribed(): boolean {
    return this.#subscribed && this.subscriber.status === 'ready';
  }

  /** Resolves once the first subscription is active (tests, and a start that wants to wait). */
  ready(): Promise<void> {
    return this.#firstSubscribe;
  }

  /**
   * Register a watch on one or more job ids; events are buffered from now on.
   * @param options.terminalOnly skip `running` and any other non-terminal status (see {@link JobWatch})
   */
  watch(jobIds: string | readonly string[], options: { terminalOnly?: boolean } = {}): JobWatch {
    const ids = typeof jobIds === 'string' ? [jobIds] : [...jobIds];
    const watch = new JobWatch(ids, (w) => this.#detach(w), options.terminalOnly);
    if (this.#closed) {
      watch.close();
      return watch;
    }
    for (const id of ids) {
      let set = this.#watches.get(id);
      if (!set) this.#watches.set(id, (set = new Set()));
      set.add(watch);
    }
    return watch;
  }

  /** Number of job ids with at least one watch (tests: every waiter is cleaned up). */
  get watchedJobs(): number {
    return this.#watches.size;
  }

  /** Close every watch and the subscriber connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#everSubscribed) this.#rejectFirst(new Error('job events closed before subscribing'));
    for (const set of [...this.#watches.values()]) for (const watch of [...set]) watch.close();
    this.#subscribed = false;
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }

  #subscribe(): void {
    if (this.#closed) return;
    this.subscriber.subscribe(JOB_EVENTS_CHANNEL).then(
      () => {
        this.#subscribed = true;
        if (this.#everSubscribed) {
          this.logger.info({ channel: JOB_EVENTS_CHANNEL }, 'job events re-subscribed; waiters re-read their jobs');
          for (const set of this.#watches.values()) for (const watch of set) watch.push({ resync: true });
        }
        this.#everSubscribed = true;
        this.#resolveFirst();
      },
      (error: unknown) => {
        // The next `ready` after the reconnect subscribes again.
        this.logger.warn({ err: error, channel: JOB_EVENTS_CHANNEL }, 'job events subscribe failed');
      },
    );
  }

  /** One message: a single event, or a batch of them (see the class comment). */
  #dispatchMessage(message: Buffer): void {
    for (const event of jobEventsOf(message)) this.#dispatch(event);
  }

  #dispatch(event: Buffer): void {
    const tab = event.indexOf(TAB);
    if (tab <= 0) return;
    const jobId = event.toString('utf8', 0, tab);
    const set = this.#watches.get(jobId);
    if (!set) return;
    const second = event.indexOf(TAB, tab + 1);
    const status = second < 0 ? event.toString('utf8', tab + 1) : event.toString('utf8', tab + 1, second);
    const pushed = second < 0 ? { jobId, status } : { jobId, status, detail: event.subarray(second + 1) };
    const terminal = TERMINAL_STATUSES.has(status);
    for (const watch of set) if (terminal || !watch.terminalOnly) watch.push(pushed);
  }

  #detach(watch: JobWatch): void {
    for (const id of watch.jobIds) {
      const set = this.#watches.get(id);
      if (!set) continue;
      set.delete(watch);
      if (set.size === 0) this.#watches.delete(id);
    }
  }
}
