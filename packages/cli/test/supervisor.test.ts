import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '@inferline/shared';
import { SupervisedChild } from '../src/supervisor.ts';

/** A child whose behaviour is chosen by `MODE`: `crash` (exit 3 soon), `graceful` (exit 0 on SIGTERM), `stubborn` (ignore SIGTERM). */
const CHILD_SCRIPT = `
const mode = process.env.MODE;
if (mode === 'crash') setTimeout(() => process.exit(3), 20);
if (mode === 'graceful') process.on('SIGTERM', () => { process.send({ type: 'bye' }); setTimeout(() => process.exit(0), 20); });
if (mode === 'stubborn') process.on('SIGTERM', () => undefined);
setInterval(() => undefined, 1000);
process.send({ type: 'hello', pid: process.pid });
`;

describe('SupervisedChild', () => {
  const logger = createLogger('test', 'silent');
  let dir = '';
  let script = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-supervisor-'));
    script = join(dir, 'child.mjs');
    await writeFile(script, CHILD_SCRIPT);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function child(mode: string, restart = true): SupervisedChild {
    return new SupervisedChild({
      name: mode, modulePath: script, args: [], execArgv: [], env: { ...process.env, MODE: mode }, restart, logger,
      backoffInitialMs: 50, backoffMaxMs: 200,
    });
  }

  it('restarts a child that dies unexpectedly, waiting longer after each quick death', async () => {
    const crashing = child('crash');
    const startedAt: number[] = [];
    crashing.on('message', () => startedAt.push(Date.now()));
    crashing.start();
    while (crashing.starts < 4) await once(crashing, 'message');
    await crashing.stop(1_000);
    const starts = crashing.starts;
    const gaps = startedAt.slice(1).map((at, i) => at - (startedAt[i] ?? at));
    // Each gap = ~20 ms of life + the backoff (50, 100, 200 ms).
    assert.ok((gaps[0] ?? 0) >= 70 && (gaps[2] ?? 0) >= 220, `gaps ${gaps.join(', ')} ms`);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(crashing.starts, starts, 'no restart after stop()');
  });

  it('does not restart a child when restart is off', async () => {
    const once_ = child('crash', false);
    once_.start();
    await once(once_, 'exit');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(once_.starts, 1);
    assert.equal(once_.pid, undefined);
  });

  it('stop() sends SIGTERM and resolves when the child has exited', async () => {
    const graceful = child('graceful');
    graceful.start();
    await once(graceful, 'message');
    const messages: unknown[] = [];
    graceful.on('message', (message) => messages.push(message));
    const exit = once(graceful, 'exit');
    await graceful.stop(5_000);
    assert.deepEqual(await exit, [0, null]);
    assert.deepEqual(messages, [{ type: 'bye' }]);
  });

  it('stop() kills a child that ignores SIGTERM after the grace period', async () => {
    const stubborn = child('stubborn');
    stubborn.start();
    await once(stubborn, 'message');
    const exit = once(stubborn, 'exit');
    const started = Date.now();
    await stubborn.stop(300);
    assert.ok(Date.now() - started >= 290);
    assert.deepEqual(await exit, [null, 'SIGKILL']);
  });
});
