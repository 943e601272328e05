import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startRedisServer } from '../../packages/cli/src/redis-server.ts';
import type { NamedProcess } from '../proc-cpu.ts';
import { stopChildProcess, type SystemUnderTest } from '../system-under-test.ts';
import type { BaselineReadyMessage } from './baseline-env.ts';
import { ROOT } from '../../test/harness/processes.ts';

/** Time a baseline process gets to load its model and announce it serves, ms. */
const BASELINE_READY_TIMEOUT_MS = 120_000;
/** Time a baseline process gets to exit after SIGTERM before SIGKILL, ms. */
const BASELINE_STOP_GRACE_MS = 10_000;
/** Interface the baseline servers listen on. */
const BASELINE_HOST = '127.0.0.1';
/**
 * The BullMQ baseline's redis-server writes an append-only file, as the private redis-server of
 * `inferline start` does, so both queues pay the same durability cost.
 */
const BASELINE_REDIS_APPENDONLY = true;

const script = (name: string): string => fileURLToPath(new URL(`./${name}`, import.meta.url));

/**
 * Fork a baseline script (through tsx) with `env` added and wait for its `baseline-ready` message.
 * @throws Error when it exits first or is not ready within BASELINE_READY_TIMEOUT_MS (then it is killed).
 */
async function forkBaseline(file: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = fork(script(file), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} was not ready within ${BASELINE_READY_TIMEOUT_MS} ms`));
    }, BASELINE_READY_TIMEOUT_MS);
    child.on('message', (message: Partial<BaselineReadyMessage> | null) => {
      if (message?.type !== 'baseline-ready') return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited (${signal ?? `code ${code}`}) before it was ready`));
    });
  });
  return child;
}

function named(name: string, child: ChildProcess): NamedProcess {
  if (child.pid === undefined) throw new Error(`${name}: no pid`);
  return { name, pid: child.pid };
}

/**
 * The BullMQ baseline: its own redis-server, `workers` bullmq-worker.ts processes and one
 * bullmq-gateway.ts, all on this machine. `modelDir` is `models/<name>`.
 */
export async function startBullmqBaseline(options: { modelDir: string; workers: number }): Promise<SystemUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'inferline-compare-bullmq-'));
  const redis = await startRedisServer({ dir, appendonly: BASELINE_REDIS_APPENDONLY });
  const children: ChildProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map((child) => stopChildProcess(child, BASELINE_STOP_GRACE_MS)));
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await freePort();
    const env = { REDIS_URL: redis.url, MODEL_DIR: options.modelDir, PORT: String(port), HOST: BASELINE_HOST };
    const started = await Promise.allSettled([
      forkBaseline('bullmq-gateway.ts', env),
      ...Array.from({ length: options.workers }, () => forkBaseline('bullmq-worker.ts', env)),
    ]);
    for (const result of started) if (result.status === 'fulfilled') children.push(result.value);
    const failure = started.find((result) => result.status === 'rejected');
    if (failure) throw failure.reason;
    const [gateway, ...workers] = children as [ChildProcess, ...ChildProcess[]];
    const processes = [named('gateway', gateway), ...workers.map((worker, i) => named(`worker-${i + 1}`, worker))];
    if (redis.process.pid !== undefined) processes.push({ name: 'redis', pid: redis.process.pid });
    return { name: 'bullmq', url: `http://${BASELINE_HOST}:${port}`, processes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The naive reference: one naive-server.ts process, no queue. `modelDir` is `models/<name>`. */
export async function startNaiveBaseline(options: { modelDir: string }): Promise<SystemUnderTest> {
  const port = await freePort();
  const server = await forkBaseline('naive-server.ts', { MODEL_DIR: options.modelDir, PORT: String(port), HOST: BASELINE_HOST });
  return {
    name: 'naive',
    url: `http://${BASELINE_HOST}:${port}`,
    processes: [named('server', server)],
    stop: () => stopChildProcess(server, BASELINE_STOP_GRACE_MS),
  };
}
