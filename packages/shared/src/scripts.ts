import { readFileSync } from 'node:fs';
import type { ChainableCommander, Redis } from 'ioredis';

/**
 * The protocol's Lua scripts, one `.lua` file each under `lua/` (header lists KEYS, ARGV and the
 * return value). They are registered on a connection with ioredis `defineCommand`, which sends
 * EVALSHA and falls back to EVAL on NOSCRIPT, in plain calls and in pipelines alike.
 */
export const SCRIPT_NAMES = ['enqueue', 'start', 'settle', 'dead-letter'] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

type ScriptArg = string | Buffer | number;
type Target = Redis | ChainableCommander;

/** Command name under which a script is defined on a connection. */
function commandName(name: ScriptName): string {
  return `il_${name.replace('-', '_')}`;
}

/** Register every script on a connection (idempotent). Call once per connection. */
export function defineScripts(redis: Redis): void {
  for (const name of SCRIPT_NAMES) {
    const command = commandName(name);
    if (command in redis) continue;
    const lua = readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
    redis.defineCommand(command, { lua });
  }
}

/**
 * Run a registered script on a connection or queue it on a pipeline. On a pipeline the returned value
 * is the pipeline itself; read the reply from `exec()`.
 * @throws Error when {@link defineScripts} was not called on the connection.
 */
export function runScript<T = unknown>(target: Target, name: ScriptName, scriptKeys: readonly string[], args: readonly ScriptArg[]): Promise<T> {
  const command = (target as unknown as Record<string, unknown>)[commandName(name)];
  if (typeof command !== 'function') throw new Error(`script ${name} is not defined on this connection; call defineScripts first`);
  return (command as (...a: ScriptArg[]) => Promise<T>).call(target, scriptKeys.length, ...scriptKeys, ...args);
}
