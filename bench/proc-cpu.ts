import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU time and process tree of Linux processes, read from procfs (proc(5)): `/proc/<pid>/stat`
 * (utime, stime, starttime), `/proc/<pid>/cmdline` and `/proc/<pid>/task/<tid>/children`.
 * Synchronous on purpose: a sample is a few small reads, taken at the edge of a measured window, and
 * must not wait behind the load generator's callbacks.
 */

/** A process of a system under test, by the role it plays (`gateway`, `worker-1`, `redis`). */
export interface NamedProcess {
  name: string;
  pid: number;
}

/** CPU seconds (user + system) of each named process at one instant. */
export interface CpuSample {
  /** `performance.now()` when the sample was taken, ms. */
  at_ms: number;
  /** Name → CPU seconds since the process started; a process that is gone is missing. */
  seconds: Map<string, number>;
}

/** Field numbers of `/proc/<pid>/stat` (1-based, as proc(5) numbers them). */
const STAT_UTIME = 14;
const STAT_STIME = 15;
const STAT_STARTTIME = 22;
/** The first field after `(comm)`, whose number the split below starts from. */
const STAT_FIRST_AFTER_COMM = 3;

let ticksPerSecond: number | undefined;

/** Clock ticks per second of the times in `/proc/<pid>/stat` (`getconf CLK_TCK`, normally 100). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(value) || value <= 0) throw new Error(`getconf CLK_TCK gave "${value}"`);
    ticksPerSecond = value;
  }
  return ticksPerSecond;
}

/**
 * The numeric fields of `/proc/<pid>/stat` from field 3 on (the command name in field 2 may hold
 * spaces and parentheses, so the split starts after its last `)`), or undefined when the process is gone.
 */
function readStatFields(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

function statField(fields: readonly string[], field: number): number {
  return Number(fields[field - STAT_FIRST_AFTER_COMM]);
}

/** User + system CPU time of a process so far, seconds; undefined when it is gone. */
export function readCpuSeconds(pid: number): number | undefined {
  const fields = readStatFields(pid);
  if (!fields) return undefined;
  return (statField(fields, STAT_UTIME) + statField(fields, STAT_STIME)) / clockTicksPerSecond();
}

/** Start time of a process, clock ticks after boot (orders siblings by age); undefined when it is gone. */
export function readStartTicks(pid: number): number | undefined {
  const fields = readStatFields(pid);
  return fields ? statField(fields, STAT_STARTTIME) : undefined;
}

/** The argument vector of a process (`/proc/<pid>/cmdline`, NUL-separated); empty when it is gone. */
export function readCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '');
  } catch {
    return [];
  }
}

/** Direct children of a process: the union of `/proc/<pid>/task/<tid>/children` over its threads. */
export function childPids(pid: number): number[] {
  const children = new Set<number>();
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const tid of tasks) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(' ')) {
        if (child !== '') children.add(Number(child));
      }
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return [...children];
}

/** Every descendant of a process (children, their children, ...), parents before children. */
export function descendantPids(pid: number): number[] {
  const found: number[] = [];
  const queue = childPids(pid);
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    found.push(next);
    queue.push(...childPids(next));
  }
  return found;
}

/** CPU seconds of each process now (see {@link CpuSample}). */
export function sampleCpu(processes: readonly NamedProcess[]): CpuSample {
  const seconds = new Map<string, number>();
  for (const { name, pid } of processes) {
    const value = readCpuSeconds(pid);
    if (value !== undefined) seconds.set(name, value);
  }
  return { at_ms: performance.now(), seconds };
}

/** CPU seconds each process used between two samples (processes present in both), in `after`'s order. */
export function cpuSecondsBetween(before: CpuSample, after: CpuSample): Map<string, number> {
  const used = new Map<string, number>();
  for (const [name, end] of after.seconds) {
    const start = before.seconds.get(name);
    if (start !== undefined) used.set(name, end - start);
  }
  return used;
}
