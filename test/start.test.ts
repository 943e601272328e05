import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort } from '../packages/cli/src/redis-server.ts';
import { descendantPids, readCmdline } from '../bench/proc-cpu.ts';
import { ROOT, startRole, type RoleProcess } from './harness/processes.ts';

describe('inferline start (what `npm start` runs)', () => {
  let start: RoleProcess | undefined;
  let stateDir = '';

  after(async () => {
    // SIGTERM: the supervisor stops its children and its private redis-server (a SIGKILL would orphan them).
    await start?.stop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  test('serves glove-embed on a private Redis, then stops everything on SIGINT', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'inferline-start-'));
    const port = await freePort();
    // An empty REDIS_URL counts as unset: start runs its private redis-server under STATE_DIR.
    // TMPDIR: a temporary directory of its own, so tsx's transform cache starts empty, as on a fresh clone.
    const env = { PORT: String(port), HOST: '127.0.0.1', STATE_DIR: stateDir, WORKERS: '1', MODEL_REPOSITORY: join(ROOT, 'models'), REDIS_URL: '', TMPDIR: stateDir };
    start = startRole(['start'], env, { launcher: true });
    await start.waitFor(/inferline is running: http:\/\/localhost:\d+/);
    await start.waitFor(/"msg":"worker ready"/);
    assert.ok(start.lines.some((line) => line.includes('private redis-server started')), 'a private redis-server was started');
    // The cache was filled before the stack started, so no process of it runs an esbuild service (one
    // would stay for the life of each process and thread that transformed a module, pinging it every second).
    const services = descendantPids(start.child.pid ?? 0).map((pid) => readCmdline(pid).join(' ')).filter((command) => command.includes('esbuild'));
    assert.deepEqual(services, [], 'no esbuild service runs under inferline start');

    const url = `http://127.0.0.1:${port}`;
    const created = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'glove-embed', input: 'Call me Ishmael.' }),
    });
    assert.equal(created.status, 202);
    const { id } = (await created.json()) as { id: string };
    const job = (await (await fetch(`${url}/v1/jobs/${id}?wait=30`)).json()) as { status: string; output: { embedding: number[] } };
    assert.equal(job.status, 'succeeded');
    assert.equal(job.output.embedding.length, 100);
    assert.ok(Math.abs(Math.hypot(...job.output.embedding) - 1) < 1e-5, 'the embedding is L2-normalized');

    start.child.kill('SIGINT');
    assert.equal(await start.exited, 0, 'clean exit on Ctrl-C');
    assert.ok(start.lines.some((line) => line.includes('private redis-server stopped')));
    assert.ok((await readdir(join(stateDir, 'redis'))).length > 0, 'Redis kept its data (append-only file) under STATE_DIR');
    start = undefined;
  });
});
