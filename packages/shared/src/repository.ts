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
 * @throws InferlineError `invalid_config` when `config.json` is invalid or its name differs from the folder.
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
  return { config, dir, versions, served: selectVersions(config.version_policy, versions) };
}

/**
 * Scan a model repository (`root/<name>/config.json` + `root/<name>/<version>/model.json`).
 * Folders without `config.json` are ignored.
 * @throws InferlineError `invalid_config` for an invalid config.
 */
export async function scanRepository(root: string): Promise<RepositoryModel[]> {
  const models: RepositoryModel[] = [];
  const entries = await readdir(root, { withFileTypes: true });
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory()) continue;
    const dir = join(root, entry.name);
    const hasConfig = await stat(join(dir, 'config.json')).then(
      () => true,
      () => false,
    );
    if (hasConfig) models.push(await readRepositoryModel(dir));
  }
  return models;
}
