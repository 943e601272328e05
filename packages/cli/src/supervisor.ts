import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import type { Logger } from '@inferline/shared';

/**
 * One child process of `inferline start` (the gateway, a worker), forked from a module and restarted
 * with a backoff when it dies unexpectedly.
 *
 * Children are forked `detached` (their own process group), so a Ctrl-C in the terminal reaches only
 * the supervisor, which then stops them in order with SIGTERM; a child whose IPC channel closes (the
 * supervisor died) stops by itself (see `signals.ts`).
 */

/** First wait before restarting a child that died (ms). */
export const RESTART_BACKOFF_INITIAL_MS = 1_000;
/** Longest wait before a restart; the wait doubles after each quick death up to this (ms). */
export const RESTART_BACKOFF_MAX_MS = 30_000;
/** A child that ran at least this long before dying is restarted after the initial backoff again (ms). */
export const RESTART_STABLE_AFTER_MS = 60_000;

export interface SupervisedChildOptions {
  /** Name in logs: `gateway`, `worker-1`. */
  name: string;
  /** Module to fork (`main.ts`) and its arguments (`['worker']`). */
  modulePath: string;
  args: string[];
  /** Node flags of the child; `process.execArgv` carries tsx's loader. */
  execArgv: string[];
  env: NodeJS.ProcessEnv;
  /** Initial value of {@link SupervisedChild.restart}. */
  restart: boolean;
  logger: Logger;
  /** Backoff bounds, ms; defaults above (tests shorten them). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

interface SupervisedChildEvents {
  /** An IPC message from the child. */
  message: [message: unknown];
  /** The child exited (whether or not it will be restarted). */
  exit: [code: number | null, signal: NodeJS.Signals | null];
}

/** A supervised child process: `start()` once, then `stop()` or `kill()`. */
export class SupervisedChild extends EventEmitter<SupervisedChildEvents> {
  readonly #options: SupervisedChildOptions;
  #child: ChildProcess | undefined;
  #stopping = false;
  #backoffMs: number;
  #restartTimer: NodeJS.Timeout | undefined;
  /** Times the child was (re)started. */
  starts = 0;
  /** Restart it when it exits while not being stopped (may be switched on once it proved it starts). */
  restart: boolean;

  constructor(options: SupervisedChildOptions) {
    super();
    this.#options = options;
    this.restart = options.restart;
    this.#backoffMs = options.backoffInitialMs ?? RESTART_BACKOFF_INITIAL_MS;
  }

  get name(): string {
    return this.#options.name;
  }

  /** Pid of the running child, if any. */
  get pid(): number | undefined {
    return this.#running() ? this.#child?.pid : undefined;
  }

  /** Fork the child. */
  start(): void {
    const { name, modulePath, args, execArgv, env, logger } = this.#options;
    const startedAt = Date.now();
    const child = fork(modulePath, args, { execArgv, env, detached: true, stdio: 'inherit' });
    this.#child = child;
    this.starts += 1;
    logger.info({ child: name, pid: child.pid }, 'child started');
    child.on('message', (message) => this.emit('message', message));
    child.on('error', (error) => logger.error({ child: name, err: error }, 'child process error'));
    child.once('exit', (code, signal) => {
      this.emit('exit', code, signal);
      if (this.#stopping) return;
      if (!this.restart) {
        logger.error({ child: name, pid: child.pid, code, signal }, 'child exited');
        return;
      }
      if (Date.now() - startedAt >= RESTART_STABLE_AFTER_MS) this.#backoffMs = this.#options.backoffInitialMs ?? RESTART_BACKOFF_INITIAL_MS;
      const delay = this.#backoffMs;
      this.#backoffMs = Math.min(delay * 2, this.#options.backoffMaxMs ?? RESTART_BACKOFF_MAX_MS);
      logger.warn({ child: name, pid: child.pid, code, signal, restart_in_ms: delay }, 'child died unexpectedly, restarting');
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        if (!this.#stopping) this.start();
      }, delay);
    });
  }

  /**
   * Stop for good: SIGTERM, then SIGKILL when it has not exited after `graceMs`. Resolves once it
   * exited (at once when it is not running).
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || !this.#running()) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const killer = setTimeout(() => {
      this.#options.logger.warn({ child: this.name, pid: child.pid, grace_ms: graceMs }, 'child did not stop in time, killing it');
      child.kill('SIGKILL');
    }, graceMs);
    await exited;
    clearTimeout(killer);
  }

  /** Stop for good at once with SIGKILL (a forced stop). */
  kill(): void {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    if (this.#running()) this.#child?.kill('SIGKILL');
  }

  #running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }
}
