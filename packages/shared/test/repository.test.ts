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

  test('a label or a traffic entry that points to a version the policy does not serve is a config error naming the field', async () => {
    const root = await repository({
      'labelled/config.json': config('labelled', { version_labels: { stable: 1, canary: 3 } }),
      'labelled/1/model.json': '{}',
      'labelled/2/model.json': '{}',
      'split/config.json': config('split', { version_policy: { all: {} }, traffic: { 1: 50, 4: 50 } }),
      'split/1/model.json': '{}',
      'unknown-label/config.json': config('unknown-label', { traffic: { beta: 100 } }),
      'unknown-label/1/model.json': '{}',
      'fine/config.json': config('fine', { version_policy: { all: {} }, version_labels: { stable: 1, canary: 2 }, traffic: { stable: 90, canary: 10 } }),
      'fine/1/model.json': '{}',
      'fine/2/model.json': '{}',
    });
    const scan = await scanRepository(root);
    assert.deepEqual(scan.models.map((m) => m.config.name), ['fine']);
    const messages = Object.fromEntries(scan.failures.map((f) => [f.name, f.message]));
    // latest{1} over [1, 2] serves only 2: both labels are checked, the first wrong one is named.
    assert.match(messages.labelled ?? '', /field \/version_labels\/stable: version 1 is not served \(served: 2\)/);
    assert.match(messages.split ?? '', /field \/traffic\/4: version 4 is not served/);
    assert.match(messages['unknown-label'] ?? '', /field \/traffic\/beta: no such label in version_labels/);
  });

});

describe('selectVersions (TF Serving version_policy)', () => {
  test('latest keeps the n highest, specific those listed and present, all every one', () => {
    assert.deepEqual(selectVersions({ latest: { num_versions: 2 } }, [3, 1, 2]), [2, 3]);
    assert.deepEqual(selectVersions({ specific: { versions: [1, 5] } }, [1, 2, 3]), [1]);
    assert.deepEqual(selectVersions({ all: {} }, [2, 1]), [1, 2]);
  });
});
