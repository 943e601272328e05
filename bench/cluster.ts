import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectRedis, masterNodes, whenConnected, type Redis } from '../packages/shared/src/redis.ts';
import { startRedisServer } from '../packages/cli/src/redis-server.ts';
import { startGatewayProcess, startWorkerProcess } from '../test/harness/processes.ts';
import { startTestCluster } from '../test/harness/redis-cluster.ts';
import { gloveRepository } from '../test/harness/repository.ts';
import { runClosedLoop } from './closed-loop.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { readCpuSeconds } from './proc-cpu.ts';
import { inferlineBulkRequest, inferlineRequest } from './request-paths.ts';

/**
 * `npm run bench -- --cluster [--duration-s 10 --concurrency 32 --partitions 3]`: glove-embed throughput with one
 * redis-server (`partitions: 1`) against a 3-master Redis Cluster (`partitions: 3`, so the model's
 * requests spread over the three masters), each with one gateway and one worker process on this box,
 * for the one-call path (`POST /v1/jobs` + `Prefer: wait`) and the bulk path (64 texts per request).
 * Prints per run: texts/s, Redis CPU per text summed over the masters (`INFO cpu`, used_cpu_sys +
 * used_cpu_user) and its split per master, and gateway / worker CPU per text from /proc/<pid>/stat.
 * Asserts nothing.
 */

/** Redis' own CPU of one server, s (`INFO cpu`). */
async function redisCpuSeconds(node: Redis): Promise<number> {
  const text = await node.info('cpu');
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(text)?.[1] ?? 0);
  return field('used_cpu_sys') + field('used_cpu_user');
}

interface Topology {
  name: string;
  url: string;
  partitions: number;
  stop(): Promise<void>;
}

async function singleRedis(dir: string): Promise<Topology> {
  const server = await startRedisServer({ dir: join(dir, 'single'), appendonly: false });
  return { name: '1 Redis, partitions: 1', url: server.url, partitions: 1, stop: () => server.stop() };
}

async function clusterRedis(dir: string, partitions: number): Promise<Topology> {
  const cluster = await startTestCluster(join(dir, 'cluster'));
  return { name: `3-master cluster, partitions: ${partitions}`, url: cluster.url, partitions, stop: () => cluster.stop() };
}

/**
 * @param partitions the cluster runs' `partitions` (default 3). The slots of N shard tags land on the
 *   masters as CRC16 puts them: with 3 partitions on 3 masters, often two share one master.
 */
export async function benchCluster(options: { durationMs: number; clients: number; partitions?: number }): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-cluster-'));
  const texts = loadMobyDickParagraphs();
  console.log(`# glove-embed, gateway + 1 worker process, ${options.clients} clients, ${options.durationMs / 1000} s per figure`);
  console.log('| Redis | way in | texts/s | Redis CPU per text (sum of masters) | split over masters | gateway CPU per text | worker CPU per text |');
  console.log('| --- | --- | ---: | ---: | --- | ---: | ---: |');
  try {
    for (const start of [singleRedis, (at: string) => clusterRedis(at, options.partitions ?? 3)]) {
      const topology = await start(dir);
      const repository = await gloveRepository({ fields: { partitions: topology.partitions } });
      const env = { REDIS_URL: topology.url, MODEL_REPOSITORY: repository, LOG_LEVEL: 'warn', HOST: '127.0.0.1' };
      const gateway = await startGatewayProcess(env);
      const worker = await startWorkerProcess({ ...env, LOG_LEVEL: 'info', INSTANCE_COUNT: '1' }, ['glove-embed']);
      const redis = connectRedis(topology.url, { name: 'bench' });
      try {
        await whenConnected(redis);
        const masters = masterNodes(redis);
        for (const [path, send] of [
          ['one-call', inferlineRequest('glove-embed', 'one-call')],
          ['bulk-64', inferlineBulkRequest('glove-embed', texts)],
        ] as const) {
          const redis0 = await Promise.all(masters.map(redisCpuSeconds));
          const gateway0 = readCpuSeconds(gateway.child.pid ?? 0) ?? 0;
          const worker0 = readCpuSeconds(worker.child.pid ?? 0) ?? 0;
          const result = await runClosedLoop({ url: gateway.url, clients: options.clients, durationMs: options.durationMs, texts, send });
          const redisCpu = (await Promise.all(masters.map(redisCpuSeconds))).map((s, i) => s - (redis0[i] ?? 0));
          const gatewayCpu = (readCpuSeconds(gateway.child.pid ?? 0) ?? 0) - gateway0;
          const workerCpu = (readCpuSeconds(worker.child.pid ?? 0) ?? 0) - worker0;
          const done = result.requests * (path === 'bulk-64' ? 64 : 1);
          const us = (seconds: number): string => `${((seconds * 1e6) / done).toFixed(0)} µs`;
          const total = redisCpu.reduce((a, b) => a + b, 0);
          const split = redisCpu.map((s) => `${((100 * s) / Math.max(total, 1e-9)).toFixed(0)} %`).join(' / ');
          console.log(`| ${topology.name} | ${path} | ${result.throughput.toFixed(0)}${result.failed > 0 ? ` (${result.failed} failed)` : ''} | ${us(total)} | ${split} | ${us(gatewayCpu)} | ${us(workerCpu)} |`);
        }
      } finally {
        redis.disconnect();
        await Promise.all([gateway.stop(), worker.stop()]);
        await topology.stop();
        await rm(repository, { recursive: true, force: true });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
