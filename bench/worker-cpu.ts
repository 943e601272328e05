import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis as SingleRedis } from 'ioredis';
import { JOB_EVENTS_CHANNEL, connectRedis, enqueueJobs, encode, jobEventsOf, keys, newJobId, type ModelConfig, type Redis } from '@inferline/shared';
import { startRedisServer, type RedisServer } from '../packages/cli/src/redis-server.ts';
import { ROOT } from '../test/harness/processes.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { median } from './median.ts';
import { clockTicksPerSecond, readCpuSeconds } from './proc-cpu.ts';

/**
 * `npm run bench -- --worker-cpu [--duration-s 10 --batch-sizes 1,8,32 --rounds 2 --before <tree>]`: the
 * worker alone, without HTTP or a load client. Per max_batch_size: a private redis-server and one
 * `inferline worker --models glove-embed` process (INSTANCE_COUNT as `npm start` sets it: one instance
 * thread per core), its model repository a copy of `models/` whose glove-embed config.json has that
 * max_batch_size (the version folder linked, not copied). A feeder in this process keeps the version's
 * stream holding a backlog of about {@link BACKLOG} entries, each written the way the gateway's one-call
 * path writes it: one enqueue.lua call per request (`enqueueJobs`, the protocol's function) with a
 * Moby Dick paragraph as MessagePack. Settled jobs are counted from the job events channel. After a
 * warm-up, over `--duration-s`, it reports CPU µs per settled job of the worker process (all its
 * threads, and its main thread alone: `/proc/<pid>/task/<pid>/stat`; the other threads are the instance
 * threads, V8's platform threads and libuv's pool: Node does not name them, so the busiest ones are
 * listed), and of redis-server (whose figure includes the feeder's enqueue.lua calls, as it would the
 * gateway's). The feeder's own CPU is not counted.
 *
 * `--before <tree>`: a second worker tree (a checkout of another commit with node_modules and built
 * models): each round measures it and this tree one after the other, so before/after figures come
 * from the same minutes of a shared machine.
 *
 * Prints figures; asserts nothing.
 */

/** Entries the feeder keeps in the stream, so every read fills a batch. */
export const BACKLOG = 4000;
/** Jobs enqueued per feeder turn at most (one enqueue.lua call each, pipelined). */
const FEED_CHUNK = 500;
/** Pause between feeder turns, ms. */
const FEED_PAUSE_MS = 5;
/** Unmeasured load before the window (JIT, GC settling), ms. */
const WARMUP_MS = 3_000;
/** Time allowed for the worker to log that it is ready, ms. */
const READY_TIMEOUT_MS = 90_000;
const MODEL = 'glove-embed';
const US_PER_S = 1e6;

/** Options of {@link benchWorkerCpu}. */
export interface WorkerCpuOptions {
  /** Measured window per figure, ms. */
  durationMs: number;
  /** max_batch_size of each figure. */
  batchSizes: number[];
  /** Times each figure is measured (alternating trees when `beforeRoot` is set). */
  rounds: number;
  /** Another worker tree to measure side by side, labelled `before`; this tree is `after`. */
  beforeRoot?: string;
  /** Extra node arguments of the worker process (say `--cpu-prof`, which NODE_OPTIONS may not carry). */
  nodeArgs?: string[];
}

/** CPU seconds of every thread of a process (`/proc/<pid>/task/<tid>/stat`), by thread id. */
export function threadCpuSeconds(pid: number): Map<number, number> {
  const ticks = clockTicksPerSecond();
  const seconds = new Map<number, number>();
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return seconds;
  }
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      // utime and stime: fields 14 and 15 of proc(5), 0-based 11 and 12 after `(comm) `.
      seconds.set(Number(tid), (Number(fields[11]) + Number(fields[12])) / ticks);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return seconds;
}

/**
 * A model repository holding glove-embed with `max_batch_size`: the config.json of the tree `root`
 * (each tree measured runs with its own), the version folder linked from this tree's `models/`.
 */
export async function repositoryWith(dir: string, maxBatchSize: number, root = ROOT): Promise<string> {
  const repository = join(dir, 'models');
  const modelDir = join(repository, MODEL);
  await mkdir(modelDir, { recursive: true });
  const config = JSON.parse(await readFile(join(root, 'models', MODEL, 'config.json'), 'utf8')) as ModelConfig;
  config.batching.max_batch_size = maxBatchSize;
  // Records of settled jobs are not read back: a short life keeps Redis' memory flat over the rounds.
  config.queue.result_ttl_s = 60;
  await writeFile(join(modelDir, 'config.json'), JSON.stringify(config, null, 2));
  await symlink(join(ROOT, 'models', MODEL, '1'), join(modelDir, '1'));
  return repository;
}

/**
 * Start `inferline <args>` from the tree `root` (its own node_modules and sources), through tsx as the
 * test harness does; resolves once an output line holds `ready` (the role's "ready" log line).
 * @param nodeArgs node arguments before `--import tsx` (say `--cpu-prof`)
 * @throws Error when it exits first or is not ready within READY_TIMEOUT_MS (with its output; it is
 *   killed then).
 */
export async function startTreeRole(root: string, args: readonly string[], env: Record<string, string>, ready: string, nodeArgs: readonly string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'packages/cli/src/main.ts', ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not ready: it is not returned, so nobody else would stop it.
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} not ready after ${READY_TIMEOUT_MS} ms:\n${output}`));
    }, READY_TIMEOUT_MS);
    const onError = (chunk: Buffer): void => {
      output += chunk.toString();
    };
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes(ready)) {
        clearTimeout(timer);
        // From now on its output (a line per request or batch at info) is drained unread: kept, it
        // grew without end and was searched again on every chunk, at a cost the load client paid.
        child.stdout?.off('data', onData).resume();
        child.stderr?.off('data', onError).resume();
        output = '';
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onError);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
  return child;
}

/** Start `inferline worker --models glove-embed` from `root`; resolves once it logged that it is ready. */
export async function startWorker(root: string, env: Record<string, string>, nodeArgs: readonly string[] = []): Promise<ChildProcess> {
  return startTreeRole(root, ['worker', '--models', MODEL], env, '"msg":"worker ready"', nodeArgs);
}

/** Stop a role process (SIGTERM: a worker settles what it holds) and wait for its exit. */
export async function stopRole(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** One figure: the worker's and Redis' CPU per settled job over the window. */
interface WorkerCpuFigure {
  settled: number;
  perSecond: number;
  workerUs: number;
  mainUs: number;
  /** The busiest non-main threads' µs per job, busiest first. */
  threadsUs: number[];
  redisUs: number;
}

/**
 * Keep `redis`'s stream of glove-embed v1 at about BACKLOG entries until `stop()`: each turn tops it
 * up with single-request enqueue.lua calls (all sent at once: the connection pipelines them).
 */
function startFeeder(redis: Redis, texts: readonly string[]): { stop(): Promise<void> } {
  const stream = keys.requests(MODEL, 1);
  const inputs = texts.map((text) => encode(text));
  let next = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const missing = Math.min(FEED_CHUNK, BACKLOG - (await redis.xlen(stream)));
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < missing; i++) {
        const input = inputs[next++ % inputs.length] as Buffer;
        calls.push(enqueueJobs(redis, { model: MODEL, version: 1, max_queue_size: 100_000, created_at: Date.now(), jobs: [{ id: newJobId(MODEL), input }] }));
      }
      await Promise.all(calls);
      await new Promise((resolve) => setTimeout(resolve, FEED_PAUSE_MS));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Measure one worker tree at one max_batch_size (its own redis-server and repository). */
async function measure(root: string, maxBatchSize: number, options: WorkerCpuOptions): Promise<WorkerCpuFigure> {
  const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-worker-'));
  let server: RedisServer | undefined;
  let worker: ChildProcess | undefined;
  const redis: Redis[] = [];
  try {
    const repository = await repositoryWith(dir, maxBatchSize, root);
    server = await startRedisServer({ dir, appendonly: false });
    const redisPid = server.process.pid ?? 0;
    worker = await startWorker(root, {
      REDIS_URL: server.url,
      MODEL_REPOSITORY: repository,
      LOG_LEVEL: 'info',
      INSTANCE_COUNT: process.env.INSTANCE_COUNT ?? String(availableParallelism()),
      GRPC_PORT: '0',
    }, options.nodeArgs);
    const workerPid = worker.pid ?? 0;
    const feederConnection = connectRedis(server.url, { name: 'bench-feeder' });
    const events = new SingleRedis(server.url);
    redis.push(feederConnection, events);
    let settled = 0;
    events.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      for (const event of jobEventsOf(message)) {
        const tab = event.indexOf(9);
        const status = event.toString('latin1', tab + 1, event.indexOf(9, tab + 1) < 0 ? event.length : event.indexOf(9, tab + 1));
        if (status === 'succeeded' || status === 'failed') settled++;
      }
    });
    await events.subscribe(JOB_EVENTS_CHANNEL);
    const feeder = startFeeder(feederConnection, loadMobyDickParagraphs());
    await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
    const settled0 = settled;
    const threads0 = threadCpuSeconds(workerPid);
    const worker0 = readCpuSeconds(workerPid) ?? NaN;
    const redis0 = readCpuSeconds(redisPid) ?? NaN;
    const t0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, options.durationMs));
    const count = settled - settled0;
    const threads1 = threadCpuSeconds(workerPid);
    const worker1 = readCpuSeconds(workerPid) ?? NaN;
    const redis1 = readCpuSeconds(redisPid) ?? NaN;
    const wallS = (performance.now() - t0) / 1000;
    await feeder.stop();
    const perJob = (seconds: number): number => (seconds * US_PER_S) / count;
    const used = [...threads1].map(([tid, end]) => [tid, end - (threads0.get(tid) ?? 0)] as const);
    const others = used.filter(([tid]) => tid !== workerPid).map(([, s]) => perJob(s)).sort((a, b) => b - a);
    return {
      settled: count,
      perSecond: count / wallS,
      workerUs: perJob(worker1 - worker0),
      mainUs: perJob((threads1.get(workerPid) ?? NaN) - (threads0.get(workerPid) ?? NaN)),
      threadsUs: others.slice(0, 3),
      redisUs: perJob(redis1 - redis0),
    };
  } finally {
    for (const connection of redis) connection.disconnect();
    if (worker) await stopRole(worker);
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Run the figures and print one markdown row each. */
export async function benchWorkerCpu(options: WorkerCpuOptions): Promise<void> {
  const trees: [string, string][] = options.beforeRoot ? [['before', options.beforeRoot], ['after', ROOT]] : [['this tree', ROOT]];
  console.log(`# worker alone: ${MODEL}, INSTANCE_COUNT ${process.env.INSTANCE_COUNT ?? availableParallelism()}, backlog ${BACKLOG}, ${options.durationMs / 1000} s per figure, node ${process.version}`);
  console.log('| max_batch_size | tree | round | jobs/s | worker µs/job | main thread | busiest other threads | redis µs/job |');
  console.log('| ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |');
  const medians: string[] = [];
  for (const batchSize of options.batchSizes) {
    const figures = new Map<string, WorkerCpuFigure[]>(trees.map(([label]) => [label, []]));
    for (let round = 1; round <= options.rounds; round++) {
      // Alternate which tree goes first, so neither always gets the fresher minutes.
      const order = round % 2 === 1 ? trees : [...trees].reverse();
      for (const [label, root] of order) {
        const f = await measure(root, batchSize, options);
        figures.get(label)?.push(f);
        console.log(
          `| ${batchSize} | ${label} | ${round} | ${f.perSecond.toFixed(0)} | ${f.workerUs.toFixed(1)} | ${f.mainUs.toFixed(1)} | ${f.threadsUs.map((us) => us.toFixed(1)).join(', ')} | ${f.redisUs.toFixed(1)} |`,
        );
      }
    }
    for (const [label, list] of figures) {
      const of = (pick: (f: WorkerCpuFigure) => number): string => median(list.map(pick)).toFixed(1);
      medians.push(`| ${batchSize} | ${label} | ${of((f) => f.perSecond)} | ${of((f) => f.workerUs)} | ${of((f) => f.mainUs)} | ${of((f) => f.workerUs - f.mainUs)} | ${of((f) => f.redisUs)} |`);
    }
  }
  if (options.rounds > 1) {
    console.log(`\n## medians over ${options.rounds} rounds`);
    console.log('| max_batch_size | tree | jobs/s | worker µs/job | main thread | other threads | redis µs/job |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |');
    for (const row of medians) console.log(row);
  }
}
