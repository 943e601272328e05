import { pino, type Logger } from 'pino';

/** Log level from `LOG_LEVEL` (pino levels: trace, debug, info, warn, error, fatal, silent); default `info`. */
export const DEFAULT_LOG_LEVEL = 'info';

/**
 * Create the process logger: pino JSON lines on stdout, one field `role` naming the process
 * (`gateway`, `worker`, `cli`, ...).
 */
export function createLogger(role: string, level = process.env.LOG_LEVEL ?? DEFAULT_LOG_LEVEL): Logger {
  return pino({ level, base: { role, pid: process.pid } });
}

export type { Logger };
