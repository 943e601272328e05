import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel } from '@tensorflow/tfjs-layers';
import { parseModelConfig } from '@inferline/shared';
import { loadServable } from '../../worker/src/runtime/servable.ts';
import { readModelArtifacts } from '../../worker/src/runtime/model-artifacts.ts';
import { buildGloveEmbed, GLOVE_JSON_FILE, verifyChecksums } from '../src/models/build-glove-embed.ts';
import { buildSpamClassify, HEAD_MODEL_FILE, METRICS_FILE, readSpamExamples, type SpamMetrics } from '../src/models/build-spam-classify.ts';
import { SPAM_CORPUS_FILE_LIST, SPAM_LABELS, splitCorpus } from '../src/models/spam-corpus.ts';

const DIMS = 8;
const HAM_WORDS = ['meeting', 'code', 'review', 'patch', 'list', 'thanks', 'build', 'kernel'];
const SPAM_WORDS = ['free', 'money', 'prize', 'click', 'offer', 'win', 'cash', 'now'];
const WORDS = ['the', ',', '.', '!', ...HAM_WORDS, ...SPAM_WORDS];
const MESSAGES_PER_LABEL = 40;

/** A deterministic generator of values in [0, 1). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
}

/** A source file in the wink-embeddings format (see build-glove-embed.ts), 6-decimal values. */
function gloveSource(): string {
  const next = lcg(7);
  const entries = WORDS.map((word, row) => {
    const v = Array.from({ length: DIMS }, () => Math.round((next() - 0.5) * 2e6) / 1e6);
    return `${JSON.stringify(word)}:[${[...v, Math.hypot(...v).toFixed(6), row].join(',')}]`;
  });
  return (
    `{"precision":8,"l2NormIndex":${DIMS},"wordIndex":${DIMS + 1},"size":${WORDS.length},"dimensions":${DIMS},` +
    `"words":${JSON.stringify(WORDS)},"vectors":{${entries.join(',')}},"unkVector":[${new Array(DIMS + 2).fill(0).join(',')}]}`
  );
}

/** A corpus package: ham messages (plain text) use ham words, spam messages (HTML) spam words. */
async function writeCorpus(dir: string): Promise<void> {
  const next = lcg(11);
  const pick = (words: readonly string[], n: number) => Array.from({ length: n }, () => words[Math.floor(next() * words.length)]).join(' ');
  const files: string[] = [];
  for (const group of ['easy-ham-1', 'spam-1']) {
    await mkdir(join(dir, 'data', group), { recursive: true });
    for (let i = 0; i < MESSAGES_PER_LABEL; i++) {
      const id = String(i).padStart(5, '0');
      const ham = group.startsWith('easy');
      const text = ham
        ? `From: a@example.org\nSubject: ${pick(HAM_WORDS, 3)}\n\nThe ${pick(HAM_WORDS, 12)}.\n`
        : `From: b@example.com\nSubject: ${pick(SPAM_WORDS, 3)}!\nContent-Type: text/html\n\n<p>The ${pick(SPAM_WORDS, 12)}!</p>\n`;
      files.push(`${group}/${id}.x${i}.txt`);
      await writeFile(join(dir, 'data', group, `${id}.x${i}.json`), JSON.stringify({ id, group, text }));
    }
  }
  await writeFile(join(dir, SPAM_CORPUS_FILE_LIST), JSON.stringify(files));
}

async function readFiles(folder: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of (await readdir(folder)).sort()) files.set(name, await readFile(join(folder, name)));
  return files;
}

const spamConfig = parseModelConfig({
  name: 'spam-classify',
  platform: 'embedding-bag',
  signature: {
    inputs: [{ name: 'text', dtype: 'string', shape: [] }],
    outputs: [
      { name: 'probabilities', dtype: 'float32', shape: [2] },
      { name: 'label', dtype: 'string', shape: [] },
    ],
  },
  preprocess: { type: 'glove-tokenizer', max_tokens: 256 },
  head: { model_file: HEAD_MODEL_FILE },
  postprocess: { type: 'classifier', labels_file: 'labels.txt' },
});
const gloveConfig = parseModelConfig({
  name: 'glove-embed',
  platform: 'embedding-bag',
  signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'embedding', dtype: 'float32', shape: [DIMS] }] },
  preprocess: { type: 'glove-tokenizer', max_tokens: 256 },
});

describe('buildSpamClassify', () => {
  let dir: string;
  let gloveDir: string;
  let corpusDir: string;
  let outDir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-build-spam-'));
    gloveDir = join(dir, 'glove');
    corpusDir = join(dir, 'corpus');
    outDir = join(dir, 'spam-classify', '1');
    await mkdir(gloveDir);
    await writeFile(join(gloveDir, GLOVE_JSON_FILE), gloveSource());
    await writeCorpus(corpusDir);
    const built = await buildSpamClassify({ gloveDir, corpusDir, outDir });
    assert.equal(built.skipped, false);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('writes a complete version folder: the glove-embed table and vocab, the head, labels, metrics', async () => {
    assert.ok(await verifyChecksums(outDir));
    assert.deepEqual([...(await readFiles(outDir)).keys()], [
      'checksums.sha256',
      'group1-shard1of1.bin',
      'head.json',
      'head.weights.bin',
      'labels.txt',
      METRICS_FILE,
      'model.json',
      'vocab.txt',
    ]);
    assert.equal(await readFile(join(outDir, 'labels.txt'), 'utf8'), 'ham\nspam\n');
    const gloveOut = join(dir, 'glove-embed', '1');
    await buildGloveEmbed({ sourceDir: gloveDir, outDir: gloveOut });
    for (const file of ['group1-shard1of1.bin', 'vocab.txt']) {
      assert.ok((await readFile(join(outDir, file))).equals(await readFile(join(gloveOut, file))), `${file} is glove-embed's`);
    }
  });

  test('the served model is its head applied to the glove-embed embedding of the text', async () => {
    const texts = (await readSpamExamples(corpusDir)).heldOut.map((example) => example.text).concat(['', 'zzqx only unknown words', 'free money, thanks for the review']);
    const spam = await loadServable(spamConfig, outDir, 1);
    const glove = await loadServable(gloveConfig, join(dir, 'glove-embed', '1'), 1);
    const head = await loadLayersModel(tf.io.fromMemory(await readModelArtifacts(outDir, HEAD_MODEL_FILE)));
    try {
      const served = await spam.predict(texts);
      const embeddings = (await glove.predict(texts)).map((output) => output.embedding as Float32Array);
      const expected = tf.tidy(() => (head.predict(tf.tensor2d(embeddings.flatMap((e) => [...e]), [texts.length, DIMS])) as tf.Tensor).arraySync() as number[][]);
      served.forEach((output, i) => {
        const probabilities = output.probabilities as Float32Array;
        const row = expected[i] as number[];
        assert.deepEqual([...probabilities], row.map(Math.fround), `text ${i}`);
        assert.equal(output.label, SPAM_LABELS[row[1] as number > (row[0] as number) ? 1 : 0]);
      });
    } finally {
      head.dispose();
      spam.dispose();
      glove.dispose();
    }
  });

  test('metrics.json: the split of the corpus and the held-out accuracy the served model gives', async () => {
    const metrics = JSON.parse(await readFile(join(outDir, METRICS_FILE), 'utf8')) as SpamMetrics;
    const { train, heldOut } = await readSpamExamples(corpusDir);
    assert.deepEqual(
      [train.length, heldOut.length],
      Object.values(splitCorpus(train.concat(heldOut))).map((part: unknown[]) => part.length),
    );
    assert.equal(metrics.split.train, train.length);
    assert.equal(metrics.split.held_out, heldOut.length);
    assert.ok(heldOut.length > 0 && train.length > heldOut.length);
    const spam = await loadServable(spamConfig, outDir, 1);
    try {
      const outputs = await spam.predict(heldOut.map((example) => example.text));
      const correct = heldOut.filter((example, i) => outputs[i]?.label === example.label).length;
      assert.equal(metrics.held_out_correct, correct);
      assert.equal(metrics.held_out_accuracy, correct / heldOut.length);
      for (const label of SPAM_LABELS) {
        assert.equal(metrics.per_class[label]?.support, heldOut.filter((example) => example.label === label).length);
      }
      // The classes use disjoint words (but for "the" and punctuation): a working head separates them.
      assert.ok(metrics.held_out_accuracy > 0.8, `accuracy ${metrics.held_out_accuracy}`);
    } finally {
      spam.dispose();
    }
  });

  test('a config that does not fit the head or its labels is invalid_config naming the field', async () => {
    const variant = (fields: Record<string, unknown>) => parseModelConfig({ ...spamConfig, ...fields });
    const outputs = spamConfig.signature.outputs;
    const cases: [ReturnType<typeof parseModelConfig>, string][] = [
      [variant({ signature: { ...spamConfig.signature, outputs: [...outputs, { name: 'embedding', dtype: 'float32', shape: [DIMS] }] } }), '/signature/outputs'],
      [variant({ signature: { ...spamConfig.signature, outputs: [{ ...outputs[0], shape: [3] }, outputs[1]] } }), '/signature/outputs/0'],
      [variant({ postprocess: { type: 'classifier', labels_file: 'vocab.txt' } }), '/signature/outputs/0'],
      [
        variant({ signature: { ...spamConfig.signature, outputs: [{ ...outputs[0], shape: [-1] }, outputs[1]] }, postprocess: { type: 'classifier', labels_file: 'vocab.txt' } }),
        '/postprocess/labels_file',
      ],
      [variant({ postprocess: { type: 'classifier', embedding_layer: 'hidden' } }), '/postprocess/embedding_layer'],
      [variant({ head: { model_file: 'missing.json' } }), 'missing.json'],
    ];
    for (const [config, field] of cases) {
      await assert.rejects(loadServable(config, outDir, 1), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'invalid_config');
        assert.ok(error.message.includes(field), error.message);
        return true;
      });
    }
  });

  test('a second build gives the same bytes; a complete folder is skipped', async () => {
    const again = join(dir, 'again', '1');
    await buildSpamClassify({ gloveDir, corpusDir, outDir: again });
    assert.deepEqual(await readFiles(again), await readFiles(outDir));
    assert.deepEqual(await buildSpamClassify({ gloveDir, corpusDir, outDir }), { skipped: true });
  });
});
