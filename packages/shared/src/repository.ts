import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModelConfig, type ModelConfig, type VersionPolicy } from './config.ts';
import { InferlineError } from './errors.ts';

/** File that marks a version folder as complete (TF.js model manifest). */
export const MODEL_MANIFEST = 'model.json';

/** One model of the repository as found on disk. */
export interface RepositoryModel {
  config: ModelConfig;
  /** Absolute path of `models/<name>`. */
  dir: string;
  /** Version numbers whose folder holds a `model.json`, ascending. */
  versions: number[];
  /** The versions the version policy serves, ascending (a subset of `versions`). */
  served: number[];
}

/**
 * Apply a TF Serving version policy to the versions present on disk.
 * `latest{n}` → the n highest; `specific{versions}` → those present; `all` → every one.
 */
export function selectVersions(policy: VersionPolicy, present: readonly number[]): number[] {
  const sorted = [...present].sort((a, b) => a - b);
  if ('latest' in policy) return sorted.slice(-policy.latest.num_versions);
  if ('specific' in policy) return sorted.filter((v) => policy.specific.versions.includes(v));
  return sorted;
}

/**
 * Read one model folder: its config and its complete version folders.
 * @throws InferlineError `invalid_config` when `config.json` is invalid, its name differs from the
 *   folder, or a label or traffic entry points to a version that is not served.
 */
export async function readRepositoryModel(dir: string): Promise<RepositoryModel> {
  const config = await loadModelConfig(dir);
  const folder = dir.split('/').at(-1);
  if (config.name !== folder) {
    throw new InferlineError('invalid_config', `${dir}/config.json: field /name: "${config.name}" differs from its folder "${folder}"`);
  }
  const versions: number[] = [];
  // Names, not dirent types: a version folder may be a symbolic link.
  for (const name of await readdir(dir)) {
    if (!/^[1-9][0-9]*$/.test(name)) continue;
    const complete = await stat(join(dir, name, MODEL_MANIFEST)).then(
      () => true,
      () => false,
    );
    if (complete) versions.push(Number(name));
  }
  versions.sort((a, b) => a - b);
  const served = selectVersions(config.version_policy, versions);
  checkVersionTargets(config, served, dir);
  return { config, dir, versions, served };
}

/**
 * TF Serving's rule: a label may point only to a version that is served (present and selected by the
 * version policy); the same for a version named in `traffic`.
 * @throws InferlineError `invalid_config` naming the field (`/version_labels/canary`, `/traffic/3`).
 */
function checkVersionTargets(config: ModelConfig, served: readonly number[], dir: string): void {
  const list = served.length > 0 ? served.join(', ') : 'none';
  for (const [label, version] of Object.entries(config.version_labels)) {
    if (!served.includes(version)) {
      throw new InferlineError('invalid_config', `${dir}/config.json: field /version_labels/${label}: version ${version} is not served (served: ${list})`);
    }
  }
  for (const key of Object.keys(config.traffic ?? {})) {
    if (/^[0-9]/.test(key) && !served.includes(Number(key))) {
      throw new InferlineError('invalid_config', `${dir}/config.json: field /traffic/${key}: version ${key} is not served (served: ${list})`);
    }
  }
}

/** A model folder whose config could not be read or is invalid. */
export interface RepositoryFailure {
  /** The folder name (the model's name when its config is right). */
  name: string;
  dir: string;
  /** What is wrong; names the file and the field. */
  message: string;
}

/** What a scan of the repository found: the models to serve and the folders that failed. */
export interface RepositoryScan {
  models: RepositoryModel[];
  failures: RepositoryFailure[];
}

/**
 * Scan a model repository (`root/<name>/config.json` + `root/<name>/<version>/model.json`). Folders
 * without `config.json` are ignored. A model whose config is invalid is reported in `failures` and
 * does not stop the others from being served (as Triton marks one model UNAVAILABLE, not the server).
 * @throws Error when `root` itself cannot be read.
 */
export async function scanRepository(root: string): Promise<RepositoryScan> {
  const scan: RepositoryScan = { models: [], failures: [] };
  const entries = await readdir(root, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    const hasConfig = await stat(join(dir, 'config.json')).then(
      () => true,
      () => false,
    );
    if (!hasConfig) continue;
    try {
      scan.models.push(await readRepositoryModel(dir));
    } catch (error) {
      scan.failures.push({ name: entry.name, dir, message: error instanceof Error ? error.message : String(error) });
    }
  }
  return scan;
}
