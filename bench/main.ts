/**
 * `npm run bench -- --compare [--duration-s 10 --concurrency 1,32,256 --rounds 1]`: inferline (the `npm start`
 * topology) against a hand-built BullMQ queue and a naive in-handler server, with CPU per request per
 * process (bench/compare.ts).
 *
 * `npm run bench -- --instances [--duration-s 10]`: model instances in threads and lazy loading under a
 * memory budget: cold starts, 1 vs 2 instances, head of line, many models (bench/instances.ts).
 *
 * `npm run bench -- --redis-ops [--duration-s 10 --concurrency 32]`: Redis calls and Redis CPU per request, by
 * way in, counted from INFO commandstats (bench/redis-ops.ts).
 *
 * `npm run bench -- --cluster [--duration-s 10 --concurrency 32]`: glove-embed with one Redis against a
 * 3-master Redis Cluster with `partitions: 3`: texts/s and Redis, gateway and worker CPU per text (bench/cluster.ts).
 *
 * `npm run bench -- --worker-cpu [--duration-s 10 --batch-sizes 1,8,32 --rounds 2 --before <tree>]`: the worker
 * process alone (no HTTP, no load client), fed the gateway's stream entries: its CPU and Redis' per settled job
 * (bench/worker-cpu.ts).
 *
 * `npm run bench -- --gateway-cpu [--duration-s 10 --concurrency 64,256 --rounds 1 --before <tree>]`: the one-call
 * path through gateway + worker + Redis: CPU per request of each process, the gateway's main thread apart
 * (bench/gateway-cpu.ts).
 *
 * `npm run bench -- --version-memory [--model glove-embed --rounds 3]`: a version's memory through
 * load → warm up → unload (bench/version-memory.ts).
 * `npm run bench -- --group 100000 [--model glove-embed --workers 1 --chunk-size 1000]`: one
 * aggregation group of that many texts instead (bench/group.ts).
 *
 * `npm run bench [-- --model glove-embed --workers 1 --duration-s 10 --concurrency 1,32,256]`:
 * in-process throughput of the model at batch 1, 8 and 32, then end-to-end throughput through
 * gateway + Redis + worker processes, with p50/p99 latency, mean batch size and the share of time the
 * model was busy (from the workers' compute-time metrics). `--workers 1,2` measures each count (the
 * default for image models; 1 for text). Prints
 * figures; asserts nothing. Runs against its own private redis-server.
 *
 * Text models are fed Moby Dick paragraphs; image models the photos of `npm run test-data`.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadModelConfig } from '@inferline/shared';
import { freePort, startRedisServer } from '../packages/cli/src/redis-server.ts';
import { decodeImage } from '../packages/worker/src/pipelines/image.ts';
import { TEST_IMAGES_DIR } from '../test/harness/fetch-test-data.ts';
import { ROOT, startGatewayProcess, startWorkerProcess } from '../test/harness/processes.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { COMPARE_MODEL, runCompare } from './compare.ts';
import { benchVersionMemory } from './version-memory.ts';
import { benchEndToEnd } from './end-to-end.ts';
import { benchGroup } from './group.ts';
import { benchInProcess } from './in-process.ts';
import { benchInstances } from './instances.ts';
import { benchRedisOps } from './redis-ops.ts';
import { benchCluster } from './cluster.ts';
import { benchWorkerCpu } from './worker-cpu.ts';
import { benchGatewayCpu } from './gateway-cpu.ts';

const options = new Command()
  .option('--model <name>', 'model to measure', 'glove-embed')
  .option('--workers <list>', 'worker processes for the end-to-end runs, comma-separated (default 1 for text, 1,2 for images)')
  .option('--duration-s <s>', 'seconds per measurement', '10')
  .option('--concurrency <list>', 'concurrent clients, comma-separated (default 1,32,256 for text, 1,16 for images)')
  .option('--batch-sizes <list>', 'in-process batch sizes', '1,8,32')
  .option('--skip-in-process', 'only the end-to-end runs')
  .option('--group <n>', 'instead: one aggregation group of n texts, reduce mean (bench/group.ts)')
  .option('--chunk-size <n>', 'with --group: inputs per request', '1000')
  .option('--version-memory', 'instead: load and unload version 1 of --model a few times, printing tf.memory() and RSS (bench/version-memory.ts)')
  .option('--rounds <n>', 'with --version-memory: load/unload rounds (default 3); with --worker-cpu or --gateway-cpu: rounds per figure (default 1); with --compare: passes over the three systems, summary of their median ratios (default 1)')
  .option('--instances', 'instead: instance threads and lazy loading (bench/instances.ts)')
  .option('--sections <list>', 'with --instances: the sections to run, comma-separated (default all)')
  .option('--redis-ops', 'instead: Redis calls and Redis CPU per request, counted from INFO commandstats (bench/redis-ops.ts)')
  .option('--cluster', 'instead: one Redis vs a 3-master Redis Cluster with partitions: 3, glove-embed (bench/cluster.ts)')
  .option('--partitions <n>', 'with --cluster: partitions of glove-embed on the cluster', '3')
  .option('--worker-cpu', 'instead: the worker alone, fed stream entries: CPU µs per settled job of the worker and Redis (bench/worker-cpu.ts)')
  .option('--gateway-cpu', 'instead: the one-call path through gateway + worker + Redis, CPU µs per request of each process (bench/gateway-cpu.ts)')
  .option('--before <tree>', 'with --worker-cpu or --gateway-cpu: another checkout (node_modules, built models) to measure side by side')
  .option('--node-args <text>', 'with --worker-cpu (--gateway-cpu): extra node arguments of the worker (gateway) process, space-separated (say --cpu-prof)')
  .option('--compare', `instead: inferline vs a BullMQ baseline vs a naive server on ${COMPARE_MODEL} (bench/compare.ts)`)
  .parse()
  .opts<{
    model: string;
    workers?: string;
    durationS: string;
    concurrency?: string;
    batchSizes: string;
    skipInProcess?: boolean;
    group?: string;
    chunkSize: string;
    compare?: boolean;
    versionMemory?: boolean;
    instances?: boolean;
    sections?: string;
    redisOps?: boolean;
    cluster?: boolean;
    partitions: string;
    workerCpu?: boolean;
    gatewayCpu?: boolean;
    before?: string;
    nodeArgs?: string;
    rounds?: string;
  }>();

if (options.cluster) {
  await benchCluster({ durationMs: Number(options.durationS) * 1000, clients: Number((options.concurrency ?? '32').split(',')[0]), partitions: Number(options.partitions) });
} else if (options.workerCpu) {
  await benchWorkerCpu({
    durationMs: Number(options.durationS) * 1000,
    batchSizes: options.batchSizes.split(',').map(Number),
    rounds: Number(options.rounds ?? '1'),
    ...(options.before ? { beforeRoot: options.before } : {}),
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs.split(' ').filter((arg) => arg !== '') } : {}),
  });
} else if (options.gatewayCpu) {
  await benchGatewayCpu({
    durationMs: Number(options.durationS) * 1000,
    clients: (options.concurrency ?? '64,256').split(',').map(Number),
    rounds: Number(options.rounds ?? '1'),
    ...(options.before ? { beforeRoot: options.before } : {}),
    ...(options.nodeArgs ? { nodeArgs: options.nodeArgs.split(' ').filter((arg) => arg !== '') } : {}),
  });
} else if (options.redisOps) {
  await benchRedisOps({ durationMs: Number(options.durationS) * 1000, clients: Number((options.concurrency ?? '32').split(',')[0]) });
} else if (options.instances) {
  await benchInstances({ durationMs: Number(options.durationS) * 1000, ...(options.sections ? { sections: options.sections.split(',').map(Number) } : {}) });
} else if (options.versionMemory) {
  await benchVersionMemory({ repository: join(ROOT, 'models'), model: options.model, rounds: Number(options.rounds ?? '3') });
} else if (options.compare) {
  if (options.model !== COMPARE_MODEL) throw new Error(`--compare measures ${COMPARE_MODEL} only`);
  const durationS = Number(options.durationS);
  const concurrency = (options.concurrency ?? '1,32,256').split(',').map(Number);
  if (!(durationS > 0) || !concurrency.every((n) => Number.isInteger(n) && n > 0)) throw new Error('--duration-s takes a positive number, --concurrency positive integers');
  const rounds = Number(options.rounds ?? '1');
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a positive integer');
  await runCompare({ durationMs: durationS * 1000, concurrency, rounds });
} else if (options.group === undefined) {
  await benchModel();
} else {
  const count = Number(options.group);
  const chunkSize = Number(options.chunkSize);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(chunkSize) || chunkSize < 1) throw new Error('--group and --chunk-size take positive integers');
  await benchGroup({ count, model: options.model, workers: Number((options.workers ?? '1').split(',')[0]), chunkSize });
}

/** The model's in-process and end-to-end figures (the default bench). */
async function benchModel(): Promise<void> {
  const list = (text: string): number[] => text.split(',').map(Number);
  const durationMs = Number(options.durationS) * 1000;
  const repository = join(ROOT, 'models');
  const modelDir = join(repository, options.model);
  const config = await loadModelConfig(modelDir);
  const preprocess = config.preprocess;
  const isImage = preprocess?.type === 'image';

  // Request inputs (end-to-end) and model inputs (in-process) for the model's kind.
  let requestInputs: unknown[];
  let modelInputs: unknown[];
  let unit: string;
  if (preprocess?.type === 'image') {
    const files = (await readdir(TEST_IMAGES_DIR)).sort();
    if (files.length === 0) throw new Error(`no photos in ${TEST_IMAGES_DIR}: run npm run test-data`);
    const photos = await Promise.all(files.map((file) => readFile(join(TEST_IMAGES_DIR, file))));
    requestInputs = photos.map((bytes) => ({ b64: bytes.toString('base64') }));
    const t0 = performance.now();
    modelInputs = await Promise.all(photos.map((bytes) => decodeImage(bytes, preprocess)));
    console.log(`# ${options.model}: ${files.length} photos (${files.join(', ')}); decode + resize ${((performance.now() - t0) / files.length).toFixed(1)} ms per photo`);
    unit = 'images';
  } else {
    requestInputs = modelInputs = loadMobyDickParagraphs();
    console.log(`# ${options.model}: ${requestInputs.length} Moby Dick paragraphs`);
    unit = 'texts';
  }
  console.log(`# ${durationMs / 1000} s per figure, node ${process.version}`);

  if (!options.skipInProcess) {
    const rows = await benchInProcess({ modelDir, version: 1, batchSizes: list(options.batchSizes), inputs: modelInputs, durationMs });
    console.log(`\n## in-process forward pass (one core${isImage ? ', inputs already decoded' : ''})`);
    console.log(`| batch | ${unit}/s |\n| ---: | ---: |`);
    for (const row of rows) console.log(`| ${row.batchSize} | ${row.perSecond.toFixed(row.perSecond < 100 ? 2 : 0)} |`);
  }

  /** Sum of `inferline_compute_duration_seconds_sum` over the workers' /metrics, seconds. */
  async function computeSeconds(ports: readonly number[]): Promise<number> {
    let total = 0;
    for (const port of ports) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`inferline_compute_duration_seconds_sum{model="${options.model}"`));
      total += Number(line?.split(' ').at(-1) ?? 0);
    }
    return total;
  }

  const concurrency = list(options.concurrency ?? (isImage ? '1,16' : '1,32,256'));
  console.log(`\n## end-to-end: gateway + redis + N worker processes, load generator in this process`);
  console.log('| workers | clients | requests | req/s | p50 ms | p99 ms | mean batch | model busy | failed |');
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const workerCount of list(options.workers ?? (isImage ? '1,2' : '1'))) {
    const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-'));
    const redis = await startRedisServer({ dir, appendonly: false });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, LOG_LEVEL: 'warn', HOST: '127.0.0.1' };
    const gateway = await startGatewayProcess(env);
    const ports = await Promise.all(Array.from({ length: workerCount }, () => freePort()));
    const workers = await Promise.all(ports.map((port) => startWorkerProcess({ ...env, LOG_LEVEL: 'info', METRICS_PORT: String(port) }, [options.model])));
    try {
      for (const clients of concurrency) {
        const busyBefore = await computeSeconds(ports);
        const t0 = performance.now();
        const r = await benchEndToEnd({ url: gateway.url, model: options.model, inputs: requestInputs, concurrency: clients, durationMs });
        const busy = (await computeSeconds(ports)) - busyBefore;
        const share = busy / (((performance.now() - t0) / 1000) * workerCount);
        console.log(
          `| ${workerCount} | ${clients} | ${r.requests} | ${r.throughput.toFixed(r.throughput < 100 ? 2 : 0)} | ${r.p50_ms.toFixed(1)} | ${r.p99_ms.toFixed(1)} | ${r.mean_batch_size.toFixed(1)} | ${(share * 100).toFixed(0)} % | ${r.failed} |`,
        );
      }
    } finally {
      await Promise.all([gateway.stop(), ...workers.map((worker) => worker.stop())]);
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
}
