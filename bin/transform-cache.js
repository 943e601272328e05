// tsx's transform cache, filled before `inferline start` starts its processes (plain JavaScript: it runs
// before tsx's loader is registered). See bin/inferline.js. Run as a script (`node --import tsx
// bin/transform-cache.js`), it fills the cache: see fillTransformCache.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository's root (this file is bin/transform-cache.js). */
const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The command-line entry point: importing it would run a command (see fillTransformCache). */
const ENTRY_POINT = join(ROOT, 'packages/cli/src/main.ts');
/**
 * CommonJS packages the code loads only when it runs, not when it is imported, and that tsx transforms:
 * `@fastify/static` (required when the gateway registers Swagger UI) requires `content-disposition`, an
 * ES module, which tsx turns into CommonJS. Resolved from the package that loads each.
 */
const LOADED_AT_RUN_TIME = [['packages/gateway/package.json', '@fastify/static']];

/**
 * Every TypeScript module of the packages (`packages/<name>/src/**\/*.ts`; declaration files and the
 * entry point excepted), as absolute paths, sorted.
 * @returns {string[]}
 */
export function sourceModules() {
  const modules = [];
  for (const pkg of readdirSync(join(ROOT, 'packages'))) {
    const src = join(ROOT, 'packages', pkg, 'src');
    if (!existsSync(src)) continue;
    for (const file of readdirSync(src, { recursive: true })) {
      const path = join(src, String(file));
      if (path.endsWith('.ts') && !path.endsWith('.d.ts') && path !== ENTRY_POINT) modules.push(path);
    }
  }
  return modules.sort();
}

/**
 * The marker of a filled cache for these sources: a file in tsx's cache directory
 * (`<OS temporary directory>/tsx-<uid>`, tsx's own layout, so that clearing the cache clears the
 * marker), named by a SHA-256 of tsx's and Node's versions and every module's path, size and
 * modification time.
 * @param {readonly string[]} modules
 * @returns {string}
 */
function markerPath(modules) {
  const hash = createHash('sha256');
  const tsx = createRequire(import.meta.url)('tsx/package.json');
  hash.update(`tsx ${tsx.version} node ${process.version}\n`);
  for (const path of modules) {
    const info = statSync(path);
    hash.update(`${path} ${info.size} ${info.mtimeMs}\n`);
  }
  return join(tmpdir(), `tsx-${process.getuid?.() ?? 0}`, `inferline-${hash.digest('hex')}.warm`);
}

/**
 * In a process started with tsx's loader (`--import tsx`, as `inferline start` starts its children, so
 * that the cache keys match): load {@link LOADED_AT_RUN_TIME}, import every module of the packages
 * once, so that tsx writes each one's transformed JavaScript to its disk cache, then leave the marker. A
 * module that throws when imported outside its place (the instance thread's entry) was transformed
 * before it ran, so it is cached all the same; the entry point is imported with
 * `INFERLINE_DEFINE_ONLY` set, so that it defines its commands and runs none.
 * @returns {Promise<{ modules: number, threw: number }>}
 */
export async function fillTransformCache() {
  const modules = sourceModules();
  let threw = 0;
  // First: once a module imports one of their dependencies as an ES module, requiring it takes the
  // loaded module, and tsx transforms nothing.
  for (const [from, name] of LOADED_AT_RUN_TIME) {
    try {
      createRequire(join(ROOT, from))(name);
    } catch {
      threw++;
    }
  }
  for (const path of modules) {
    await import(pathToFileURL(path).href).catch(() => threw++);
  }
  process.env.INFERLINE_DEFINE_ONLY = '1';
  await import(pathToFileURL(ENTRY_POINT).href).catch(() => threw++);
  try {
    writeFileSync(markerPath(modules), '');
  } catch {
    // No cache directory (tsx's cache disabled): no marker; the next start fills it again.
  }
  return { modules: modules.length + 1, threw };
}

/**
 * Before `inferline start` (and as `inferline warm-cache`, with `force`): unless the marker says these
 * sources are cached, run {@link fillTransformCache} in a short-lived process and wait for it (about
 * 2 s: it loads fastify, gRPC, TF.js).
 *
 * Why: tsx transforms a module it has not cached with esbuild's service, a child process that stays for
 * the life of the thread that started it and wakes it once a second (`esbuild --service --ping`).
 * `start` on a cold cache left nine of them (the supervisor, the gateway, the aggregator, the worker
 * and each of its instance threads), about half a percent of a core at idle. Filled first, the cache
 * holds every module and no process of the stack starts a service; the short-lived one's ends with it.
 * A failure here only costs that: the stack starts either way.
 * @param {{ force?: boolean }} [options] `force`: fill it even when the marker is there
 * @returns {number} the exit status of the short-lived process (0 when it did not run)
 */
export function warmTransformCache(options = {}) {
  if (!options.force && existsSync(markerPath(sourceModules()))) return 0;
  const filled = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  return filled.status ?? 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { modules, threw } = await fillTransformCache();
  process.stdout.write(`warm-cache: ${modules} modules in tsx's transform cache (${threw} threw when loaded outside their place)\n`);
  // Imported modules may hold handles (timers, metric registries): the work is done.
  process.exit(0);
}
