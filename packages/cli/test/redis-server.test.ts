import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parentDeathPrefix, startRedisServer } from '../src/redis-server.ts';

const execFileAsync = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function withRedis<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

describe('startRedisServer', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-redis-server-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts a redis-server that answers, with noeviction, and stop() ends its process', async () => {
    const server = await startRedisServer({ dir: join(dir, 'answers') });
    try {
      assert.match(server.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
      await withRedis(server.url, async (redis) => {
        assert.equal(await redis.ping(), 'PONG');
        assert.deepEqual(await redis.config('GET', 'maxmemory-policy'), ['maxmemory-policy', 'noeviction']);
        assert.deepEqual(await redis.config('GET', 'appendonly'), ['appendonly', 'yes']);
      });
    } finally {
      await server.stop();
    }
    assert.ok(server.process.exitCode !== null || server.process.signalCode !== null, 'the process has exited');
    assert.throws(() => process.kill(server.process.pid ?? 0, 0), { code: 'ESRCH' });
    await server.stop(); // stopping twice is harmless
  });

  it('keeps data across stop and start in the same folder (appendonly)', async () => {
    const data = join(dir, 'durable');
    const first = await startRedisServer({ dir: data });
    try {
      await withRedis(first.url, async (redis) => {
        await redis.set('inferline:test', 'kept');
        await redis.xadd('inferline:stream', '*', 'field', 'value');
      });
    } finally {
      await first.stop();
    }

    const second = await startRedisServer({ dir: data });
    try {
      await withRedis(second.url, async (redis) => {
        assert.equal(await redis.get('inferline:test'), 'kept');
        assert.equal(await redis.xlen('inferline:stream'), 1);
      });
    } finally {
      await second.stop();
    }
  });

  it('keeps acknowledged writes through the append-only file when the server is killed without a save', async () => {
    const data = join(dir, 'killed');
    const first = await startRedisServer({ dir: data });
    await withRedis(first.url, (redis) => redis.set('inferline:test', 'from-aof'));
    const exited = new Promise((resolve) => first.process.once('exit', resolve));
    first.process.kill('SIGKILL');
    await exited;

    const second = await startRedisServer({ dir: data });
    try {
      assert.equal(await withRedis(second.url, (redis) => redis.get('inferline:test')), 'from-aof');
    } finally {
      await second.stop();
    }
  });

  it('stops when its owner dies without stopping it (SIGKILL), keeping what it acknowledged', { skip: parentDeathPrefix().length === 0 && 'no setpriv here (not Linux)' }, async () => {
    const data = join(dir, 'orphan');
    // The owner: another process that starts the server, writes a key, prints the server's pid, and waits.
    const script = `
      const { startRedisServer } = await import(${JSON.stringify(join(REPO_ROOT, 'packages/cli/src/redis-server.ts'))});
      const { Redis } = await import('ioredis');
      const server = await startRedisServer({ dir: ${JSON.stringify(data)} });
      const redis = new Redis(server.url);
      await redis.set('inferline:test', 'before-the-owner-died');
      redis.disconnect();
      console.log(JSON.stringify({ pid: server.process.pid }));
      setInterval(() => undefined, 1000);
    `;
    const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(createInterface({ input: owner.stdout }), 'line')) as [string];
    const { pid } = JSON.parse(line) as { pid: number };
    try {
      assert.ok(isRunning(pid), 'the server runs while its owner does');
      const ownerExited = once(owner, 'exit');
      owner.kill('SIGKILL');
      await ownerExited;
      const deadline = Date.now() + 10_000;
      while (isRunning(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(isRunning(pid), false, 'the orphaned redis-server stopped');
    } finally {
      // A failed run must not leave either process behind.
      owner.kill('SIGKILL');
      if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    }

    const second = await startRedisServer({ dir: data });
    try {
      assert.equal(await withRedis(second.url, (redis) => redis.get('inferline:test')), 'before-the-owner-died');
    } finally {
      await second.stop();
    }
  });
});

/** Whether a process with this pid exists (a zombie counts as gone once its parent, init, reaps it). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('findRedisServer', () => {
  it('names the fix when redis-server is not on PATH', async () => {
    // A PATH holding only `sh` (findRedisServer asks `sh -c "command -v redis-server"`).
    const bin = await mkdtemp(join(tmpdir(), 'inferline-path-'));
    try {
      await symlink('/bin/sh', join(bin, 'sh'));
      const script = `
        const { findRedisServer } = await import(${JSON.stringify(join(REPO_ROOT, 'packages/cli/src/redis-server.ts'))});
        try { findRedisServer(); console.log(JSON.stringify({ found: true })); }
        catch (error) { console.log(JSON.stringify({ code: error.code, message: error.message })); }
      `;
      const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: REPO_ROOT,
        env: { ...process.env, PATH: bin },
      });
      const result = JSON.parse(stdout) as { code?: string; message?: string };
      assert.equal(result.code, 'unavailable');
      assert.match(result.message ?? '', /redis-server was not found on PATH/);
      assert.match(result.message ?? '', /apt-get install -y redis-server/);
      assert.match(result.message ?? '', /REDIS_URL/);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });
});
