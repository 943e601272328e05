import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GroupView } from '@inferline/shared';
import { GroupsClient } from '../packages/cli/src/groups-client.ts';
import { startRedisServer } from '../packages/cli/src/redis-server.ts';
import { ROOT, startAggregatorProcess, startGatewayProcess, startWorkerProcess, type RoleProcess } from '../test/harness/processes.ts';
import { loadMobyDickParagraphs } from './corpus.ts';

/** Options of {@link benchGroup}. */
export interface GroupBenchOptions {
  /** Members of the group (Moby Dick paragraphs, cycled). */
  count: number;
  model: string;
  /** Worker processes. */
  workers: number;
  /** Inputs per `POST /v1/groups/:id/inputs`. */
  chunkSize: number;
}

/** How often the RSS of the watched processes is sampled, ms. */
const RSS_SAMPLE_MS = 100;
/** How often a progress line goes to stderr during the run, ms. */
const PROGRESS_LOG_MS = 5_000;

/** `VmRSS`, `VmHWM`, ... of `/proc/<pid>/status`, MB; undefined when the process or field is gone. */
async function procStatusMb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) / 1024 : undefined;
}

/**
 * Peak RSS of a process from now on: VmRSS sampled every {@link RSS_SAMPLE_MS}, and VmHWM after it was
 * reset to the current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0), which also catches spikes
 * between samples; the larger of the two.
 */
class RssWatch {
  readonly name: string;
  readonly pid: number;
  idleMb = 0;
  #sampledPeakMb = 0;
  #hwmReset = false;

  constructor(name: string, pid: number) {
    this.name = name;
    this.pid = pid;
  }

  async start(): Promise<void> {
    this.idleMb = (await procStatusMb(this.pid, 'VmRSS')) ?? 0;
    this.#sampledPeakMb = this.idleMb;
    this.#hwmReset = await writeFile(`/proc/${this.pid}/clear_refs`, '5').then(() => true, () => false);
  }

  async sample(): Promise<void> {
    this.#sampledPeakMb = Math.max(this.#sampledPeakMb, (await procStatusMb(this.pid, 'VmRSS')) ?? 0);
  }

  async peakMb(): Promise<number> {
    await this.sample();
    const hwm = this.#hwmReset ? ((await procStatusMb(this.pid, 'VmHWM')) ?? 0) : 0;
    return Math.max(this.#sampledPeakMb, hwm);
  }
}

/** `count` paragraphs, cycling through the book, produced one at a time. */
async function* paragraphs(count: number): AsyncGenerator<string> {
  const book = loadMobyDickParagraphs();
  for (let i = 0; i < count; i++) {
    yield book[i % book.length] ?? '';
    // Let the event loop breathe between chunks (the generator is otherwise synchronous in effect).
    if (i % 1_000 === 999) await new Promise(setImmediate);
  }
}

const mb = (value: number): string => value.toFixed(1);
const seconds = (ms: number): string => (ms / 1000).toFixed(2);

/**
 * `npm run bench -- --group N`: one aggregation group of N texts with reduce `mean`, fed in chunks by
 * {@link GroupsClient.runGroup} from an async iterable, through gateway + Redis + worker(s) +
 * aggregator processes of this benchmark's own (on a private redis-server). Prints the time to accept
 * (create → close returned), the time to complete (→ succeeded), the throughput, the aggregator's own
 * reduce time (from its log), the peak RSS growth of the gateway, the aggregator and Redis over their
 * idle RSS, and checks the mean vector. Asserts nothing but the vector (throws when it is wrong).
 */
export async function benchGroup(options: GroupBenchOptions): Promise<void> {
  const { count, model, workers: workerCount, chunkSize } = options;
  console.log(`# group bench: ${count.toLocaleString('en-US')} Moby Dick paragraphs (cycled), reduce mean, ${model}, ${workerCount} worker process(es), chunks of ${chunkSize}, node ${process.version}`);

  const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-group-'));
  const redis = await startRedisServer({ dir, appendonly: false });
  const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: join(ROOT, 'models'), LOG_LEVEL: 'warn', HOST: '127.0.0.1' };
  const gateway = await startGatewayProcess(env);
  const started: RoleProcess[] = [gateway];
  const client = new GroupsClient(gateway.url);
  try {
    // Each process is recorded as soon as it is ready, so a failed start stops the others.
    const ready = async <T extends RoleProcess>(starting: Promise<T>): Promise<T> => {
      const role = await starting;
      started.push(role);
      return role;
    };
    const [aggregator] = await Promise.all([
      ready(startAggregatorProcess({ ...env, LOG_LEVEL: 'info' })),
      ...Array.from({ length: workerCount }, () => ready(startWorkerProcess({ ...env, LOG_LEVEL: 'info' }, [model]))),
    ]);
    if (gateway.child.pid === undefined || aggregator.child.pid === undefined || redis.process.pid === undefined) {
      throw new Error('a process of the bench has no pid');
    }

    const watches = [new RssWatch('gateway', gateway.child.pid), new RssWatch('aggregator', aggregator.child.pid), new RssWatch('redis-server', redis.process.pid)];
    await Promise.all(watches.map((watch) => watch.start()));
    const sampler = setInterval(() => void Promise.all(watches.map((watch) => watch.sample())), RSS_SAMPLE_MS);

    let acceptedAt = 0;
    let lastLog = 0;
    const t0 = performance.now();
    let view: GroupView;
    try {
      view = await client.runGroup({
        model,
        reduce: 'mean',
        inputs: paragraphs(count),
        chunkSize,
        onClosed: () => (acceptedAt = performance.now()),
        onProgress: (v) => {
          const now = performance.now();
          if (now - lastLog < PROGRESS_LOG_MS) return;
          lastLog = now;
          process.stderr.write(`  ${seconds(now - t0)} s: ${v.status}, ${v.size} accepted, ${v.completed} completed, ${v.failed} failed\n`);
        },
      });
    } finally {
      clearInterval(sampler);
    }
    const doneAt = performance.now();
    const peaks = await Promise.all(watches.map((watch) => watch.peakMb()));

    if (view.status !== 'succeeded') throw new Error(`group ${view.id} ${view.status}: ${JSON.stringify(view.error)}`);
    const vector = Object.values((view.output ?? {}) as Record<string, unknown>)[0];
    const finite = Array.isArray(vector) ? vector.filter((x) => typeof x === 'number' && Number.isFinite(x)).length : 0;
    const vectorOk = Array.isArray(vector) && vector.length === 100 && finite === 100;
    const reducedLine = aggregator.lines.find((line) => line.includes('"msg":"group reduced"') && line.includes(view.id));
    const reduceMs = reducedLine ? (JSON.parse(reducedLine) as { ms?: number }).ms : undefined;

    console.log(`\n## one group of ${count.toLocaleString('en-US')} (${view.completed} completed, ${view.failed} failed)`);
    console.log('| figure | value |\n| --- | ---: |');
    console.log(`| accept (create → close returned) | ${seconds(acceptedAt - t0)} s |`);
    console.log(`| complete (create → succeeded) | ${seconds(doneAt - t0)} s |`);
    console.log(`| throughput | ${Math.round(count / ((doneAt - t0) / 1000)).toLocaleString('en-US')} members/s |`);
    console.log(`| reduce (aggregator, its log) | ${reduceMs === undefined ? '?' : `${reduceMs} ms`} |`);
    console.log(`| mean vector | ${Array.isArray(vector) ? vector.length : 'no'} values, ${finite} finite: ${vectorOk ? 'ok' : 'WRONG'} |`);
    console.log('\n| process | idle RSS MB | peak RSS MB | growth MB |\n| --- | ---: | ---: | ---: |');
    watches.forEach((watch, i) => {
      const peak = peaks[i] ?? 0;
      console.log(`| ${watch.name} | ${mb(watch.idleMb)} | ${mb(peak)} | ${mb(peak - watch.idleMb)} |`);
    });
    if (!vectorOk) throw new Error(`the mean is not 100 finite values: ${JSON.stringify(view.output).slice(0, 200)}`);
  } finally {
    await client.disconnect();
    await Promise.all(started.map((role) => role.stop()));
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
