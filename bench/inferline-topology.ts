import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from '../packages/cli/src/redis-server.ts';
import { descendantPids, readCmdline, readStartTicks, type NamedProcess } from './proc-cpu.ts';
import { parseJsonOrUndefined } from './request-paths.ts';
import type { SystemUnderTest } from './system-under-test.ts';
import { ROOT } from '../test/harness/processes.ts';

/**
 * "The README topology" for bench/compare.ts: `node bin/inferline.js start` (what
 * `npm start` runs) with a free `PORT`, `HOST=127.0.0.1`, `LOG_LEVEL=warn`, a fresh `STATE_DIR` and no
 * `REDIS_URL`, so it starts its own redis-server and forks a gateway, one worker (an instance thread per core) and an
 * aggregator. Its processes are found by walking /proc from the start process.
 */

/** Time the topology gets to serve a first job with every worker live, ms. */
const TOPOLOGY_READY_TIMEOUT_MS = 180_000;
/** Pause between readiness probes, ms. */
const READY_PROBE_INTERVAL_MS = 250;
/** `wait` of the readiness job's long-poll, s. */
const READY_JOB_WAIT_S = 30;
/** Time `inferline start` gets to stop its children and exit after SIGTERM, before SIGKILL, ms. */
const TOPOLOGY_STOP_GRACE_MS = 30_000;
/** Test jobs that may fail in a row, once the workers are live, before the start is given up. */
const READY_JOB_ATTEMPTS = 5;
/** Output lines of `inferline start` kept to explain a failed start, and the length each is cut to. */
const KEPT_OUTPUT_LINES = 20;
const KEPT_LINE_CHARS = 400;
const HTTP_OK = 200;
const HTTP_ACCEPTED = 202;

/** The roles of the forked children (the last argument of `main.ts <role>`). */
const ROLES = ['gateway', 'worker', 'aggregator'] as const;

async function getJson(url: string, init: { method?: 'GET' | 'POST'; body?: unknown } = {}): Promise<{ status: number; body: unknown }> {
  const reply = await request(url, {
    method: init.method ?? 'GET',
    ...(init.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(init.body) }),
  });
  return { status: reply.statusCode, body: parseJsonOrUndefined(await reply.body.text()) };
}

/**
 * One readiness probe: `not-ready` until `GET /readyz` answers 200 and `model` has `workers` live
 * workers; then a test job through `POST /v1/jobs` + `GET /v1/jobs/:id?wait=`: `ready` when it
 * succeeds, else `job-failed` with what went wrong.
 */
async function probeReady(url: string, model: string, workers: number): Promise<{ state: 'not-ready' | 'ready' } | { state: 'job-failed'; reason: string }> {
  if ((await getJson(`${url}/readyz`)).status !== HTTP_OK) return { state: 'not-ready' };
  const models = (await getJson(`${url}/v1/models`)).body as { models?: { name: string; workers: number }[] } | undefined;
  if ((models?.models?.find((m) => m.name === model)?.workers ?? 0) < workers) return { state: 'not-ready' };
  const created = await getJson(`${url}/v1/jobs`, { method: 'POST', body: { model, input: 'Call me Ishmael.' } });
  const id = (created.body as { id?: unknown } | undefined)?.id;
  if (created.status !== HTTP_ACCEPTED || typeof id !== 'string') return { state: 'job-failed', reason: `POST /v1/jobs answered ${created.status} ${JSON.stringify(created.body)}` };
  const job = await getJson(`${url}/v1/jobs/${encodeURIComponent(id)}?wait=${READY_JOB_WAIT_S}`);
  if (job.status === HTTP_OK && (job.body as { status?: unknown } | undefined)?.status === 'succeeded') return { state: 'ready' };
  return { state: 'job-failed', reason: `GET /v1/jobs/${id} answered ${job.status} ${JSON.stringify(job.body)}` };
}

/**
 * The processes of the topology by role: `supervisor` (the start process), `gateway`, `worker-<n>`
 * (by start time), `aggregator`, `redis`, and `other-<pid>` for anything else in the tree.
 */
export function classifyTopology(startPid: number): NamedProcess[] {
  const byRole = new Map<string, number[]>();
  for (const pid of descendantPids(startPid)) {
    const argv = readCmdline(pid);
    // redis-server rewrites its title to `/usr/bin/redis-server 127.0.0.1:<port>`.
    const role = argv.some((arg) => arg.includes('redis-server')) ? 'redis' : ROLES.find((r) => argv.at(-1) === r) ?? `other-${pid}`;
    byRole.set(role, [...(byRole.get(role) ?? []), pid]);
  }
  const age = (pid: number): number => readStartTicks(pid) ?? Number.MAX_SAFE_INTEGER;
  const workers = (byRole.get('worker') ?? []).sort((a, b) => age(a) - age(b)).map((pid, i) => ({ name: `worker-${i + 1}`, pid }));
  const one = (role: string): NamedProcess[] => (byRole.get(role) ?? []).map((pid) => ({ name: role, pid }));
  const others = [...byRole].filter(([role]) => role.startsWith('other-')).flatMap(([role, pids]) => pids.map((pid) => ({ name: role, pid })));
  return [{ name: 'supervisor', pid: startPid }, ...one('gateway'), ...workers, ...one('aggregator'), ...one('redis'), ...others];
}

async function stopTopology(child: ChildProcess, stateDir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const tree = child.pid === undefined ? [] : descendantPids(child.pid);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const killer = setTimeout(() => {
      // It did not stop its children in time: kill the processes of its tree (all started by this run).
      for (const pid of tree) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      child.kill('SIGKILL');
    }, TOPOLOGY_STOP_GRACE_MS);
    await exited;
    clearTimeout(killer);
  }
  await rm(stateDir, { recursive: true, force: true });
}

/**
 * Start the README topology and wait until it serves `model` with its live workers (see the
 * file header). `stop()` sends SIGTERM to the start process (it stops its children, then its Redis)
 * and waits for it.
 * @throws Error with the last lines of its output when it exits or is not ready in time.
 */
export async function startInferlineTopology(options: { model: string }): Promise<SystemUnderTest> {
  const stateDir = await mkdtemp(join(tmpdir(), 'inferline-compare-state-'));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', STATE_DIR: stateDir };
  delete env.REDIS_URL;
  const child = spawn(process.execPath, ['bin/inferline.js', 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer): void => {
    output.push(...chunk.toString().split('\n').filter((line) => line.trim() !== '').map((line) => line.slice(0, KEPT_LINE_CHARS)));
    output.splice(0, Math.max(0, output.length - KEPT_OUTPUT_LINES));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  const url = `http://127.0.0.1:${port}`;
  // `start` runs WORKERS worker processes (0 or unset = one, with an instance thread per core).
  const workers = Number(process.env.WORKERS ?? 0) || 1;
  const deadline = performance.now() + TOPOLOGY_READY_TIMEOUT_MS;
  let failedJobs = 0;
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`inferline start exited (${child.signalCode ?? `code ${child.exitCode}`})`);
      const probe = await probeReady(url, options.model, workers).catch(() => ({ state: 'not-ready' as const }));
      if (probe.state === 'ready') break;
      if (probe.state === 'job-failed' && ++failedJobs >= READY_JOB_ATTEMPTS) throw new Error(`inferline start: ${READY_JOB_ATTEMPTS} test jobs failed, the last: ${probe.reason}`);
      if (performance.now() > deadline) throw new Error(`inferline start did not serve ${options.model} with ${workers} workers within ${TOPOLOGY_READY_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, READY_PROBE_INTERVAL_MS));
    }
  } catch (error) {
    await stopTopology(child, stateDir);
    throw new Error(`${(error as Error).message}; last output:\n${output.join('\n')}`);
  }
  if (child.pid === undefined) throw new Error('inferline start: no pid');
  return { name: 'inferline', url, processes: classifyTopology(child.pid), stop: () => stopTopology(child, stateDir) };
}
