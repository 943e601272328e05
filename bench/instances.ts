import { readFile, readdir, rm, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelConfig } from '@inferline/shared';
import { freePort, startRedisServer } from '../packages/cli/src/redis-server.ts';
import { createLogger } from '../packages/shared/src/logger.ts';
import { decodeImage } from '../packages/worker/src/pipelines/image.ts';
import { warmupSizes } from '../packages/worker/src/repository/follower.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { InstancePool } from '../packages/worker/src/runtime/instance-pool.ts';
import { TEST_IMAGES_DIR } from '../test/harness/fetch-test-data.ts';
import { ROOT, startGatewayProcess, startWorkerProcess } from '../test/harness/processes.ts';
import { linkedRepository } from '../test/harness/repository.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { benchEndToEnd, type EndToEndResult } from './end-to-end.ts';

/**
 * `npm run bench -- --instances [--duration-s 10]`: what model instances in threads and lazy loading
 * buy (instance_group, MODEL_MEMORY_BUDGET_MB), in one run:
 * 1. cold start per model: load + warm-up of one instance, and of two at once;
 * 2. forward-pass throughput of glove-embed and coco-detect on 1 and 2 instances in one process (the
 *    instance pool fed back to back with decoded inputs: no queue);
 * 3. end-to-end throughput on one worker process with INSTANCE_COUNT 1 and 2;
 * 4. head of line: glove-embed's latency at 4 clients alone, and beside 4 clients keeping coco-detect
 *    busy on the same worker;
 * 5. many models: 10 versions (glove-embed linked under 10 names) on one worker under a budget that
 *    fits 3, clients picking a model at random: throughput, loads, evictions, peak RSS.
 * `--sections 4` runs only the listed sections. Prints figures; asserts nothing.
 */

const MB = 1024 * 1024;

async function folderBytes(dir: string): Promise<number> {
  const names = await readdir(dir);
  const sizes = await Promise.all(names.map(async (name) => (await stat(join(dir, name))).size));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Peak resident set size of a process (VmHWM in /proc/<pid>/status), bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const line = status.split('\n').find((l) => l.startsWith('VmHWM:'));
  return Number(line?.match(/(\d+)/)?.[1] ?? 0) * 1024;
}

/** A counter summed over the series of a Prometheus text exposition. */
function counterSum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

const row = (r: EndToEndResult): string => `${r.throughput.toFixed(r.throughput < 100 ? 1 : 0)} | ${r.p50_ms.toFixed(1)} | ${r.p99_ms.toFixed(1)} | ${r.mean_batch_size.toFixed(1)} | ${r.failed}`;

export async function benchInstances(options: { durationMs: number; sections?: readonly number[] }): Promise<void> {
  const { durationMs } = options;
  const run = (section: number): boolean => options.sections === undefined || options.sections.includes(section);
  const repository = join(ROOT, 'models');
  const backend = await initBackend();
  const logger = createLogger('bench', 'warn');
  const texts = loadMobyDickParagraphs();
  const photos = await Promise.all((await readdir(TEST_IMAGES_DIR)).sort().map((file) => readFile(join(TEST_IMAGES_DIR, file))));
  if (photos.length === 0) throw new Error(`no photos in ${TEST_IMAGES_DIR}: run npm run test-data`);
  const images = photos.map((bytes) => ({ b64: bytes.toString('base64') }));
  console.log(`# instances and lazy loading, ${backend} backend, ${durationMs / 1000} s per figure, node ${process.version}`);

  /** Run `body` against a private Redis, a gateway and one worker process with `env`. */
  async function withStack(env: Record<string, string>, models: string[], body: (url: string, worker: { pid: number; metrics: string }) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-'));
    const redis = await startRedisServer({ dir, appendonly: false });
    const metricsPort = await freePort();
    const common = { REDIS_URL: redis.url, LOG_LEVEL: 'warn', HOST: '127.0.0.1', ...env };
    const gateway = await startGatewayProcess(common);
    const worker = await startWorkerProcess({ ...common, LOG_LEVEL: 'info', METRICS_PORT: String(metricsPort) }, models);
    try {
      await body(gateway.url, { pid: worker.child.pid ?? 0, metrics: `http://127.0.0.1:${metricsPort}/metrics` });
    } finally {
      await Promise.all([gateway.stop(), worker.stop()]);
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }

  if (run(1)) {
    console.log('\n## 1. cold start: load + warm-up at every allowed batch size');
    console.log('| model | folder MB | 1 instance ms | 2 instances (at once) ms |\n| --- | ---: | ---: | ---: |');
    const names = (await readdir(repository)).sort();
    for (const name of names) {
      const dir = join(repository, name, '1');
      const built = await stat(dir).then(() => true, () => false);
      if (!built) continue;
      const config = await loadModelConfig(join(repository, name));
      const times: number[] = [];
      for (const count of [1, 2]) {
        const t0 = performance.now();
        const pool = await InstancePool.start({ config, versionDir: dir, version: 1, backend, count, warmupSizes: warmupSizes(config), logger });
        times.push(performance.now() - t0);
        await pool.dispose();
      }
      console.log(`| ${name} | ${((await folderBytes(dir)) / MB).toFixed(1)} | ${times[0]?.toFixed(0)} | ${times[1]?.toFixed(0)} |`);
    }
  }

  if (run(2)) {
    console.log('\n## 2. forward passes on N instances in one process (inputs already decoded; batches back to back, N at a time)');
    console.log('| model | batch | 1 instance /s | 2 instances /s | ratio |\n| --- | ---: | ---: | ---: | ---: |');
    for (const [name, batch] of [['glove-embed', 32], ['coco-detect', 8]] as const) {
      const config = await loadModelConfig(join(repository, name));
      const preprocess = config.preprocess;
      const inputs: unknown[] = preprocess?.type === 'image' ? await Promise.all(photos.map((bytes) => decodeImage(bytes, preprocess))) : texts;
      const batches = Array.from({ length: 16 }, (_, b) => Array.from({ length: batch }, (_, i) => inputs[(b * batch + i) % inputs.length]));
      const rates: number[] = [];
      for (const count of [1, 2]) {
        const pool = await InstancePool.start({ config, versionDir: join(repository, name, '1'), version: 1, backend, count, warmupSizes: warmupSizes(config), logger });
        let done = 0;
        const t0 = performance.now();
        const lane = async (offset: number): Promise<void> => {
          for (let i = offset; performance.now() - t0 < durationMs; i += count) {
            await pool.predict(batches[i % batches.length] as unknown[]);
            done += batch;
          }
        };
        await Promise.all(Array.from({ length: count }, (_, i) => lane(i)));
        rates.push((done * 1000) / (performance.now() - t0));
        await pool.dispose();
      }
      const [one = 0, two = 0] = rates;
      console.log(`| ${name} | ${batch} | ${one.toFixed(one < 100 ? 2 : 0)} | ${two.toFixed(two < 100 ? 2 : 0)} | ${(two / one).toFixed(2)}× |`);
    }
  }

  if (run(3)) {
    console.log('\n## 3. end-to-end on one worker process: gateway + redis + worker, load generator in this process');
    console.log('| model | clients | instances | req/s | p50 ms | p99 ms | mean batch | failed |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const [name, clients, inputs] of [['glove-embed', 64, texts], ['coco-detect', 16, images]] as const) {
      for (const count of [1, 2]) {
        await withStack({ MODEL_REPOSITORY: repository, INSTANCE_COUNT: String(count) }, [name], async (url) => {
          const r = await benchEndToEnd({ url, model: name, inputs, concurrency: clients, durationMs });
          console.log(`| ${name} | ${clients} | ${count} | ${row(r)} |`);
        });
      }
    }
  }

  if (run(4)) {
    console.log('\n## 4. head of line: glove-embed at 4 clients, alone and beside 4 clients on coco-detect, same worker (one instance each)');
    console.log('| glove-embed | req/s | p50 ms | p99 ms | mean batch | failed |\n| --- | ---: | ---: | ---: | ---: | ---: |');
    await withStack({ MODEL_REPOSITORY: repository, INSTANCE_COUNT: '1' }, ['glove-embed', 'coco-detect'], async (url) => {
      const alone = await benchEndToEnd({ url, model: 'glove-embed', inputs: texts, concurrency: 4, durationMs });
      console.log(`| alone | ${row(alone)} |`);
      const [beside, slow] = await Promise.all([
        benchEndToEnd({ url, model: 'glove-embed', inputs: texts, concurrency: 4, durationMs }),
        benchEndToEnd({ url, model: 'coco-detect', inputs: images, concurrency: 4, durationMs }),
      ]);
      console.log(`| beside coco-detect (${slow.throughput.toFixed(1)} images/s, batch ${slow.mean_batch_size.toFixed(1)}) | ${row(beside)} |`);
      console.log(`\np99 beside ÷ p99 alone: ${(beside.p99_ms / alone.p99_ms).toFixed(2)}×`);
    });
  }

  if (run(5)) {
    console.log('\n## 5. many models: 10 versions on one worker under a budget that fits 3 (each counted as its 19.5 MB folder + INSTANCE_OVERHEAD_MB 80), 8 clients, each request to a random model');
    const many = Array.from({ length: 10 }, (_, i) => `text-${i}`);
    const manyRepository = await linkedRepository(many.map((name) => ({ name, from: 'glove-embed', fields: { instance_group: { count: 1 } } })));
    const versionBytes = await folderBytes(join(repository, 'glove-embed', '1'));
    const overheadMb = 80;
    const budgetMb = Math.ceil((3 * (versionBytes + overheadMb * MB)) / MB) + 1;
    try {
      await withStack({ MODEL_REPOSITORY: manyRepository, MODEL_MEMORY_BUDGET_MB: String(budgetMb), INSTANCE_OVERHEAD_MB: String(overheadMb) }, [], async (url, worker) => {
        const idleRss = await peakRss(worker.pid);
        const r = await benchEndToEnd({ url, model: () => many[Math.floor(Math.random() * many.length)] as string, inputs: texts, concurrency: 8, durationMs: durationMs * 2 });
        const metrics = await (await fetch(worker.metrics)).text();
        const peak = await peakRss(worker.pid);
        console.log('| budget MB | req/s | p50 ms | p99 ms | mean batch | failed | loads | evictions | peak RSS MB | peak RSS − budget MB | RSS before any load MB |');
        console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
        console.log(
          `| ${budgetMb} | ${row(r)} | ${counterSum(metrics, 'inferline_model_loads_total')} | ${counterSum(metrics, 'inferline_model_evictions_total')} | ${(peak / MB).toFixed(0)} | ${((peak - budgetMb * MB) / MB).toFixed(0)} | ${(idleRss / MB).toFixed(0)} |`,
        );
      });
    } finally {
      await rm(manyRepository, { recursive: true, force: true });
    }
  }
}
