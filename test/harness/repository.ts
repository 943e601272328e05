import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './processes.ts';

/**
 * A temporary model repository holding the real `glove-embed` (its built version folder linked, not
 * copied) with config fields overridden, e.g. `{ batching: { batch_timeout_ms: 3000 } }`.
 * Returns the repository folder.
 */
export async function gloveRepository(overrides: { batching?: Record<string, unknown>; queue?: Record<string, unknown> }): Promise<string> {
  const source = join(ROOT, 'models', 'glove-embed');
  const config = JSON.parse(await readFile(join(source, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  config.batching = { ...config.batching, ...overrides.batching };
  config.queue = { ...config.queue, ...overrides.queue };
  const root = await mkdtemp(join(tmpdir(), 'inferline-repo-'));
  await mkdir(join(root, 'glove-embed'));
  await writeFile(join(root, 'glove-embed', 'config.json'), JSON.stringify(config, null, 2));
  await symlink(join(source, '1'), join(root, 'glove-embed', '1'));
  return root;
}
