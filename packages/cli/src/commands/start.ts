import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, InferlineError, loadSettings, type Logger } from '@inferline/shared';
import { buildModels } from '../models/build-models.ts';
import { startRedisServer, type RedisServer } from '../redis-server.ts';
import { aborted, FORCED_EXIT_CODE, trapStopSignals } from '../signals.ts';
import { SupervisedChild } from '../supervisor.ts';
import type { GatewayReadyMessage } from './gateway.ts';

/** Time children get to finish after SIGTERM before SIGKILL, ms. */
export const STOP_GRACE_MS = 10_000;

/** The module children are forked from: this command-line program. */
const MAIN_PATH = fileURLToPath(new URL('../main.ts', import.meta.url));

/**
 * `inferline start`: everything on one machine. Builds missing models, starts a private redis-server
 * under `<state_dir>/redis` when `REDIS_URL` is unset, forks one gateway, `WORKERS` workers (0 = one,
 * each running `INSTANCE_COUNT` instance threads per model version, by default one per core) and one aggregator (the reducers of aggregation groups), and restarts any that dies; it
 * prints "inferline is running" once the gateway's /readyz answers 200 (the models are loaded). The
 * first SIGINT/SIGTERM stops the children (SIGTERM, SIGKILL after {@link STOP_GRACE_MS}) and then the
 * private Redis; a second one kills everything at once.
 * @throws InferlineError when a step of the start fails (models, Redis, gateway not listening).
 */
export async function runStart(): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger('cli');
  const children: SupervisedChild[] = [];
  let redis: RedisServer | undefined;
  const signal = trapStopSignals({
    onStop: (cause) => logger.info({ cause, grace_ms: STOP_GRACE_MS }, 'stopping (press Ctrl-C again to force)'),
    onForce: () => {
      logger.warn('forced stop: killing every child');
      for (const child of children) child.kill();
      redis?.process.kill('SIGTERM');
      process.exit(FORCED_EXIT_CODE);
    },
  });

  try {
    // Building can take a while; a stop request ends it (the process exits after the finally).
    await Promise.race([
      buildModels({ repository: settings.model_repository, cacheDir: settings.cache_dir, progress: true, logger }),
      aborted(signal),
    ]);
    if (signal.aborted) return;

    let redisUrl = settings.redis_url;
    if (redisUrl === undefined) {
      redis = await startRedisServer({ dir: join(settings.state_dir, 'redis') });
      redisUrl = redis.url;
      logger.info({ url: redisUrl, dir: join(settings.state_dir, 'redis'), pid: redis.process.pid }, 'private redis-server started');
    }
    if (signal.aborted) return;

    // One worker process whose instances use every core (instance threads), unless told otherwise.
    const instanceCount = process.env.INSTANCE_COUNT ?? String(availableParallelism());
    const common = { modulePath: MAIN_PATH, execArgv: childExecArgv(), env: { ...process.env, REDIS_URL: redisUrl, INSTANCE_COUNT: instanceCount }, restart: true, logger };
    // The gateway is restarted only once it has listened: a gateway that cannot start (port in use) is fatal.
    const gateway = new SupervisedChild({ ...common, execArgv: [...common.execArgv, ...GATEWAY_NODE_FLAGS], name: 'gateway', args: ['gateway'], restart: false });
    children.push(gateway);
    const ready = gatewayReady(gateway);
    gateway.start();
    const workerCount = settings.workers || 1;
    for (let i = 1; i <= workerCount; i++) {
      const metricsPort = settings.metrics_port > 0 ? String(settings.metrics_port + i - 1) : '0';
      const worker = new SupervisedChild({ ...common, env: { ...common.env, METRICS_PORT: metricsPort }, name: `worker-${i}`, args: ['worker'] });
      children.push(worker);
      worker.start();
    }
    const aggregator = new SupervisedChild({ ...common, name: 'aggregator', args: ['aggregator'] });
    children.push(aggregator);
    aggregator.start();

    const listening = await Promise.race([ready, aborted(signal)]);
    if (listening === undefined) return;
    const { address, grpcAddress } = listening;
    gateway.restart = true;
    // "running" only once the gateway is ready: Redis answers and every model has a version AVAILABLE.
    if (!(await gatewayServing(address, signal, logger))) return;
    const port = new URL(address).port;
    process.stdout.write(
      [
        '',
        `inferline is running: http://localhost:${port}`,
        ...(grpcAddress === undefined ? [] : [`  grpc:    localhost:${grpcAddress.slice(grpcAddress.lastIndexOf(':') + 1)} (OIP v2 and TF Serving services)`]),
        `  redis:   ${redis ? `${redisUrl} (private redis-server, data in ${join(settings.state_dir, 'redis')})` : `${redisUrl} (REDIS_URL)`}`,
        `  workers: ${workerCount} × ${instanceCount} instance(s) per model version (INSTANCE_COUNT), models from ${settings.model_repository}; one aggregator`,
        '  stop:    Ctrl-C',
        '',
        '',
      ].join('\n'),
    );
    await aborted(signal);
  } finally {
    await Promise.all(children.map((child) => child.stop(STOP_GRACE_MS)));
    if (redis) {
      await redis.stop();
      logger.info('private redis-server stopped');
    }
  }
}

/** How often `inferline start` asks the gateway's /readyz while the workers load their models, ms. */
const READY_POLL_MS = 250;

/**
 * Poll the gateway's `/readyz` until it answers 200 (every model of the repository has a version
 * AVAILABLE on a live worker), logging what it waits for whenever that changes.
 * @returns true once ready, false when `signal` aborted first.
 */
async function gatewayServing(address: string, signal: AbortSignal, logger: Logger): Promise<boolean> {
  let last = '';
  while (!signal.aborted) {
    const answer = await fetch(`${address}/readyz`, { signal }).then(
      async (response) => ({ ok: response.ok, body: await response.text() }),
      (error: unknown) => ({ ok: false, body: error instanceof Error ? error.message : String(error) }),
    );
    if (answer.ok) return true;
    if (answer.body !== last) {
      last = answer.body;
      logger.info({ readyz: answer.body }, 'waiting for the workers to load the models');
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  return false;
}

/**
 * Resolve with the gateway's addresses (HTTP, and gRPC unless off) on its first `gateway-ready` message.
 * @throws InferlineError `unavailable` when it exits before listening (its own log says why).
 */
function gatewayReady(gateway: SupervisedChild): Promise<{ address: string; grpcAddress: string | undefined }> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown): void => {
      const ready = message as Partial<GatewayReadyMessage> | null;
      if (ready?.type !== 'gateway-ready' || typeof ready.address !== 'string') return;
      gateway.off('exit', onExit);
      gateway.off('message', onMessage);
      resolve({ address: ready.address, grpcAddress: ready.grpcAddress });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      gateway.off('message', onMessage);
      reject(new InferlineError('unavailable', `the gateway exited before listening (${signal ?? `code ${code}`}); its log above says why`));
    };
    gateway.on('message', onMessage);
    gateway.once('exit', onExit);
  });
}

/**
 * Node flags of the gateway process: a young generation of up to 3 × 64 MiB instead of 3 × 16 MiB
 * (https://nodejs.org/docs/latest-v20.x/api/cli.html#--max-semi-space-sizesize-in-mib). The gateway
 * allocates a few KiB per request that die young; the larger semi-spaces make scavenges rarer, and cut
 * its CPU per request by about a sixth at 256 clients (`npm run bench -- --gateway-cpu`). The
 * container manifests set the same through NODE_OPTIONS.
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/**
 * Node flags for the children: the parent's (they carry tsx's loader when run through `tsx` or
 * `node --import tsx`), plus tsx's loader when the parent registered it through its API instead.
 */
function childExecArgv(): string[] {
  const flags = process.execArgv;
  return flags.some((flag) => flag.includes('tsx')) ? flags : [...flags, '--import', import.meta.resolve('tsx')];
}
