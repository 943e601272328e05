/**
 * SIGINT/SIGTERM → AbortSignal wiring of the long-running commands (`gateway`, `worker`, `start`).
 *
 * The first SIGINT or SIGTERM aborts the returned signal: the command stops gracefully. A second one
 * calls `onForce` (default: exit at once with code 130), so a stuck shutdown can always be cut short
 * with another Ctrl-C; signals within {@link DUPLICATE_SIGNAL_WINDOW_MS} of the first are duplicates
 * and ignored. A process forked by `inferline start` (it has an IPC channel) also stops when that
 * channel closes, so children never outlive a supervisor that was killed.
 */

/** Stop signals trapped by {@link trapStopSignals}. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * A repeated signal this soon after the first is the same Ctrl-C delivered twice, not a request to
 * force (ms): the terminal signals the whole process group, and wrappers (`npm start`, the `tsx` CLI)
 * relay the signal to their child as well.
 */
export const DUPLICATE_SIGNAL_WINDOW_MS = 500;

/** Exit code of a forced stop (128 + SIGINT, the shell's convention). */
export const FORCED_EXIT_CODE = 130;

export interface TrapOptions {
  /** Called once, on the first stop request, with what caused it (for a log line). */
  onStop?: (cause: StopSignal | 'disconnect') => void;
  /** Called on the second stop signal; default `process.exit(FORCED_EXIT_CODE)`. */
  onForce?: (signal: StopSignal) => void;
}

/**
 * Install the handlers (once per process) and return the signal that aborts on the first stop request.
 * The abort reason is the name of the signal (`"SIGINT"`, `"SIGTERM"`) or `"disconnect"`.
 */
export function trapStopSignals(options: TrapOptions = {}): AbortSignal {
  const controller = new AbortController();
  let stoppedAt = 0;
  const stop = (cause: StopSignal | 'disconnect'): void => {
    if (controller.signal.aborted) return;
    stoppedAt = Date.now();
    controller.abort(cause);
    options.onStop?.(cause);
  };
  for (const name of STOP_SIGNALS) {
    process.on(name, () => {
      if (!controller.signal.aborted) return stop(name);
      if (Date.now() - stoppedAt < DUPLICATE_SIGNAL_WINDOW_MS) return;
      if (options.onForce) options.onForce(name);
      else process.exit(FORCED_EXIT_CODE);
    });
  }
  if (process.connected) process.once('disconnect', () => stop('disconnect'));
  return controller.signal;
}

/** Resolve when `signal` aborts (at once when it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
