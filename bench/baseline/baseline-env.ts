/**
 * Environment of the baseline processes (bench/baseline/*.ts), set by `start-baselines.ts`:
 * - `PORT`, `HOST`: where an HTTP server listens;
 * - `REDIS_URL`: the BullMQ baseline's redis-server;
 * - `MODEL_DIR`: `models/<name>` of the model a process loads.
 * @throws Error naming the variable when it is missing.
 */
export function requireEnv(name: 'PORT' | 'HOST' | 'REDIS_URL' | 'MODEL_DIR'): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

/** Name of the BullMQ queue the baseline gateway adds to and its workers consume. */
export const BASELINE_QUEUE = 'predict';

/** IPC message a baseline process sends its parent once it serves. */
export interface BaselineReadyMessage {
  type: 'baseline-ready';
}

/** Tell the parent (when forked with IPC) that this process serves. */
export function announceReady(): void {
  const message: BaselineReadyMessage = { type: 'baseline-ready' };
  process.send?.(message);
}

/**
 * Run `stop` once on SIGTERM/SIGINT or when the parent's IPC channel closes (the bench died), then exit.
 * A failing stop is logged and the process exits with code 1.
 */
export function onStop(stop: () => Promise<void>): void {
  let stopping = false;
  const run = (): void => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('baseline: stop failed', error);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', run);
  process.once('SIGINT', run);
  process.once('disconnect', run);
}
