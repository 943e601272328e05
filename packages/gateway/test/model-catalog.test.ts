import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InferlineError, type LiveVersion } from '@inferline/shared';
import { ModelCatalog, type VersionSelector } from '../src/model-catalog.ts';
import { addVersion, createRepository, MODEL, silentLogger, type RepositoryOptions } from './fixture.ts';

type Held = Record<number, LiveVersion['state'] | { state: LiveVersion['state']; error: string }>;

describe('ModelCatalog', () => {
  const roots: string[] = [];
  after(async () => {
    for (const root of roots) await rm(root, { recursive: true, force: true });
  });

  /** A catalog over a temp repository whose workers hold `held` (a fake of the Redis read). */
  async function open(options: RepositoryOptions = {}, held: Held = { 1: 'AVAILABLE' }, seed?: number) {
    const root = await createRepository(options);
    roots.push(root);
    const catalog = await ModelCatalog.open(root, 60_000, silentLogger, seed);
    let view = liveView(held);
    catalog.followWorkers(() => Promise.resolve(view), 60_000);
    await catalog.refreshLive();
    const hold = async (next: Held): Promise<void> => {
      view = liveView(next);
      await catalog.refreshLive();
    };
    return { root, catalog, hold };
  }
  const code = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (error) {
      return error instanceof InferlineError ? error.code : 'other';
    }
    return undefined;
  };
  const version = (catalog: ModelCatalog, selector: VersionSelector = {}) => catalog.resolveNow(MODEL, selector).version;

  it('resolves to the latest AVAILABLE version the policy selects, or an explicit AVAILABLE one', async () => {
    const { catalog } = await open({ versions: [1, 3], versionPolicy: { all: {} } }, { 1: 'AVAILABLE', 3: 'AVAILABLE' });
    assert.equal(version(catalog), 3);
    assert.equal(version(catalog, { version: 1 }), 1);
    assert.equal(catalog.resolveNow(MODEL).config.name, MODEL);
    catalog.close();
  });

  it('scale_to_zero: with no version AVAILABLE anywhere, a selected version is admitted unless a live worker failed to load it; one AVAILABLE is preferred as usual', async () => {
    const { catalog, hold } = await open({ versions: [1, 2], versionPolicy: { all: {} }, scaleToZero: true }, {});
    assert.equal(version(catalog), 2, 'no worker at all: the latest selected version');
    assert.equal(version(catalog, { version: 1 }), 1);
    assert.equal(code(() => version(catalog, { version: 7 })), 'version_not_found', 'a version the policy does not select is still 404');
    await hold({ 2: 'LOADING' });
    assert.equal(version(catalog), 2, 'the first worker is still loading: admitted');
    await hold({ 2: { state: 'END', error: 'shard 3 is truncated' } });
    assert.equal(version(catalog), 1, 'the failed version is refused; the other selected one is admitted');
    assert.equal(code(() => version(catalog, { version: 2 })), 'model_unavailable');
    await hold({ 1: 'AVAILABLE', 2: 'LOADING' });
    assert.equal(version(catalog), 1, 'once a worker has a version AVAILABLE, the usual rule applies');
    assert.equal(code(() => version(catalog, { version: 2 })), 'model_unavailable');
    catalog.close();
  });

  it('a selected version no live worker has AVAILABLE is 503 model_unavailable with the reason and Retry-After; one not selected is 404', async () => {
    const { catalog, hold } = await open({ versions: [1, 2], versionPolicy: { all: {} } }, { 1: 'AVAILABLE', 2: 'LOADING' });
    assert.equal(version(catalog), 1, 'the default skips a version still loading');
    assert.throws(
      () => version(catalog, { version: 2 }),
      (error: unknown) => error instanceof InferlineError && error.code === 'model_unavailable' && /is loading/.test(error.message) && error.details?.retry_after_s === 1,
    );
    assert.equal(code(() => version(catalog, { version: 7 })), 'version_not_found');
    await hold({ 2: { state: 'END', error: 'shard 3 is truncated' } });
    assert.throws(() => version(catalog), (error: unknown) => error instanceof InferlineError && error.code === 'model_unavailable' && /failed to load: shard 3 is truncated/.test(error.message));
    await hold({});
    assert.throws(() => version(catalog), (error: unknown) => error instanceof InferlineError && /not loaded by any live worker/.test(error.message));
    catalog.close();
  });

  it('a version that left the policy keeps taking default traffic until its successor is AVAILABLE, then not', async () => {
    // latest{1} over [1, 2]: only 2 is selected; the workers still serve 1 while 2 loads.
    const { catalog, hold } = await open({ versions: [1, 2] }, { 1: 'AVAILABLE', 2: 'LOADING' });
    assert.equal(version(catalog), 1);
    await hold({ 1: 'AVAILABLE', 2: 'AVAILABLE' });
    assert.equal(version(catalog), 2);
    await hold({ 1: 'UNLOADING', 2: 'AVAILABLE' });
    assert.equal(version(catalog), 2);
    assert.equal(code(() => version(catalog, { version: 1 })), 'version_not_found', 'a draining version takes no explicit request either');
    catalog.close();
  });

  it('labels route to their version; an unknown label is 404 version_not_found naming the labels', async () => {
    const { catalog } = await open({ versions: [1, 2], versionPolicy: { all: {} }, versionLabels: { stable: 1, canary: 2 } }, { 1: 'AVAILABLE', 2: 'AVAILABLE' });
    assert.equal(version(catalog, { label: 'stable' }), 1);
    assert.equal(version(catalog, { label: 'canary' }), 2);
    assert.throws(
      () => version(catalog, { label: 'beta' }),
      (error: unknown) => error instanceof InferlineError && error.code === 'version_not_found' && /labels: stable, canary/.test(error.message),
    );
    catalog.close();
  });

  it('a 70/30 traffic split over labels lands within ±4 % over 2,000 requests (seeded); an unavailable entry is left out of the draw', async () => {
    const options = { versions: [1, 2], versionPolicy: { all: {} }, versionLabels: { stable: 1, canary: 2 }, traffic: { stable: 70, canary: 30 } };
    const { catalog, hold } = await open(options, { 1: 'AVAILABLE', 2: 'AVAILABLE' }, 42);
    let toStable = 0;
    for (let i = 0; i < 2_000; i++) if (version(catalog) === 1) toStable++;
    assert.ok(Math.abs(toStable / 2_000 - 0.7) <= 0.04, `${toStable} of 2000 went to stable`);
    await hold({ 1: 'LOADING', 2: 'AVAILABLE' });
    for (let i = 0; i < 50; i++) assert.equal(version(catalog), 2);
    catalog.close();
  });

  it('throws model_not_found for an unknown name or a model without a complete version folder', async () => {
    const { catalog } = await open({ versions: [1] });
    assert.equal(code(() => catalog.resolveNow('nope')), 'model_not_found');
    catalog.close();
    const empty = await open({ versions: [] }, {});
    assert.equal(code(() => empty.catalog.resolveNow(MODEL)), 'model_not_found');
    empty.catalog.close();
  });

  it('resolve() reads the workers again before answering 503', async () => {
    const root = await createRepository({ versions: [1] });
    roots.push(root);
    const catalog = await ModelCatalog.open(root, 60_000, silentLogger);
    let reads = 0;
    catalog.followWorkers(() => Promise.resolve(++reads > 1 ? liveView({ 1: 'AVAILABLE' }) : liveView({})), 60_000);
    await catalog.refreshLive();
    assert.equal(code(() => catalog.resolveNow(MODEL)), 'model_unavailable');
    assert.equal((await catalog.resolve(MODEL)).version, 1);
    assert.equal(reads, 2);
    catalog.close();
  });

  it('without requireAvailable (metadata) the policy alone decides', async () => {
    const { catalog } = await open({ versions: [1, 2], versionPolicy: { all: {} } }, {});
    assert.equal(catalog.resolveNow(MODEL, {}, { requireAvailable: false }).version, 2);
    assert.equal(catalog.resolveNow(MODEL, { version: 1 }, { requireAvailable: false }).version, 1);
    catalog.close();
  });

  it('refresh() picks up a new version; a broken config keeps the previous view', async () => {
    const { root, catalog, hold } = await open({ versions: [1] });
    await addVersion(root, 2);
    await catalog.refresh();
    await hold({ 1: 'AVAILABLE', 2: 'AVAILABLE' });
    assert.equal(version(catalog), 2);
    await writeFile(join(root, MODEL, 'config.json'), '{ broken');
    await catalog.refresh();
    assert.equal(version(catalog), 2);
    catalog.close();
  });

  it('re-reads the repository every poll_interval_ms', async () => {
    const root = await createRepository({ versions: [1] });
    roots.push(root);
    const catalog = await ModelCatalog.open(root, 100, silentLogger);
    await addVersion(root, 2);
    const deadline = Date.now() + 3_000;
    while (catalog.get(MODEL)?.served.at(-1) !== 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(catalog.get(MODEL)?.served, [2]);
    catalog.close();
  });

  it('serves the valid models when another config is invalid, and answers for that one with its config error', async () => {
    const { root, catalog } = await open({ versions: [1] });
    await mkdir(join(root, 'broken'));
    await writeFile(join(root, 'broken', 'config.json'), JSON.stringify({ name: 'broken', platform: 'no-such-platform' }));
    await catalog.refresh();
    assert.equal(version(catalog), 1);
    assert.throws(
      () => catalog.resolveNow('broken'),
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

/** A live view as `aggregateVersions` gives it: version → state (and a failed load's error). */
function liveView(held: Held): Map<number, LiveVersion> {
  return new Map(
    Object.entries(held).map(([version, entry]) => {
      const { state, error } = typeof entry === 'string' ? { state: entry, error: undefined } : entry;
      return [Number(version), { state, available: state === 'AVAILABLE' ? 1 : 0, ...(error === undefined ? {} : { error }) }];
    }),
  );
}
