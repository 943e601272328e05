import { readFileSync } from 'node:fs';
import type { ChainableCommander, Cluster, Redis as SingleRedis } from 'ioredis';

/**
 * The protocol's Lua scripts, one `.lua` file each under `lua/` (header lists KEYS, ARGV and the
 * return value). They are registered on a connection with ioredis `defineCommand`, which sends
 * EVALSHA and falls back to EVAL on NOSCRIPT, in plain calls and in pipelines alike.
 *
 * A line `--- @include "<name>"` is replaced by `lua/includes/<name>.lua` (each include once per
 * script, its own includes first), as BullMQ does for the functions its scripts share.
 */
export const SCRIPT_NAMES = [
  'enqueue',
  'enqueue-each',
  'start',
  'settle',
  'dead-letter',
  'group-add',
  'start-members',
  'settle-member',
  'dead-letter-member',
  'group-cancel',
  'cancel',
  'group-finish',
  'heartbeat',
] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

type ScriptArg = string | Buffer | number;
type Redis = SingleRedis | Cluster;
type Target = Redis | ChainableCommander;

/** Command name under which a script is defined on a connection. */
function commandName(name: ScriptName): string {
  return `il_${name.replaceAll('-', '_')}`;
}

/**
 * The command names of every script ({@link defineScripts}). A Cluster client must not auto-pipeline
 * them: ioredis picks an auto-pipeline's node from a command's first argument, which for a defined
 * script is its key count, not a key, so scripts of several slots would share one pipeline and fail
 * ("All keys in the pipeline should belong to the same slots allocation group",
 * https://github.com/redis/ioredis/issues/2109). Sent alone, each goes to its keys' master.
 */
export const SCRIPT_COMMANDS: readonly string[] = SCRIPT_NAMES.map(commandName);

const INCLUDE = /^--- @include "([a-z-]+)"$/gm;

/**
 * The source of a script with its includes expanded.
 * @param seen includes already expanded into this script (each goes in once)
 */
export function loadLua(file: URL, seen: Set<string> = new Set()): string {
  return readFileSync(file, 'utf8').replace(INCLUDE, (_line, include: string) => {
    if (seen.has(include)) return '';
    seen.add(include);
    return loadLua(new URL(`./lua/includes/${include}.lua`, import.meta.url), seen);
  });
}

/** Register every script on a connection (idempotent). Call once per connection. */
export function defineScripts(redis: Redis): void {
  for (const name of SCRIPT_NAMES) {
    const command = commandName(name);
    if (command in redis) continue;
    const lua = loadLua(new URL(`./lua/${name}.lua`, import.meta.url));
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
