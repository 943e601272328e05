import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  buildGloveEmbed,
  CHECKSUMS_FILE,
  GLOVE_JSON_FILE,
  readGloveVectors,
  verifyChecksums,
  writeEmbeddingBagModel,
} from '../src/models/build-glove-embed.ts';

const DIMS = 100;
const WORDS = 300;
const VOCAB = 200;

/** Deterministic pseudo-random values with 6 decimals, like the source's. */
function value(row: number, col: number): number {
  const x = Math.sin(row * 131.7 + col * 7.3) * 10_000;
  return Math.round((x - Math.floor(x) - 0.5) * 4e6) / 1e6;
}

/** A source file in the wink-embeddings format (`vectors` in `words` order, as the real one). */
function syntheticSource(): { json: string; words: string[]; vectors: number[][] } {
  const special = ['the', ',', '.', '"', "don't", 'café', '\\', '$', '1851', 'whale'];
  const words = Array.from({ length: WORDS }, (_, i) => special[i] ?? `w${i}`);
  const vectors = words.map((_, row) => Array.from({ length: DIMS }, (_, col) => value(row, col)));
  const entries = words.map((word, row) => {
    const v = vectors[row] as number[];
    const l2 = Math.sqrt(v.reduce((sum, x) => sum + x * x, 0));
    return `${JSON.stringify(word)}:[${[...v, Number(l2.toFixed(6)), row].join(',')}]`;
  });
  const unk = Array.from({ length: DIMS + 2 }, () => 0).join(',');
  const json =
    `{"precision":8,"l2NormIndex":${DIMS},"wordIndex":${DIMS + 1},"size":${WORDS},"dimensions":${DIMS},` +
    `"words":${JSON.stringify(words)},"vectors":{${entries.join(',')}},"unkVector":[${unk}]}`;
  return { json, words, vectors };
}

let dir: string;
let sourceDir: string;
const source = syntheticSource();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'inferline-build-glove-'));
  sourceDir = join(dir, 'package');
  await mkdir(sourceDir);
  await writeFile(join(sourceDir, GLOVE_JSON_FILE), source.json);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readFiles(folder: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(folder)).sort()) files.set(name, await readFile(join(folder, name)));
  return files;
}

test('keeps the first vocabSize words, each row equal to its source vector', async () => {
  const outDir = join(dir, 'rows', '1');
  assert.deepEqual(await buildGloveEmbed({ sourceDir, outDir, vocabSize: VOCAB }), { skipped: false });

  const vocab = (await readFile(join(outDir, 'vocab.txt'), 'utf8')).split('\n');
  assert.equal(vocab.pop(), '');
  assert.deepEqual(vocab, source.words.slice(0, VOCAB));

  const manifest = JSON.parse(await readFile(join(outDir, 'model.json'), 'utf8')) as {
    format: string;
    weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
  };
  assert.equal(manifest.format, 'embedding-bag');
  assert.deepEqual(manifest.weightsManifest, [
    { paths: ['group1-shard1of1.bin'], weights: [{ name: 'embedding', shape: [VOCAB, DIMS], dtype: 'float32' }] },
  ]);
  const shard = await readFile(join(outDir, 'group1-shard1of1.bin'));
  assert.equal(shard.length, VOCAB * DIMS * 4);
  for (let row = 0; row < VOCAB; row++) {
    for (let col = 0; col < DIMS; col++) {
      assert.equal(shard.readFloatLE((row * DIMS + col) * 4), Math.fround(source.vectors[row]?.[col] ?? NaN), `row ${row} col ${col}`);
    }
  }
  assert.equal(await verifyChecksums(outDir), true);
  assert.deepEqual((await readdir(join(dir, 'rows'))).sort(), ['1'], 'no temporary folder left behind');
});

test('writes the same bytes twice', async () => {
  await buildGloveEmbed({ sourceDir, outDir: join(dir, 'twice-a', '1'), vocabSize: VOCAB });
  await buildGloveEmbed({ sourceDir, outDir: join(dir, 'twice-b', '1'), vocabSize: VOCAB });
  assert.deepEqual(await readFiles(join(dir, 'twice-a', '1')), await readFiles(join(dir, 'twice-b', '1')));
});

test('skips the build when every file matches checksums.sha256', async () => {
  const outDir = join(dir, 'skip', '1');
  await buildGloveEmbed({ sourceDir, outDir, vocabSize: VOCAB });
  const before = (await stat(join(outDir, 'model.json'))).mtimeMs;
  // The source is not even read: a missing source folder does not matter.
  assert.deepEqual(await buildGloveEmbed({ sourceDir: join(dir, 'missing'), outDir, vocabSize: VOCAB }), { skipped: true });
  assert.equal((await stat(join(outDir, 'model.json'))).mtimeMs, before);
});

test('rebuilds when a shard is corrupted or a file is missing', async () => {
  const outDir = join(dir, 'corrupt', '1');
  await buildGloveEmbed({ sourceDir, outDir, vocabSize: VOCAB });
  const good = await readFiles(outDir);

  const shard = join(outDir, 'group1-shard1of1.bin');
  const bytes = await readFile(shard);
  bytes[17] = (bytes[17] ?? 0) ^ 0xff;
  await writeFile(shard, bytes);
  assert.equal(await verifyChecksums(outDir), false);
  assert.deepEqual(await buildGloveEmbed({ sourceDir, outDir, vocabSize: VOCAB }), { skipped: false });
  assert.deepEqual(await readFiles(outDir), good);

  await rm(join(outDir, CHECKSUMS_FILE));
  assert.equal(await verifyChecksums(outDir), false);
  assert.deepEqual(await buildGloveEmbed({ sourceDir, outDir, vocabSize: VOCAB }), { skipped: false });
  assert.deepEqual(await readFiles(outDir), good);
});

test('stops reading once every row is filled', async () => {
  // Cut the file in the middle of the vectors after row VOCAB: a reader that went on would fail.
  const cut = source.json.indexOf(`"w${VOCAB + 5}":[`);
  const truncatedDir = join(dir, 'truncated');
  await mkdir(truncatedDir);
  await writeFile(join(truncatedDir, GLOVE_JSON_FILE), source.json.slice(0, cut + 20));
  const { words, table } = await readGloveVectors(join(truncatedDir, GLOVE_JSON_FILE), VOCAB);
  assert.equal(words.length, VOCAB);
  assert.equal(table[(VOCAB - 1) * DIMS], Math.fround(source.vectors[VOCAB - 1]?.[0] ?? NaN));
  await assert.rejects(readGloveVectors(join(truncatedDir, GLOVE_JSON_FILE), WORDS), { code: 'invalid_input' });
});

test('rejects a vector whose word index names another word', async () => {
  const badDir = join(dir, 'bad');
  await mkdir(badDir);
  await writeFile(join(badDir, GLOVE_JSON_FILE), source.json.replace(/("whale":\[[^\]]*,)9\]/, '$18]'));
  await assert.rejects(readGloveVectors(join(badDir, GLOVE_JSON_FILE), VOCAB), /claims row 8/);
});

test('writeEmbeddingBagModel splits the table into 4 MiB shards and rejects bad vocabularies', async () => {
  const rows = 11_000;
  const words = Array.from({ length: rows }, (_, i) => `t${i}`);
  const table = new Float32Array(rows * DIMS).map((_, i) => i);
  const outDir = join(dir, 'shards');
  await writeEmbeddingBagModel(outDir, words, table, DIMS);
  const first = await readFile(join(outDir, 'group1-shard1of2.bin'));
  const second = await readFile(join(outDir, 'group1-shard2of2.bin'));
  assert.equal(first.length, 4 * 1024 * 1024);
  assert.equal(first.length + second.length, rows * DIMS * 4);
  assert.equal(second.readFloatLE(second.length - 4), rows * DIMS - 1);
  assert.equal(await verifyChecksums(outDir), true);

  await assert.rejects(writeEmbeddingBagModel(join(dir, 'x'), ['a', 'a'], new Float32Array(2), 1), { code: 'invalid_input' });
  await assert.rejects(writeEmbeddingBagModel(join(dir, 'x'), ['a\nb'], new Float32Array(1), 1), { code: 'invalid_input' });
  await assert.rejects(writeEmbeddingBagModel(join(dir, 'x'), ['a'], new Float32Array(3), 2), { code: 'invalid_input' });
});
