import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  announceWorker,
  BULLMQ_PREFIX,
  connectRedis,
  CONSUMER_GROUP,
  createLogger,
  decode,
  keys,
  loadSettings,
  outputToJson,
  settleJobs,
  startJobs,
  type Redis,
  type Settings,
} from '@inferline/shared';
import { startTestRedis, type TestRedis } from '../../../test/harness/redis.ts';
import { JobEvents } from '../src/job-events.ts';
import { followWorkers } from '../src/index.ts';
import { ModelCatalog } from '../src/model-catalog.ts';
import { buildApp, type GatewayApp } from '../src/server.ts';

/** The real glove-embed config the repository commits. */
const GLOVE_CONFIG = new URL('../../../models/glove-embed/config.json', import.meta.url);

export const MODEL = 'glove-embed';
/** Heartbeat period the fixtures' settings use, ms: the stand-in worker's one heartbeat lasts 3 of them. */
export const STAND_IN_HEARTBEAT_MS = 600_000;
/** Consumer name of the worker a fixture announces. */
export const STAND_IN_WORKER = 'stand-in-worker';

export interface RepositoryOptions {
  /** Version folders to create (each with an empty `model.json`); default [1]. */
  versions?: number[];
  /** Override `batching.max_queue_size`. */
  maxQueueSize?: number;
  /** Override `preprocess.max_text_bytes`. */
  maxTextBytes?: number;
  /** Override `version_policy`. */
  versionPolicy?: unknown;
  /** Set `version_labels`. */
  versionLabels?: Record<string, number>;
  /** Set `traffic`. */
  traffic?: Record<string, number>;
  /** Fields merged into `batching` (priority_levels, default_timeout_ms, ...). */
  batching?: Record<string, unknown>;
  /** Set `scale_to_zero`. */
  scaleToZero?: boolean;
}

/** A temp model repository with a copy of glove-embed's config.json and `<v>/model.json` placeholders. */
export async function createRepository(options: RepositoryOptions = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'inferline-gateway-repo-'));
  const dir = join(root, MODEL);
  await mkdir(dir, { recursive: true });
  const config = JSON.parse(await readFile(GLOVE_CONFIG, 'utf8')) as {
    batching: { max_queue_size: number };
    preprocess: { max_text_bytes: number };
    version_policy: unknown;
    version_labels?: Record<string, number>;
    traffic?: Record<string, number>;
    scale_to_zero?: boolean;
  };
  if (options.maxQueueSize !== undefined) config.batching.max_queue_size = options.maxQueueSize;
  if (options.maxTextBytes !== undefined) config.preprocess.max_text_bytes = options.maxTextBytes;
  if (options.versionPolicy !== undefined) config.version_policy = options.versionPolicy;
  if (options.versionLabels !== undefined) config.version_labels = options.versionLabels;
  if (options.traffic !== undefined) config.traffic = options.traffic;
  if (options.batching !== undefined) Object.assign(config.batching, options.batching);
  if (options.scaleToZero !== undefined) config.scale_to_zero = options.scaleToZero;
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  for (const version of options.versions ?? [1]) await addVersion(root, version);
  return root;
}

/** Add a complete version folder to the repository. */
export async function addVersion(root: string, version: number): Promise<void> {
  await mkdir(join(root, MODEL, String(version)), { recursive: true });
  await writeFile(join(root, MODEL, String(version), 'model.json'), '{}');
}

/** Everything a gateway test needs: a real Redis, the app's connections, the app. */
export interface Fixture {
  server: TestRedis;
  /** A plain connection for the test's own reads and simulated workers (scripts defined). */
  redis: Redis;
  /** The app's command connection. */
  appRedis: Redis;
  events: JobEvents;
  models: ModelCatalog;
  settings: Settings & { redis_url: string };
  app: GatewayApp;
  repository: string;
  /**
   * Announce a stand-in worker holding `versions` in `state` (default: the versions the fixture
   * created, AVAILABLE), open the AVAILABLE ones, and make the app read the announcement now.
   */
  announce(versions?: readonly number[], state?: 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END', error?: string, model?: string): Promise<void>;
  /** FLUSHALL, then announce the stand-in worker again (unless the fixture was started with `noWorker`). */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export const silentLogger = createLogger('gateway-test', 'silent');

/** Build settings for a test (environment defaults, no gRPC server, + overrides). */
export function testSettings(overrides: Partial<Settings> & { redis_url: string }): Settings & { redis_url: string } {
  return { ...loadSettings({}), grpc_port: 0, ...overrides };
}

/**
 * Start a test Redis (unless `server` is given), a temp repository and an app built on them. The app
 * is not listening; use `app.inject`, or `app.listen({ port: 0 })`.
 */
export async function startFixture(
  options: RepositoryOptions & {
    settings?: Partial<Settings>;
    server?: TestRedis;
    /** Announce no worker at start (default: a worker holding `workerVersions`, AVAILABLE). */
    noWorker?: boolean;
    /** Versions the stand-in worker holds AVAILABLE (default: `versions`). */
    workerVersions?: number[];
  } = {},
): Promise<Fixture> {
  const server = options.server ?? (await startTestRedis());
  const repository = await createRepository(options);
  // The stand-in worker heartbeats once (per reset): a long period keeps it alive for the whole suite.
  const settings = testSettings({ redis_url: server.url, model_repository: repository, heartbeat_interval_ms: STAND_IN_HEARTBEAT_MS, ...options.settings });
  const redis = connectRedis(server.url, { name: 'test' });
  const appRedis = connectRedis(server.url, { name: 'test-gateway', failFast: true, enableAutoPipelining: true });
  appRedis.on('error', () => undefined);
  await appRedis.ping().catch(async () => {
    // failFast: the first command may run before the connection is ready.
    await new Promise((resolve) => appRedis.once('ready', resolve));
  });
  const events = new JobEvents(connectRedis(server.url, { name: 'test-events' }), silentLogger);
  await events.ready();
  const models = await ModelCatalog.open(repository, settings.poll_interval_ms, silentLogger, settings.traffic_seed);
  followWorkers(models, appRedis, settings.heartbeat_interval_ms);
  const app = buildApp({ redis: appRedis, events, models, settings, logger: silentLogger });
  await app.ready();
  const announce = async (
    versions: readonly number[] = options.workerVersions ?? options.versions ?? [1],
    state: 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END' = 'AVAILABLE',
    error?: string,
    model = MODEL,
  ): Promise<void> => {
    await announceStandIn(redis, model, versions, settings.heartbeat_interval_ms, state, error);
    await models.refreshLive();
  };
  const reset = async (): Promise<void> => {
    await redis.flushall();
    if (options.noWorker) await models.refreshLive();
    else await announce();
  };
  await reset();
  return {
    announce,
    reset,
    server,
    redis,
    appRedis,
    events,
    models,
    settings,
    app,
    repository,
    close: async () => {
      await app.close();
      models.close();
      await events.close();
      appRedis.disconnect();
      redis.disconnect();
      if (!options.server) await server.stop();
      await rm(repository, { recursive: true, force: true });
    },
  };
}

/**
 * Keys holding requests, jobs or groups: every key but the BullMQ queue's metadata and the model's
 * worker announcements and admission (which the stand-in worker writes).
 */
export async function storedKeys(redis: Redis): Promise<string[]> {
  const workerKeys = new Set([keys.workers(MODEL), keys.versionStatus(MODEL), keys.admission(MODEL)]);
  return (await redis.keys('*')).filter((key) => !key.startsWith(`${BULLMQ_PREFIX}:`) && !workerKeys.has(key));
}

/**
 * Announce the stand-in worker {@link STAND_IN_WORKER} holding `versions` of `model` in `state`, and
 * open them for admission when AVAILABLE (what a real worker's heartbeat does).
 */
export async function announceStandIn(
  redis: Redis,
  model: string,
  versions: readonly number[],
  heartbeatIntervalMs: number,
  state: 'LOADING' | 'AVAILABLE' | 'UNLOADING' | 'END' = 'AVAILABLE',
  error?: string,
): Promise<void> {
  const held = Object.fromEntries(versions.map((v) => [String(v), { state, ...(error === undefined ? {} : { error }) }]));
  await announceWorker(redis, model, { consumer: STAND_IN_WORKER, backend: 'cpu', versions: held }, state === 'AVAILABLE' ? versions : [], heartbeatIntervalMs);
}

/** POST /v1/jobs with a JSON body. */
export async function postJob(app: GatewayApp, body: unknown) {
  return app.inject({ method: 'POST', url: '/v1/jobs', payload: body as Record<string, unknown> });
}

/** The stream entry id enqueue.lua stored on a job. */
export async function entryOf(redis: Redis, jobId: string): Promise<string> {
  const entry = await redis.hget(keys.job(jobId), 'entry');
  if (!entry) throw new Error(`job ${jobId} has no entry`);
  return entry;
}

/** Run the real start.lua for one job, as a worker does when its batch begins. */
export async function startJob(redis: Redis, jobId: string): Promise<string[]> {
  return startJobs(redis, [jobId], Date.now());
}

/** A glove-embed output as a worker writes it (JSON text). */
export function embeddingOutput(value = 0.1): Buffer {
  return outputToJson({ embedding: new Float32Array(100).fill(value) });
}

/** Run the real settle.lua for one job, as a worker does (queue_ms 12, inference_ms 3, batch of 4). */
export async function settleJob(
  redis: Redis,
  jobId: string,
  result: { status: 'succeeded'; output?: Buffer } | { status: 'failed'; code: string; message: string } = { status: 'succeeded' },
  version = 1,
): Promise<number> {
  const entryId = await entryOf(redis, jobId);
  const [written] = await settleJobs(redis, MODEL, version, { inference_ms: 3, batch_size: 4, batch_id: 'batch-1', result_ttl_s: 60 }, [
    { jobId, entryId, queue_ms: 12, result: result.status === 'succeeded' ? { ok: true, output: result.output ?? embeddingOutput() } : { ok: false, code: result.code, message: result.message } },
  ]);
  return written ? 1 : 0;
}

/**
 * A stand-in worker on the real protocol: XREADGROUP, start.lua, settle.lua (through the protocol module). The embedding of a text is
 * filled with its length / 100, so a test can tell which answer belongs to which instance; a text
 * starting with "fail" fails with inference_failed.
 */
export function fakeWorker(url: string, version = 1): { stop(): Promise<void> } {
  const redis: Redis = connectRedis(url, { name: 'fake-worker' });
  redis.on('error', () => undefined);
  const stream = keys.requests(MODEL, version);
  let running = true;
  const loop = (async () => {
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    while (running) {
      const reply = (await redis.callBuffer('XREADGROUP', 'GROUP', CONSUMER_GROUP, 'w1', 'COUNT', 32, 'BLOCK', 50, 'STREAMS', stream, '>')) as
        | [Buffer, [Buffer, Buffer[]][]][]
        | null;
      for (const [, entries] of reply ?? []) {
        for (const [id, fields] of entries) {
          const jobId = fields[1]?.toString() ?? '';
          const text = decode<string>(fields[3] ?? Buffer.alloc(0));
          await startJobs(redis, [jobId], Date.now());
          const result = text.startsWith('fail')
            ? { ok: false as const, code: 'inference_failed', message: 'model threw' }
            : { ok: true as const, output: outputToJson({ embedding: new Float32Array(100).fill(text.length / 100) }) };
          await settleJobs(redis, MODEL, version, { inference_ms: 1, batch_size: entries.length, batch_id: 'b', result_ttl_s: 60 }, [
            { jobId, entryId: id.toString(), result, queue_ms: 1 },
          ]);
        }
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      redis.disconnect();
    },
  };
}

/** One server-sent event: its name and its JSON data. */
export interface SseEvent<T> {
  event: string;
  data: T;
}

/**
 * Read a whole event stream (until the server closes it), collecting `event:` / `data:` (JSON) pairs
 * and calling `onEvent` as each arrives.
 */
export async function readEvents<T>(res: Response, onEvent: (event: string, data: T) => void = () => undefined): Promise<SseEvent<T>[]> {
  const events: SseEvent<T>[] = [];
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event && data) {
        const parsed = JSON.parse(data) as T;
        events.push({ event, data: parsed });
        onEvent(event, parsed);
      }
    }
  }
  return events;
}
