import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { scanRepository, selectVersions } from '../src/repository.ts';

const config = (name: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    name,
    platform: 'embedding-bag',
    signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'embedding', dtype: 'float32', shape: [4] }] },
    ...extra,
  });

describe('scanRepository', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });

  async function repository(files: Record<string, string>): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), 'inferline-repo-'));
    roots.push(root);
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(root, path, '..'), { recursive: true });
      await writeFile(join(root, path), text);
    }
    return root;
  }

  test('finds complete versions (model.json present), also through a symbolic link, and applies defaults', async () => {
    const root = await repository({
      'good/config.json': config('good'),
      'good/1/model.json': '{}',
      'good/2/vocab.txt': 'incomplete: no model.json',
      'elsewhere/7/model.json': '{}',
      'notes/readme.txt': 'no config: ignored',
    });
    await symlink(join(root, 'elsewhere', '7'), join(root, 'good', '3'));
    const scan = await scanRepository(root);
    assert.deepEqual(scan.failures, []);
    assert.deepEqual(scan.models.map((m) => [m.config.name, m.versions, m.served]), [['good', [1, 3], [3]]]);
    assert.equal(scan.models[0]?.config.batching.max_batch_size, 32, 'defaults applied');
  });

  test('an invalid config fails that model alone, naming the field', async () => {
    const root = await repository({
      'broken/config.json': config('broken', { batching: { max_batch_size: 0 } }),
      'good/config.json': config('good'),
      'good/1/model.json': '{}',
      'misnamed/config.json': config('other-name'),
      'notjson/config.json': '{',
    });
    const scan = await scanRepository(root);
    assert.deepEqual(scan.models.map((m) => m.config.name), ['good']);
    const failures = Object.fromEntries(scan.failures.map((f) => [f.name, f.message]));
    assert.match(failures.broken ?? '', /field \/batching\/max_batch_size/);
    assert.match(failures.misnamed ?? '', /field \/name: "other-name" differs from its folder "misnamed"/);
    assert.match(failures.notjson ?? '', /not JSON/);
  });
});

describe('selectVersions (TF Serving version_policy)', () => {
  test('latest keeps the n highest, specific those listed and present, all every one', () => {
    assert.deepEqual(selectVersions({ latest: { num_versions: 2 } }, [3, 1, 2]), [2, 3]);
    assert.deepEqual(selectVersions({ specific: { versions: [1, 5] } }, [1, 2, 3]), [1]);
    assert.deepEqual(selectVersions({ all: {} }, [2, 1]), [1, 2]);
  });
});
