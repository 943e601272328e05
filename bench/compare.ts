/**
 * `npm run bench -- --compare [--duration-s 10 --concurrency 1,32,256]`: inferline against the queue
 * people build by hand, in one run, on this machine.
 *
 * 1. The model alone: glove-embed's in-process throughput at batch 1, 8 and 32 (bench/in-process.ts)
 *    and its own CPU cost per request, µs = 1e6 / texts-per-second on one core.
 * 2. Three systems, one at a time (each stopped before the next starts, so the cores are free), each
 *    driven by the same closed-loop client (bench/closed-loop.ts: one undici Pool, one keep-alive
 *    socket per client, Moby Dick paragraphs round-robin) for `--duration-s` per figure at each
 *    `--concurrency`:
 *    - `inferline`: the README topology, `inferline start` (bench/inferline-topology.ts), through its
 *      job API three ways (bench/request-paths.ts): `two-call` (POST, then GET ?wait=), `one-call`
 *      (POST with `Prefer: wait=30`, falling back to GET ?wait= on a 202), and `bulk-64` (the bulk
 *      form: 64 texts per POST with `Prefer: wait=30`; its rows count texts, not requests);
 *    - `bullmq`: a fastify gateway adding one BullMQ job per request and waiting with
 *      `waitUntilFinished`, and one BullMQ worker process per core running one forward pass per job
 *      (bench/baseline/), over its own redis-server;
 *    - `naive`: one fastify process running the forward pass in the request handler, no queue.
 * 3. Per figure: req/s, p50/p99 latency, mean batch size (inferline), 429 retries, failures, and the
 *    CPU each process used per completed request (µs, from /proc/<pid>/stat sampled at the edges of
 *    the window, bench/proc-cpu.ts), their total, and "serving" = total − the model's own cost at the
 *    figure's mean batch size (interpolated between the in-process batch sizes; batch 1 for the
 *    baselines). Before its load, each system's idle CPU over IDLE_WINDOW_MS (after IDLE_SETTLE_MS), % of a core.
 * 4. A summary: inferline's throughput divided by BullMQ's and by naive's at each concurrency; the
 *    CPU per request of the BullMQ service divided by the one-call path's (all processes, µs); and
 *    the p99 latency of both. On a machine where the load generator shares the cores, throughput is
 *    bounded by (processes' CPU + the load generator's) per request, so the throughput ratio stays
 *    below the CPU ratio; with the load generator elsewhere it would approach it.
 *
 * `--rounds N` (default 1): the three systems are measured N times in turn (rounds 2..N start each
 * system again, let it settle as long as round 1's idle phase, warm it up and measure it), and the summary gives each round's
 * ratios and their median. The machine's speed drifts by up to 2× over minutes; a ratio read from one
 * pass can catch one system in a slow spell and the other in a fast one, and the median of rounds
 * that each measure all three within a few minutes is the steadier figure.
 *
 * Prints markdown tables; asserts nothing. The load generator's own CPU is shown, not counted.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../test/harness/processes.ts';
import { startBullmqBaseline, startNaiveBaseline } from './baseline/start-baselines.ts';
import { runClosedLoop, type ClosedLoopResult, type SendRequest } from './closed-loop.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { median } from './median.ts';
import { benchInProcess } from './in-process.ts';
import { startInferlineTopology } from './inferline-topology.ts';
import { modelCostAt, modelCostPoints, type ModelCostPoint } from './model-cost.ts';
import { cpuSecondsBetween, sampleCpu, type CpuSample, type NamedProcess } from './proc-cpu.ts';
import { BULK_SIZE, inferlineBulkRequest, inferlineRequest, predictRequest } from './request-paths.ts';
import type { SystemUnderTest } from './system-under-test.ts';

/** Options of {@link runCompare}. */
export interface CompareOptions {
  /** Measured window of each figure (and of each in-process batch size), ms. */
  durationMs: number;
  /** Concurrent clients of the figures, in order. */
  concurrency: number[];
  /** Passes over the three systems (≥ 1); the summary gives the median of the rounds' ratios. */
  rounds?: number;
}

/** The model every system serves (the baselines are written for a text embedding). */
export const COMPARE_MODEL = 'glove-embed';
/** Batch sizes of the in-process figures (the points the model's cost is interpolated between). */
const IN_PROCESS_BATCH_SIZES = [1, 8, 32];
/**
 * Once a system is ready, it is left alone this long before its idle CPU is measured, ms: 20 s still
 * caught start-up work (tsx compiling modules, first repository scans, GC of the start-up heap),
 * which made an idle stack read 2-5 % of a core where it settles below 1 %.
 */
const IDLE_SETTLE_MS = 60_000;
/** Then its idle CPU is measured over this window, before any load, ms. */
const IDLE_WINDOW_MS = 30_000;
/** Unmeasured load after the idle window (JIT, connection pools), ms, at WARMUP_CLIENTS clients. */
const WARMUP_MS = 2_000;
const WARMUP_CLIENTS = 32;
/** Name of this process (the load generator) in the CPU tables. */
const LOAD_GENERATOR = 'load gen';
const PERCENT = 100;
const US_PER_S = 1e6;
const MS_PER_S = 1e3;

/** A system to measure: how to start it and its request paths (name → request). */
interface SystemPlan {
  start(): Promise<SystemUnderTest>;
  paths: [string, SendRequest][];
}

/** One measured figure. */
interface Figure {
  system: string;
  path: string;
  /** 1-based pass over the systems. */
  round: number;
  result: ClosedLoopResult;
  /** CPU of all the system's processes per completed request, µs (the load generator's not included). */
  cpuUs: number;
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const rate = (value: number): string => fixed(value, value < PERCENT ? 1 : 0);

function printInProcess(points: readonly ModelCostPoint[]): void {
  console.log(`\n## ${COMPARE_MODEL} in-process forward pass (one core, this process)`);
  console.log('| batch | texts/s | model CPU µs/request |\n| ---: | ---: | ---: |');
  for (const point of points) console.log(`| ${point.batchSize} | ${rate(US_PER_S / point.us_per_request)} | ${fixed(point.us_per_request, 1)} |`);
}

/**
 * Wait IDLE_SETTLE_MS, sample every process, wait `IDLE_WINDOW_MS` with no load, and print the % of a
 * core each used.
 */
async function printIdle(system: SystemUnderTest): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
  const before = sampleCpu(system.processes);
  await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS));
  const after = sampleCpu(system.processes);
  const wallS = (after.at_ms - before.at_ms) / MS_PER_S;
  const used = cpuSecondsBetween(before, after);
  const names = system.processes.map((p) => p.name);
  const percent = (seconds: number): string => `${fixed((seconds / wallS) * PERCENT, 2)} %`;
  const total = [...used.values()].reduce((sum, s) => sum + s, 0);
  console.log(`\n### ${system.name}: idle CPU over ${wallS.toFixed(1)} s, % of one core`);
  console.log(`| ${names.join(' | ')} | total |\n|${' ---: |'.repeat(names.length + 1)}`);
  console.log(`| ${names.map((name) => percent(used.get(name) ?? NaN)).join(' | ')} | ${percent(total)} |`);
}

/** Run one figure with CPU samples at the window's edges; print its row. */
async function measure(system: SystemUnderTest, path: string, send: SendRequest, clients: number, round: number, options: CompareOptions, costs: readonly ModelCostPoint[]): Promise<Figure> {
  const tracked: NamedProcess[] = [...system.processes, { name: LOAD_GENERATOR, pid: process.pid }];
  let before: CpuSample | undefined;
  let after: CpuSample | undefined;
  const result = await runClosedLoop({
    url: system.url,
    clients,
    durationMs: options.durationMs,
    texts: loadMobyDickParagraphs(),
    send,
    onWindowStart: () => (before = sampleCpu(tracked)),
    onWindowEnd: () => (after = sampleCpu(tracked)),
  });
  const used = cpuSecondsBetween(before ?? sampleCpu(tracked), after ?? sampleCpu(tracked));
  const perRequest = (name: string): number => ((used.get(name) ?? NaN) * US_PER_S) / result.completed_in_window;
  const names = system.processes.map((p) => p.name);
  const total = names.reduce((sum, name) => sum + perRequest(name), 0);
  const model = modelCostAt(costs, Number.isFinite(result.mean_batch_size) ? result.mean_batch_size : 1);
  console.log(
    `| ${path} | ${clients} | ${rate(result.throughput)} | ${fixed(result.p50_ms, 1)} | ${fixed(result.p99_ms, 1)} | ${fixed(result.mean_batch_size, 1)} | ${result.retried} | ${result.failed} | ` +
      `${names.map((name) => fixed(perRequest(name), 0)).join(' | ')} | ${fixed(total, 0)} | ${fixed(model, 0)} | ${fixed(total - model, 0)} | ${fixed(perRequest(LOAD_GENERATOR), 0)} |`,
  );
  return { system: system.name, path, round, result, cpuUs: total };
}

/**
 * Start a system, print its idle CPU (in round 1; later rounds wait as long, IDLE_SETTLE_MS +
 * IDLE_WINDOW_MS, without measuring), warm it up, run every (clients, path) figure, stop it.
 */
async function measureSystem(plan: SystemPlan, round: number, options: CompareOptions, costs: readonly ModelCostPoint[]): Promise<Figure[]> {
  const system = await plan.start();
  const figures: Figure[] = [];
  try {
    console.log(`\n## ${system.name}${round > 1 ? `, round ${round}` : ''}: ${system.processes.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);
    // Every round's load starts as long after the start: a process's start-up tail (lazy compilation,
    // the GC of its start-up heap) otherwise lands on the first figure of rounds 2+ (one client, whose
    // latency it doubled while round 1's, measured after the idle phase, was clean).
    if (round === 1) await printIdle(system);
    else await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS + IDLE_WINDOW_MS));
    const [, warmupSend] = plan.paths[0] as [string, SendRequest];
    await runClosedLoop({ url: system.url, clients: WARMUP_CLIENTS, durationMs: WARMUP_MS, texts: loadMobyDickParagraphs(), send: warmupSend });

    const names = system.processes.map((p) => p.name);
    console.log(`\n### ${system.name}: load (CPU columns: µs of CPU per completed request, per process)`);
    console.log(`| path | clients | req/s | p50 ms | p99 ms | mean batch | 429 retried | failed | ${names.join(' | ')} | total | model | serving | ${LOAD_GENERATOR} (not in total) |`);
    console.log(`|${' --- |'}${' ---: |'.repeat(names.length + 11)}`);
    for (const clients of options.concurrency) {
      for (const [path, send] of plan.paths) figures.push(await measure(system, path, send, clients, round, options, costs));
    }
  } finally {
    await system.stop();
  }
  return figures;
}

/** The summary's first columns are ratios (printed `1.23×`), the rest latencies in ms. */
const SUMMARY_RATIO_COLUMNS = 5;

/**
 * Per round and, over several rounds, their medians: throughput ratios, the BullMQ service's CPU per
 * request divided by the one-call path's, and both p99 latencies (ms).
 */
function printSummary(figures: readonly Figure[], concurrency: readonly number[], rounds: number): void {
  const figure = (system: string, path: string, clients: number, round: number): Figure | undefined =>
    figures.find((f) => f.system === system && f.path === path && f.result.clients === clients && f.round === round);
  const throughput = (system: string, path: string, clients: number, round: number): number => figure(system, path, clients, round)?.result.throughput ?? NaN;
  const ratios = (clients: number, round: number): number[] => {
    const oneCall = figure('inferline', 'one-call', clients, round);
    const bullmq = figure('bullmq', 'predict', clients, round);
    const oneCallRate = oneCall?.result.throughput ?? NaN;
    const bullmqRate = bullmq?.result.throughput ?? NaN;
    return [
      oneCallRate / bullmqRate,
      throughput('inferline', 'two-call', clients, round) / bullmqRate,
      oneCallRate / throughput('naive', 'predict', clients, round),
      throughput('inferline', `bulk-${BULK_SIZE}`, clients, round) / bullmqRate,
      (bullmq?.cpuUs ?? NaN) / (oneCall?.cpuUs ?? NaN),
      oneCall?.result.p99_ms ?? NaN,
      bullmq?.result.p99_ms ?? NaN,
    ];
  };
  const row = (values: readonly number[]): string =>
    values.map((value, k) => (k < SUMMARY_RATIO_COLUMNS ? `${fixed(value, 2)}×` : fixed(value, 1))).join(' | ');
  console.log('\n## summary: throughput ratios, CPU per request, p99');
  console.log(
    `| clients | round | one-call ÷ bullmq | two-call ÷ bullmq | one-call ÷ naive | bulk-${BULK_SIZE} texts ÷ bullmq | CPU/request: bullmq ÷ one-call | p99 ms one-call | p99 ms bullmq |\n` +
      '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const clients of concurrency) {
    const perRound = Array.from({ length: rounds }, (_, i) => ratios(clients, i + 1));
    perRound.forEach((values, i) => console.log(`| ${clients} | ${i + 1} | ${row(values)} |`));
    const columns = perRound[0]?.length ?? 0;
    if (rounds > 1) console.log(`| ${clients} | median | ${row(Array.from({ length: columns }, (_, k) => median(perRound.map((values) => values[k] ?? NaN))))} |`);
  }
}

/** The comparison benchmark (see the file header). */
export async function runCompare(options: CompareOptions): Promise<void> {
  const modelDir = join(ROOT, 'models', COMPARE_MODEL);
  const texts = loadMobyDickParagraphs();
  const workers = availableParallelism();
  console.log(`# compare: ${COMPARE_MODEL}, ${texts.length} Moby Dick paragraphs, ${options.durationMs / MS_PER_S} s per figure, ${workers} cores, node ${process.version}`);

  const costs = modelCostPoints(await benchInProcess({ modelDir, version: 1, batchSizes: IN_PROCESS_BATCH_SIZES, inputs: texts, durationMs: options.durationMs }));
  printInProcess(costs);

  const plans: SystemPlan[] = [
    {
      start: () => startInferlineTopology({ model: COMPARE_MODEL }),
      paths: [
        ['one-call', inferlineRequest(COMPARE_MODEL, 'one-call')],
        ['two-call', inferlineRequest(COMPARE_MODEL, 'two-call')],
        [`bulk-${BULK_SIZE}`, inferlineBulkRequest(COMPARE_MODEL, loadMobyDickParagraphs())],
      ],
    },
    { start: () => startBullmqBaseline({ modelDir, workers }), paths: [['predict', predictRequest]] },
    { start: () => startNaiveBaseline({ modelDir }), paths: [['predict', predictRequest]] },
  ];
  const figures: Figure[] = [];
  const rounds = options.rounds ?? 1;
  for (let round = 1; round <= rounds; round++) {
    for (const plan of plans) figures.push(...(await measureSystem(plan, round, options, costs)));
  }
  printSummary(figures, options.concurrency, rounds);
}
