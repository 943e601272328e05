import assert from 'node:assert/strict';
import { access, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { loadModelConfig } from '@inferline/shared';
import { writeEmbeddingBagModel } from '../../cli/src/models/build-glove-embed.ts';
import { loadMobyDickParagraphs } from '../../../bench/corpus.ts';
import { initBackend, wasmSimdEnabled } from '../src/runtime/backend.ts';
import { loadServable, type Servable } from '../src/runtime/servable.ts';
import { tokenize } from '../src/pipelines/glove-tokenizer.ts';
import { tinyEmbedConfig } from './tiny-embed.ts';

const DIMS = 16;
const WORDS = ['the', ',', '.', 'whale', "whale's", 'call', 'me', 'ishmael', 'sea', '1851', '!', 'ahab', '"', 'white', 'of', 'a'];
const UNKNOWN = ['zzqx', 'queequeg', 'pequod', '~'];

/** Deterministic table values in [-1, 1). */
function makeTable(rows: number, dims: number): Float32Array {
  let state = 12345;
  return new Float32Array(rows * dims).map(() => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

const table = makeTable(WORDS.length, DIMS);

/** The straightforward definition: mean of the known tokens' rows, then L2 norm; zeros without a known token. */
function reference(text: string): Float64Array {
  const sum = new Float64Array(DIMS);
  let count = 0;
  for (const token of tokenize(text, 256)) {
    const row = WORDS.indexOf(token);
    if (row < 0) continue;
    count++;
    for (let d = 0; d < DIMS; d++) sum[d] = (sum[d] ?? 0) + (table[row * DIMS + d] ?? 0);
  }
  if (count === 0) return sum;
  const norm = Math.hypot(...sum);
  return sum.map((x) => x / norm);
}

function assertClose(actual: unknown, expected: Float64Array, label: string): void {
  assert.ok(actual instanceof Float32Array, `${label}: a Float32Array`);
  assert.equal(actual.length, expected.length, label);
  for (let d = 0; d < expected.length; d++) {
    assert.ok(Math.abs((actual[d] ?? NaN) - (expected[d] ?? NaN)) <= 1e-5, `${label}[${d}]: ${actual[d]} vs ${expected[d]}`);
  }
}

let dir: string;
let versionDir: string;
let servable: Servable;

before(async () => {
  await initBackend();
  dir = await mkdtemp(join(tmpdir(), 'inferline-embedding-bag-'));
  versionDir = join(dir, 'tiny-embed', '1');
  await writeEmbeddingBagModel(versionDir, WORDS, table, DIMS, { source: 'test' });
  servable = await loadServable(tinyEmbedConfig(DIMS), versionDir, 1);
});

after(async () => {
  servable.dispose();
  await rm(dir, { recursive: true, force: true });
});

test('runs on the backend initBackend picked, which implements SparseSegmentMean', async () => {
  assert.equal(servable.backend, tf.getBackend());
  assert.ok(tf.getKernel('SparseSegmentMean', tf.getBackend()), `${tf.getBackend()} has a SparseSegmentMean kernel`);
  if (tf.getBackend() === 'wasm') assert.equal(await wasmSimdEnabled(), true);
  assert.equal(await initBackend(), tf.getBackend(), 'initBackend is idempotent');
});

test('embeds a ragged batch mixing empty, unknown-only and normal texts, ending with an empty text', async () => {
  const texts = ['', 'zzqx queequeg', 'Call me Ishmael.', '', 'The white whale, the whale!', '   ', "Ahab's pequod", 'sea', ''];
  const outputs = await servable.predict(texts);
  assert.equal(outputs.length, texts.length);
  for (const [i, text] of texts.entries()) {
    assert.deepEqual(Object.keys(outputs[i] ?? {}), ['embedding']);
    assertClose(outputs[i]?.embedding, reference(text), `text ${i} ${JSON.stringify(text)}`);
  }
  assert.deepEqual([...(outputs[1]?.embedding as Float32Array)], new Array<number>(DIMS).fill(0), 'unknown-only text is zeros, not NaN');
});

test('a batch with no known token at all, and an empty batch', async () => {
  const outputs = await servable.predict(['', 'zzqx']);
  assert.deepEqual(outputs.map((o) => [...(o.embedding as Float32Array)]), [new Array<number>(DIMS).fill(0), new Array<number>(DIMS).fill(0)]);
  assert.deepEqual(await servable.predict([]), []);
});

test('matches the reference on random batches (property) and leaks no tensor', async () => {
  const word = fc.constantFrom(...WORDS, ...UNKNOWN, 'The', 'WHALE', '');
  const text = fc.array(word, { maxLength: 12 }).map((words) => words.join(' '));
  const before = tf.memory().numTensors;
  await fc.assert(
    fc.asyncProperty(fc.array(text, { maxLength: 40 }), async (texts) => {
      const outputs = await servable.predict(texts);
      assert.equal(outputs.length, texts.length);
      texts.forEach((t, i) => assertClose(outputs[i]?.embedding, reference(t), `text ${i} ${JSON.stringify(t)}`));
    }),
    { numRuns: 200 },
  );
  assert.equal(tf.memory().numTensors, before);
});

test('one batch of Moby Dick paragraphs equals the texts embedded one by one', async () => {
  const paragraphs = loadMobyDickParagraphs().slice(0, 64);
  const batched = await servable.predict(paragraphs);
  for (const [i, paragraph] of paragraphs.entries()) {
    const [single] = await servable.predict([paragraph]);
    assertClose(batched[i]?.embedding, Float64Array.from(single?.embedding as Float32Array), `paragraph ${i}`);
    assertClose(single?.embedding, reference(paragraph), `paragraph ${i} vs reference`);
  }
});

test('keeps only the first max_tokens tokens', async () => {
  const capped = await loadServable(tinyEmbedConfig(DIMS, { preprocess: { type: 'glove-tokenizer', max_tokens: 2 } }), versionDir, 1);
  try {
    const [out] = await capped.predict(['whale sea ahab ahab ahab']);
    assertClose(out?.embedding, reference('whale sea'), 'capped');
  } finally {
    capped.dispose();
  }
});

test('warms up at each size and rejects a non-string input', async () => {
  await servable.warmup([1, 8, 32]);
  await assert.rejects(servable.predict(['ok', 42]), { code: 'invalid_input' });
});

test('loads a table split over several shards', async () => {
  const rows = 11_000;
  const words = Array.from({ length: rows }, (_, i) => `w${i}`);
  const big = makeTable(rows, 100);
  const bigDir = join(dir, 'big', '1');
  await writeEmbeddingBagModel(bigDir, words, big, 100);
  const bigConfig = tinyEmbedConfig(DIMS, {
    signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'vector', dtype: 'float32', shape: [100] }] },
  });
  const model = await loadServable(bigConfig, bigDir, 1);
  try {
    const [out] = await model.predict([`w${rows - 1}`]);
    const row = big.subarray((rows - 1) * 100, rows * 100);
    const norm = Math.hypot(...row);
    assertClose(out?.vector, Float64Array.from(row, (x) => x / norm), 'last row');
  } finally {
    model.dispose();
  }
});

test('refuses an unsupported platform, a mismatched signature and broken version folders', async () => {
  await assert.rejects(loadServable(tinyEmbedConfig(DIMS, { platform: 'tfjs-graph' }), versionDir, 1), { code: 'invalid_config' });
  await assert.rejects(
    loadServable(tinyEmbedConfig(DIMS, { signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'e', dtype: 'float32', shape: [7] }] } }), versionDir, 1),
    /outputs\/0\/shape/,
  );
  await assert.rejects(loadServable(tinyEmbedConfig(DIMS, { preprocess: undefined }), versionDir, 1), /preprocess/);
  await assert.rejects(loadServable(tinyEmbedConfig(DIMS), join(dir, 'nowhere'), 1), { code: 'invalid_config' });

  const broken = join(dir, 'broken', '1');
  await writeEmbeddingBagModel(broken, WORDS, table, DIMS);
  await writeFile(join(broken, 'vocab.txt'), WORDS.slice(1).join('\n'));
  await assert.rejects(loadServable(tinyEmbedConfig(DIMS), broken, 1), /15 tokens, the table has 16 rows/);
  await unlink(join(broken, 'group1-shard1of1.bin'));
  await assert.rejects(loadServable(tinyEmbedConfig(DIMS), broken, 1), /shard group1-shard1of1\.bin/);
});

const GLOVE_DIR = join(import.meta.dirname, '..', '..', '..', 'models', 'glove-embed');
const gloveBuilt = await access(join(GLOVE_DIR, '1', 'model.json')).then(
  () => true,
  () => false,
);

test('the built glove-embed model puts whale nearer to shark than to tax', { skip: !gloveBuilt && 'run `npm run models` first' }, async () => {
  const glove = await loadServable(await loadModelConfig(GLOVE_DIR), join(GLOVE_DIR, '1'), 1);
  try {
    const [whale, shark, tax, sentence] = (await glove.predict(['whale', 'shark', 'tax', 'The white whale swam in the sea.'])).map(
      (output) => output.embedding as Float32Array,
    );
    const cosine = (a: Float32Array = new Float32Array(0), b: Float32Array = new Float32Array(0)): number =>
      a.reduce((sum, x, i) => sum + x * (b[i] ?? 0), 0);
    assert.equal(whale?.length, 100);
    assert.ok(Math.abs(cosine(whale, whale) - 1) < 1e-5, 'unit length');
    assert.ok(cosine(whale, shark) > 0.6, `whale~shark ${cosine(whale, shark)}`);
    assert.ok(cosine(whale, tax) < 0.2, `whale~tax ${cosine(whale, tax)}`);
    assert.ok(cosine(sentence, whale) > cosine(sentence, tax));
  } finally {
    glove.dispose();
  }
});
