import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stagedVersionDir } from '../../packages/cli/src/models/build-models.ts';
import { ROOT } from './processes.ts';

/** Folder of a built glove-embed version: 1 in the served repository, 2 staged by `npm run models`. */
export function gloveVersionDir(version: 1 | 2): string {
  return version === 1 ? join(ROOT, 'models', 'glove-embed', '1') : join(ROOT, stagedVersionDir('glove-embed', 2));
}

/** Link a built glove-embed version into a repository made by {@link gloveRepository} (a roll-out). */
export async function addGloveVersion(root: string, version: 1 | 2): Promise<void> {
  await symlink(gloveVersionDir(version), join(root, 'glove-embed', String(version)));
}

/** Rewrite fields of the repository's glove-embed config.json (as a user editing it would). */
export async function editGloveConfig(root: string, fields: Record<string, unknown>): Promise<void> {
  const path = join(root, 'glove-embed', 'config.json');
  const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  await writeFile(path, JSON.stringify({ ...config, ...fields }, null, 2));
}

/**
 * A temporary model repository holding the real `glove-embed` (its built version folder linked, not
 * copied) with config fields overridden, e.g. `{ batching: { batch_timeout_ms: 3000 } }`; `versions`
 * [1, 2] links the staged v2 as well.
 * Returns the repository folder.
 */
export async function gloveRepository(overrides: {
  batching?: Record<string, unknown>;
  queue?: Record<string, unknown>;
  /** Other top-level fields (version_policy, version_labels, traffic). */
  fields?: Record<string, unknown>;
  /** Built versions to link (default [1]; 2 is the staged one). */
  versions?: (1 | 2)[];
}): Promise<string> {
  const source = join(ROOT, 'models', 'glove-embed');
  const config = JSON.parse(await readFile(join(source, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  config.batching = { ...config.batching, ...overrides.batching };
  config.queue = { ...config.queue, ...overrides.queue };
  const root = await mkdtemp(join(tmpdir(), 'inferline-repo-'));
  await mkdir(join(root, 'glove-embed'));
  await writeFile(join(root, 'glove-embed', 'config.json'), JSON.stringify({ ...config, ...overrides.fields }, null, 2));
  for (const version of overrides.versions ?? [1]) await addGloveVersion(root, version);
  return root;
}

/**
 * A temporary repository holding built models of `models/` linked under new names (version 1, linked
 * not copied), each with config fields overridden (`batching` merged into the model's own), e.g.
 * `[{ name: 'text-a', from: 'glove-embed', fields: { instance_group: { count: 1 } } }]`.
 * Returns the repository folder.
 */
export async function linkedRepository(models: { name: string; from: string; fields?: Record<string, unknown> }[]): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'inferline-repo-'));
  for (const { name, from, fields } of models) {
    const config = JSON.parse(await readFile(join(ROOT, 'models', from, 'config.json'), 'utf8')) as Record<string, unknown>;
    const batching = { ...(config.batching as object), ...((fields?.batching as object | undefined) ?? {}) };
    await mkdir(join(root, name));
    await writeFile(join(root, name, 'config.json'), JSON.stringify({ ...config, ...fields, name, batching }, null, 2));
    await symlink(join(ROOT, 'models', from, '1'), join(root, name, '1'));
  }
  return root;
}
