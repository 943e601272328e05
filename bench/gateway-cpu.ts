import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_NODE_FLAGS } from '../packages/cli/src/commands/start.ts';
import { freePort, startRedisServer, type RedisServer } from '../packages/cli/src/redis-server.ts';
import { ROOT } from '../test/harness/processes.ts';
import { runClosedLoop } from './closed-loop.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { readCpuSeconds } from './proc-cpu.ts';
import { inferlineRequest } from './request-paths.ts';
import { repositoryWith, startTreeRole, startWorker, stopRole, threadCpuSeconds } from './worker-cpu.ts';

/**
 * `npm run bench -- --gateway-cpu [--duration-s 10 --concurrency 64,256 --rounds 1 --before <tree>]`:
 * the one-call path (`POST /v1/jobs` with `Prefer: wait=30`, bench/request-paths.ts) driven by the
 * closed-loop client (bench/closed-loop.ts: one undici Pool, a keep-alive socket per client) against
 * one gateway + one worker (glove-embed, INSTANCE_COUNT as `npm start` sets it) + a private
 * redis-server, all started from the tree measured. Per figure: requests/s, mean batch, and CPU µs per
 * completed request of the gateway (all threads, and its main thread alone), the worker and Redis,
 * from /proc over the window. The load client's CPU is shown, not counted.
 *
 * `--before <tree>`: another checkout, measured in turn with this one in every round (see
 * bench/worker-cpu.ts). Prints figures; asserts nothing.
 */

const MODEL = 'glove-embed';
/** Unmeasured load before each figure (JIT, connection pools), ms. */
const WARMUP_MS = 3_000;
const US_PER_S = 1e6;

/** Options of {@link benchGatewayCpu}. */
export interface GatewayCpuOptions {
  durationMs: number;
  /** Concurrent clients of the figures. */
  clients: number[];
  rounds: number;
  beforeRoot?: string;
  /** Extra node arguments of the gateway process (say `--cpu-prof`). */
  nodeArgs?: string[];
}

interface GatewayCpuFigure {
  perSecond: number;
  meanBatch: number;
  failed: number;
  gatewayUs: number;
  gatewayMainUs: number;
  workerUs: number;
  redisUs: number;
  loadUs: number;
}

/** Start redis + worker + gateway from `root`, run each client count, stop them. */
async function measureTree(root: string, options: GatewayCpuOptions): Promise<Map<number, GatewayCpuFigure>> {
  const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-gateway-'));
  let server: RedisServer | undefined;
  const roles: ChildProcess[] = [];
  const figures = new Map<number, GatewayCpuFigure>();
  try {
    // The repository's own batching (max_batch_size 32), the record life shortened as in worker-cpu.
    const repository = await repositoryWith(dir, 32, root);
    server = await startRedisServer({ dir, appendonly: false });
    const env = { REDIS_URL: server.url, MODEL_REPOSITORY: repository, HOST: '127.0.0.1', GRPC_PORT: '0' };
    const worker = await startWorker(root, { ...env, LOG_LEVEL: 'info', INSTANCE_COUNT: process.env.INSTANCE_COUNT ?? String(availableParallelism()) });
    roles.push(worker);
    const port = await freePort();
    // The gateway at `npm start`'s level (info: no line per request).
    // The gateway's node flags as `npm start` gives them (both trees get this tree's flags).
    const gateway = await startTreeRole(root, ['gateway'], { ...env, PORT: String(port), LOG_LEVEL: 'info' }, '"msg":"gateway listening"', [...GATEWAY_NODE_FLAGS, ...(options.nodeArgs ?? [])]);
    roles.push(gateway);
    const url = `http://127.0.0.1:${port}`;
    const send = inferlineRequest(MODEL, 'one-call');
    const texts = loadMobyDickParagraphs();
    const pids = { gateway: gateway.pid ?? 0, worker: worker.pid ?? 0, redis: server.process.pid ?? 0, load: process.pid };
    for (const clients of options.clients) {
      await runClosedLoop({ url, clients, durationMs: WARMUP_MS, texts, send });
      let before: { cpu: Record<string, number>; main: number } | undefined;
      let after: typeof before;
      const sample = (): { cpu: Record<string, number>; main: number } => ({
        cpu: Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, readCpuSeconds(pid) ?? NaN])),
        main: threadCpuSeconds(pids.gateway).get(pids.gateway) ?? NaN,
      });
      const result = await runClosedLoop({ url, clients, durationMs: options.durationMs, texts, send, onWindowStart: () => (before = sample()), onWindowEnd: () => (after = sample()) });
      const done = result.completed_in_window;
      const per = (name: string): number => ((((after?.cpu[name] ?? NaN) - (before?.cpu[name] ?? NaN)) * US_PER_S) / done);
      figures.set(clients, {
        perSecond: result.throughput,
        meanBatch: result.mean_batch_size,
        failed: result.failed,
        gatewayUs: per('gateway'),
        gatewayMainUs: (((after?.main ?? NaN) - (before?.main ?? NaN)) * US_PER_S) / done,
        workerUs: per('worker'),
        redisUs: per('redis'),
        loadUs: per('load'),
      });
    }
  } finally {
    for (const role of roles.reverse()) await stopRole(role);
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
}

/** Run the figures and print one markdown row each. */
export async function benchGatewayCpu(options: GatewayCpuOptions): Promise<void> {
  const trees: [string, string][] = options.beforeRoot ? [['before', options.beforeRoot], ['after', ROOT]] : [['this tree', ROOT]];
  console.log(`# one-call path: gateway + worker (${MODEL}) + redis, ${options.durationMs / 1000} s per figure, node ${process.version}`);
  console.log('| clients | tree | round | req/s | mean batch | failed | gateway µs/req | gateway main thread | worker | redis | load client (not counted) |');
  console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (let round = 1; round <= options.rounds; round++) {
    const order = round % 2 === 1 ? trees : [...trees].reverse();
    for (const [label, root] of order) {
      const figures = await measureTree(root, options);
      for (const [clients, f] of figures) {
        console.log(
          `| ${clients} | ${label} | ${round} | ${f.perSecond.toFixed(0)} | ${f.meanBatch.toFixed(1)} | ${f.failed} | ${f.gatewayUs.toFixed(0)} | ${f.gatewayMainUs.toFixed(0)} | ` +
            `${f.workerUs.toFixed(0)} | ${f.redisUs.toFixed(0)} | ${f.loadUs.toFixed(0)} |`,
        );
      }
    }
  }
}
