/**
 * `npm run bench [-- --model glove-embed --workers 1 --duration-s 10]`: in-process throughput of the
 * model at batch 1, 8 and 32, then end-to-end throughput through gateway + Redis + worker processes at
 * 1, 32 and 256 concurrent clients, with p50/p99 latency and mean batch size. Prints figures; asserts
 * nothing. Runs against its own private redis-server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { startRedisServer } from '../packages/cli/src/redis-server.ts';
import { ROOT, startGatewayProcess, startWorkerProcess } from '../test/harness/processes.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { benchEndToEnd } from './end-to-end.ts';
import { benchInProcess } from './in-process.ts';

const options = new Command()
  .option('--model <name>', 'model to measure', 'glove-embed')
  .option('--workers <n>', 'worker processes for the end-to-end runs', '1')
  .option('--duration-s <s>', 'seconds per measurement', '10')
  .option('--concurrency <list>', 'concurrent clients, comma-separated', '1,32,256')
  .option('--skip-in-process', 'only the end-to-end runs')
  .parse()
  .opts<{ model: string; workers: string; durationS: string; concurrency: string; skipInProcess?: boolean }>();

const durationMs = Number(options.durationS) * 1000;
const texts = loadMobyDickParagraphs();
const repository = join(ROOT, 'models');
console.log(`# ${options.model}: ${texts.length} Moby Dick paragraphs, ${durationMs / 1000} s per figure, node ${process.version}`);

if (!options.skipInProcess) {
  const rows = await benchInProcess({ modelDir: join(repository, options.model), version: 1, batchSizes: [1, 8, 32], texts, durationMs });
  console.log('\n## in-process (one core)');
  console.log('| batch | texts/s |\n| ---: | ---: |');
  for (const row of rows) console.log(`| ${row.batchSize} | ${row.textsPerSecond.toFixed(0)} |`);
}

const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-'));
const redis = await startRedisServer({ dir, appendonly: false });
const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository, LOG_LEVEL: 'warn' };
const gateway = await startGatewayProcess(env);
const workers = await Promise.all(Array.from({ length: Number(options.workers) }, () => startWorkerProcess({ ...env, LOG_LEVEL: 'info' }, [options.model])));
try {
  console.log(`\n## end-to-end: gateway + redis + ${options.workers} worker process(es), load generator in this process`);
  console.log('| clients | requests | req/s | p50 ms | p99 ms | mean batch | failed |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const concurrency of options.concurrency.split(',').map(Number)) {
    const r = await benchEndToEnd({ url: gateway.url, model: options.model, texts, concurrency, durationMs });
    console.log(`| ${r.concurrency} | ${r.requests} | ${r.throughput.toFixed(0)} | ${r.p50_ms.toFixed(2)} | ${r.p99_ms.toFixed(2)} | ${r.mean_batch_size.toFixed(1)} | ${r.failed} |`);
  }
} finally {
  await Promise.all([gateway.stop(), ...workers.map((worker) => worker.stop())]);
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
