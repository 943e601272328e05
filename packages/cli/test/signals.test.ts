import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DUPLICATE_SIGNAL_WINDOW_MS } from '../src/signals.ts';

const SIGNALS_MODULE = fileURLToPath(new URL('../src/signals.ts', import.meta.url));

describe('trapStopSignals', () => {
  let dir = '';
  let script = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-signals-'));
    script = join(dir, 'trapped.mjs');
    // Reports each stop request over IPC and never exits by itself.
    await writeFile(
      script,
      `const { trapStopSignals } = await import(${JSON.stringify(SIGNALS_MODULE)});
       const signal = trapStopSignals({ onStop: (cause) => { if (process.connected) process.send({ stop: cause }); } });
       signal.addEventListener('abort', () => console.log('aborted:' + signal.reason));
       process.send?.({ ready: true });
       setInterval(() => undefined, 1000);`,
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function start(): ReturnType<typeof fork> {
    return fork(script, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  }

  it('aborts on the first SIGTERM and exits 130 on a second one that is not a duplicate delivery', async () => {
    const child = start();
    await once(child, 'message');
    child.kill('SIGTERM');
    assert.deepEqual((await once(child, 'message'))[0], { stop: 'SIGTERM' });
    const exit = once(child, 'exit');
    child.kill('SIGINT'); // within DUPLICATE_SIGNAL_WINDOW_MS: the same Ctrl-C relayed by a wrapper
    await new Promise((resolve) => setTimeout(resolve, DUPLICATE_SIGNAL_WINDOW_MS + 100));
    assert.equal(child.exitCode, null, 'a duplicate delivery does not force');
    child.kill('SIGINT');
    assert.deepEqual(await exit, [130, null]);
  });

  it('aborts when the IPC channel of a forked process closes', async () => {
    const child = start();
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    await once(child, 'message');
    child.disconnect();
    for (let i = 0; i < 100 && !stdout.includes('aborted:'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.match(stdout, /aborted:disconnect/);
    const exit = once(child, 'exit');
    child.kill('SIGKILL');
    await exit;
  });
});
