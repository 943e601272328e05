import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../packages/cli/src/redis-server.ts';

/** Repository root (the folder holding package.json). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Time allowed for a role process to become ready, ms (model load + warm-up included). */
const READY_TIMEOUT_MS = 60_000;

/** A running `inferline <role>` child process with its captured output. */
export interface RoleProcess {
  child: ChildProcess;
  /** Every stdout/stderr line so far. */
  lines: string[];
  /** Everything written to stdout/stderr so far, as one string. */
  output(): string;
  /** Resolve when a line matches (already seen lines count). Rejects on exit or after READY_TIMEOUT_MS. */
  waitFor(pattern: RegExp): Promise<string>;
  /** Resolves with the exit code when the process exits. */
  exited: Promise<number | null>;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** Send `signal` (default SIGKILL: a crash) and wait for exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Start `inferline <args>` (the real CLI, through tsx) with extra environment variables. `launcher`:
 * through bin/inferline.js, as `npm start` runs it (`start` then fills tsx's transform cache first),
 * instead of `node --import tsx packages/cli/src/main.ts`.
 */
export function startRole(args: string[], env: Record<string, string>, options: { launcher?: boolean } = {}): RoleProcess {
  const entry = options.launcher ? ['bin/inferline.js'] : ['--import', 'tsx', 'packages/cli/src/main.ts'];
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    // No gRPC server unless a suite asks for one (GRPC_PORT): suites run gateways side by side.
    env: { ...process.env, LOG_LEVEL: 'info', GRPC_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  let buffered = '';
  const onData = (chunk: Buffer): void => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitFor = (pattern: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find((line) => pattern.test(line));
        if (found !== undefined) finish(() => resolve(found));
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`timed out waiting for ${pattern}; output:\n${lines.join('\n')}`))), READY_TIMEOUT_MS);
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      void exited.then((code) => finish(() => reject(new Error(`exited with ${code} before ${pattern}; output:\n${lines.join('\n')}`))));
      listeners.add(check);
      check();
    });

  return {
    child,
    lines,
    output: () => [...lines, buffered].join('\n'),
    waitFor,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: async (signal: NodeJS.Signals = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Start a gateway on a free port; resolves once it answers /healthz. */
export async function startGatewayProcess(env: Record<string, string>): Promise<RoleProcess & { url: string }> {
  const port = await freePort();
  const gateway = startRole(['gateway'], { PORT: String(port), HOST: '127.0.0.1', ...env });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then((response) => response.ok, () => false);
    if (ok) break;
    if (gateway.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`gateway did not start; output:\n${gateway.lines.join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { ...gateway, url };
}

/** Start a worker; resolves once it logged that it is ready (model loaded and warmed up). */
export async function startWorkerProcess(env: Record<string, string>, models: string[] = []): Promise<RoleProcess> {
  const worker = startRole(['worker', ...(models.length > 0 ? ['--models', models.join(',')] : [])], env);
  await worker.waitFor(/"msg":"worker ready"/);
  return worker;
}

/** Start an aggregator (the reducers of aggregation groups); resolves once it logged that it is ready. */
export async function startAggregatorProcess(env: Record<string, string>): Promise<RoleProcess> {
  const aggregator = startRole(['aggregator'], env);
  try {
    await aggregator.waitFor(/"msg":"aggregator ready"/);
  } catch (error) {
    await aggregator.kill();
    throw error;
  }
  return aggregator;
}
