import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { InferlineError } from '@inferline/shared';

/** Time allowed for a private redis-server to answer PING after spawn (ms). */
export const REDIS_START_TIMEOUT_MS = 10_000;

/** A redis-server process this program started and owns. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  process: ChildProcess;
  /** SHUTDOWN NOSAVE (or SIGTERM when that fails) and wait for the process to exit. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Data folder (AOF lives here). Created when missing. */
  dir: string;
  /** TCP port; default a free one. */
  port?: number;
  /** `appendonly yes` (durable across restarts of this server); default true. */
  appendonly?: boolean;
  /** Where redis-server's log goes: a file path, or '' for stdout; default `<dir>/redis.log`. */
  logfile?: string;
  /** More redis-server arguments, e.g. `['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']`. */
  extraArgs?: readonly string[];
}

/** Ask the OS for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Path of an executable on PATH (`sh -c "command -v <name>"`), or undefined. */
function onPath(name: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path !== '' ? path : undefined;
}

/**
 * Path of `redis-server` on PATH.
 * @throws InferlineError `unavailable` naming the fix when it is missing.
 */
export function findRedisServer(): string {
  const path = onPath('redis-server');
  if (path === undefined) {
    throw new InferlineError(
      'unavailable',
      'redis-server was not found on PATH. Install Redis 7 (Debian/Ubuntu: `sudo apt-get install -y redis-server`, macOS: `brew install redis`) or set REDIS_URL to a running Redis.',
    );
  }
  return path;
}

/**
 * The command prefix that makes a child get SIGTERM when this process dies, however it dies:
 * `setpriv --pdeathsig SIGTERM --` (util-linux; Linux `prctl(PR_SET_PDEATHSIG)`, kept across the exec
 * of the child's program; https://man7.org/linux/man-pages/man1/setpriv.1.html), or nothing where
 * `setpriv` is missing (macOS): there a SIGKILLed owner leaves its redis-server running.
 * The signal follows the thread that spawned the child: call this from the main thread.
 */
export function parentDeathPrefix(): string[] {
  if (process.platform !== 'linux') return [];
  const setpriv = onPath('setpriv');
  return setpriv === undefined ? [] : [setpriv, '--pdeathsig', 'SIGTERM', '--'];
}

/**
 * Start a private redis-server bound to 127.0.0.1 with the settings inferline requires
 * (`maxmemory-policy noeviction`, DESIGN.md section 4), and wait until it answers PING.
 * @throws InferlineError `unavailable` when redis-server is missing or does not come up in time.
 */
export async function startRedisServer(options: RedisServerOptions): Promise<RedisServer> {
  const binary = findRedisServer();
  await mkdir(options.dir, { recursive: true });
  const port = options.port ?? (await freePort());
  const appendonly = options.appendonly ?? true;
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', options.dir,
    '--save', '',
    '--appendonly', appendonly ? 'yes' : 'no',
    '--maxmemory-policy', 'noeviction',
    '--logfile', options.logfile ?? 'redis.log',
    '--daemonize', 'no',
    ...(options.extraArgs ?? []),
  ];
  // Its own process group: a terminal's Ctrl-C reaches the workers, which still need Redis to settle
  // their batch; the owner stops this server last, with stop(). If the owner dies without stopping it
  // (SIGKILL, OOM killer), the parent-death signal stops it too.
  const [command = binary, ...commandArgs] = [...parentDeathPrefix(), binary, ...args];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const deadline = Date.now() + REDIS_START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) {
      throw new InferlineError('unavailable', `redis-server exited with code ${child.exitCode}: ${stderr.trim()}`);
    }
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    const ok = await probe
      .connect()
      .then(() => probe.ping())
      .then(() => true, () => false);
    probe.disconnect();
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new InferlineError('unavailable', `redis-server on port ${port} did not answer within ${REDIS_START_TIMEOUT_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null) return;
    const admin = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    admin.on('error', () => undefined);
    // SHUTDOWN closes the connection instead of replying; the rejection is expected.
    await admin.call('SHUTDOWN', appendonly ? 'SAVE' : 'NOSAVE').catch(() => undefined);
    admin.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  return { url, port, process: child, stop };
}
