import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InferlineError } from '@inferline/shared';
import { ModelCatalog } from '../src/model-catalog.ts';
import { addVersion, createRepository, MODEL, silentLogger } from './fixture.ts';

describe('ModelCatalog', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });
  async function open(options: Parameters<typeof createRepository>[0] = {}): Promise<{ root: string; catalog: ModelCatalog }> {
    const root = await createRepository(options);
    roots.push(root);
    return { root, catalog: await ModelCatalog.open(root, 60_000, silentLogger) };
  }
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (error) {
      return error instanceof InferlineError ? error.code : 'other';
    }
    return undefined;
  };

  it('resolves a model to its latest served version, or to an explicit served version', async () => {
    const { catalog } = await open({ versions: [1, 3], versionPolicy: { all: {} } });
    assert.equal(catalog.resolve(MODEL).version, 3);
    assert.equal(catalog.resolve(MODEL, 1).version, 1);
    assert.equal(catalog.resolve(MODEL).config.name, MODEL);
    catalog.close();
  });

  it('throws model_not_found for an unknown name, version_not_found for a version not served', async () => {
    const { catalog } = await open({ versions: [1, 2] }); // latest{1}: only 2 is served
    assert.equal(code(() => catalog.resolve('nope')), 'model_not_found');
    assert.equal(code(() => catalog.resolve(MODEL, 1)), 'version_not_found');
    assert.equal(code(() => catalog.resolve(MODEL, 5)), 'version_not_found');
    catalog.close();
  });

  it('a model without a complete version folder serves nothing', async () => {
    const { catalog } = await open({ versions: [] });
    assert.equal(code(() => catalog.resolve(MODEL)), 'model_not_found');
    catalog.close();
  });

  it('refresh() picks up a new version; a broken config keeps the previous view', async () => {
    const { root, catalog } = await open({ versions: [1] });
    await addVersion(root, 2);
    await catalog.refresh();
    assert.equal(catalog.resolve(MODEL).version, 2);
    await writeFile(join(root, MODEL, 'config.json'), '{ broken');
    await catalog.refresh();
    assert.equal(catalog.resolve(MODEL).version, 2);
    catalog.close();
  });

  it('re-reads the repository every poll_interval_ms', async () => {
    const root = await createRepository({ versions: [1] });
    roots.push(root);
    const catalog = await ModelCatalog.open(root, 100, silentLogger);
    await addVersion(root, 2);
    const deadline = Date.now() + 3_000;
    while (catalog.resolve(MODEL).version !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(catalog.resolve(MODEL).version, 2);
    catalog.close();
  });

  it('serves the valid models when another config is invalid, and answers for that one with its config error', async () => {
    const { root, catalog } = await open({ versions: [1] });
    await mkdir(join(root, 'broken'));
    await writeFile(join(root, 'broken', 'config.json'), JSON.stringify({ name: 'broken', platform: 'no-such-platform' }));
    await catalog.refresh();
    assert.equal(catalog.resolve(MODEL).version, 1);
    assert.throws(
      () => catalog.resolve('broken'),
      (error: unknown) => error instanceof InferlineError && error.code === 'model_not_found' && /cannot be served: .*broken\/config\.json: field \//.test(error.message),
    );
    catalog.close();
  });

  it('open() fails with invalid_config for a missing repository folder', async () => {
    await assert.rejects(ModelCatalog.open('/nonexistent/inferline-models', 1_000, silentLogger), (error: unknown) => {
      return error instanceof InferlineError && error.code === 'invalid_config';
    });
  });
});
