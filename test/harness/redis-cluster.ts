import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../../packages/cli/src/redis-server.ts';

/** Time allowed for a new cluster to report `cluster_state:ok` on every node, ms. */
const CLUSTER_READY_TIMEOUT_MS = 20_000;

/** A Redis Cluster of masters this harness started (no replicas), each with its append-only file. */
export interface TestCluster {
  /** `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...` (packages/shared/src/redis.ts). */
  url: string;
  /** The masters, in the order they were started. */
  masters: RedisServer[];
  /**
   * Kill master `index` (SIGKILL) and start it again on the same port from its data folder: it
   * reloads its cluster config and replays its append-only file. Resolves once the cluster is ok.
   */
  restart(index: number, downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Start `count` (default 3) `redis-server --cluster-enabled yes --appendonly yes` on free ports in
 * `dir`, join them with `redis-cli --cluster create ... --cluster-replicas 0` (the 16384 slots split
 * evenly) and wait for `cluster_state:ok` on every node.
 * https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/
 * @throws Error when a server or redis-cli fails, or the cluster is not ok in time.
 */
export async function startTestCluster(dir: string, count = 3): Promise<TestCluster> {
  const start = async (index: number, port?: number): Promise<RedisServer> => {
    const nodeDir = join(dir, `node-${index}`);
    await mkdir(nodeDir, { recursive: true });
    return startRedisServer({
      dir: nodeDir,
      appendonly: true,
      ...(port === undefined ? {} : { port }),
      extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'],
    });
  };
  const masters: RedisServer[] = [];
  for (let i = 0; i < count; i++) masters.push(await start(i));
  await redisCli(['--cluster', 'create', ...masters.map((m) => `127.0.0.1:${m.port}`), '--cluster-replicas', '0', '--cluster-yes']);
  await waitClusterOk(masters.map((m) => m.port));
  return {
    url: `redis+cluster://${masters.map((m) => `127.0.0.1:${m.port}`).join(',')}`,
    masters,
    restart: async (index, downMs = 500) => {
      const master = masters[index];
      if (!master) throw new Error(`no master ${index}`);
      const exited = new Promise((resolve) => master.process.once('exit', resolve));
      master.process.kill('SIGKILL');
      await exited;
      await new Promise((resolve) => setTimeout(resolve, downMs));
      masters[index] = await start(index, master.port);
      await waitClusterOk(masters.map((m) => m.port));
    },
    stop: async () => {
      await Promise.all(masters.map((m) => m.stop()));
    },
  };
}

/** Run redis-cli with `args`; resolves with its stdout. @throws Error on a non-zero exit. */
function redisCli(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`redis-cli ${args.join(' ')} exited ${code}: ${out}`))));
  });
}

/** Poll CLUSTER INFO of every node until each says `cluster_state:ok` and knows all 16384 slots. */
async function waitClusterOk(ports: readonly number[]): Promise<void> {
  const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
  for (;;) {
    const states = await Promise.all(
      ports.map(async (port) => {
        const node = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        node.on('error', () => undefined);
        try {
          await node.connect();
          const info = String(await node.call('CLUSTER', 'INFO'));
          return /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info);
        } catch {
          return false;
        } finally {
          node.disconnect();
        }
      }),
    );
    if (states.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`cluster on ports ${ports.join(', ')} not ok after ${CLUSTER_READY_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
