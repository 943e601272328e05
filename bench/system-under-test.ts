import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import type { NamedProcess } from './proc-cpu.ts';

/** A system the comparison benchmark (bench/compare.ts) started and measures, one at a time. */
export interface SystemUnderTest {
  /** `inferline`, `bullmq`, `naive`. */
  name: string;
  /** Base URL of its HTTP entry point, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Its processes by role, in table order (CPU is read per process). */
  processes: NamedProcess[];
  /** Stop every process it started and wait until they exited; removes its temporary state. */
  stop(): Promise<void>;
}

/**
 * Send SIGTERM to a child process this program started and wait for its exit; SIGKILL it when it has
 * not exited after `graceMs` (ms). Resolves at once when it already exited.
 */
export async function stopChildProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(killer);
}
