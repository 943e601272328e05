import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer } from '../packages/cli/src/redis-server.ts';
import { ROOT, startGatewayProcess, startWorkerProcess } from '../test/harness/processes.ts';
import { runClosedLoop } from './closed-loop.ts';
import { loadMobyDickParagraphs } from './corpus.ts';
import { inferlineBulkRequest, inferlineRequest } from './request-paths.ts';

/**
 * `npm run bench -- --redis-ops [--duration-s 10]`: Redis operations per request, counted (not
 * guessed) from `INFO commandstats` around a closed-loop run of each way in (one-call, two-call,
 * bulk-64) against a gateway + one worker serving glove-embed + a private redis-server: calls per
 * completed request by command (commandstats counts the commands a Lua script runs as well, so the
 * total is what Redis executes; EVALSHA is the number of script calls), and the Redis CPU per request
 * (`used_cpu_sys + used_cpu_user`). Prints figures; asserts nothing.
 */

/** `INFO commandstats` as command → calls, and command → µs Redis spent executing it (`usec`). */
async function commandCalls(redis: Redis): Promise<{ calls: Map<string, number>; usec: Map<string, number> }> {
  const text = await redis.info('commandstats');
  const calls = new Map<string, number>();
  const usec = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (match) {
      calls.set(match[1] as string, Number(match[2]));
      usec.set(match[1] as string, Number(match[3]));
    }
  }
  return { calls, usec };
}

/** Redis' own CPU, s (`INFO cpu`). */
async function redisCpuSeconds(redis: Redis): Promise<number> {
  const text = await redis.info('cpu');
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(text)?.[1] ?? 0);
  return field('used_cpu_sys') + field('used_cpu_user');
}

export async function benchRedisOps(options: { durationMs: number; clients: number }): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'inferline-bench-ops-'));
  const server = await startRedisServer({ dir, appendonly: false });
  const env = { REDIS_URL: server.url, MODEL_REPOSITORY: join(ROOT, 'models'), LOG_LEVEL: 'warn', HOST: '127.0.0.1' };
  const gateway = await startGatewayProcess(env);
  const worker = await startWorkerProcess({ ...env, LOG_LEVEL: 'info', INSTANCE_COUNT: '1' }, ['glove-embed']);
  const redis = new Redis(server.url);
  const texts = loadMobyDickParagraphs();
  console.log(`# Redis operations per request: glove-embed, gateway + 1 worker, ${options.clients} clients, ${options.durationMs / 1000} s per path`);
  try {
    for (const [path, send, perRequest] of [
      ['one-call', inferlineRequest('glove-embed', 'one-call'), 1],
      ['two-call', inferlineRequest('glove-embed', 'two-call'), 1],
      ['bulk-64 (per text)', inferlineBulkRequest('glove-embed', texts), 64],
    ] as const) {
      await redis.config('RESETSTAT');
      const cpu0 = await redisCpuSeconds(redis);
      const result = await runClosedLoop({ url: gateway.url, clients: options.clients, durationMs: options.durationMs, texts, send });
      // Heartbeats, reclaim passes and the idle reads of the other streams also count: they are part of the cost.
      const { calls, usec } = await commandCalls(redis);
      const cpu = (await redisCpuSeconds(redis)) - cpu0;
      // The commandstats reads of this bench are not the system's.
      calls.delete('info');
      calls.delete('config|resetstat');
      usec.delete('info');
      usec.delete('config|resetstat');
      const done = result.requests * (perRequest === 1 ? 1 : perRequest);
      const total = [...calls.values()].reduce((a, b) => a + b, 0);
      const rows = [...calls].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${(n / done).toFixed(2)}`);
      console.log(`\n## ${path}: ${result.requests} requests (${result.throughput.toFixed(0)}/s), mean batch ${result.mean_batch_size.toFixed(1)}`);
      console.log(`Redis calls per ${perRequest === 1 ? 'request' : 'text'}: **${(total / done).toFixed(2)}** (${rows.join(', ')}); Redis CPU per ${perRequest === 1 ? 'request' : 'text'}: ${((cpu * 1e6) / done).toFixed(0)} µs`);
      // A script's usec includes the commands it runs (also counted on their own rows).
      const timed = [...usec].sort((a, b) => b[1] - a[1]).filter(([, us]) => us / done >= 0.05).map(([name, us]) => `${name} ${(us / done).toFixed(1)}`);
      console.log(`Command execution µs per ${perRequest === 1 ? 'request' : 'text'} (a script's figure includes its commands; the rest of the CPU is network and event loop): ${timed.join(', ')}`);
    }
  } finally {
    redis.disconnect();
    await Promise.all([gateway.stop(), worker.stop()]);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
