import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { isInferlineError } from '@inferline/shared';
import { initBackend } from '../src/runtime/backend.ts';
import {
  binExpectation,
  decodeNanodet,
  readHeadOutputs,
  suppressPerClass,
  type Candidates,
  type HeadOutput,
} from '../src/postprocess/nanodet.ts';

before(async () => {
  await initBackend();
});

/** Numbers equal within `tolerance`, element-wise. */
function assertClose(actual: readonly number[], expected: readonly number[], tolerance = 1e-9): void {
  assert.equal(actual.length, expected.length, `${JSON.stringify(actual)} vs ${JSON.stringify(expected)}`);
  actual.forEach((value, i) => assert.ok(Math.abs(value - (expected[i] as number)) <= tolerance, `[${i}]: ${value} vs ${expected[i]}`));
}

describe('binExpectation', () => {
  test('is Σ i·softmax(bins)ᵢ', () => {
    // softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2] → 0·1/4 + 1·1/4 + 2·1/2 = 1.25
    assertClose([binExpectation([0, 0, Math.log(2)], 0, 1, 3)], [1.25]);
    // Equal logits: the mean index, (0 + 1 + 2 + 3) / 4.
    assertClose([binExpectation([7, 7, 7, 7], 0, 1, 4)], [1.5]);
  });

  test('reads bins `step` apart from `offset`, and stays finite for large logits', () => {
    // Bins at 1, 3, 5: [1000, 1000, -inf-ish] → softmax [1/2, 1/2, 0] → 0.5.
    assertClose([binExpectation([9, 1000, 9, 1000, 9, -1000], 1, 2, 3)], [0.5]);
  });
});

/** A one-image head, stride 8 on a 16×16 input (2×2 grid), 2 classes, 3 bins per side. */
function smallHead(): HeadOutput {
  const plane = 4;
  const scores = new Float32Array(2 * plane).fill(0.1);
  const boxes = new Float32Array(12 * plane);
  const set = (channel: number, cell: number, value: number) => (boxes[channel * plane + cell] = value);
  // Cell (x=1, y=0) = cell 1: class 0 scores 0.5, class 1 scores 0.9 → class 1, 0.9.
  scores[0 * plane + 1] = 0.5;
  scores[1 * plane + 1] = 0.9;
  // Its sides: left bins [0, 0, ln 2] → 1.25 bins = 10 px; top [50, 0, 0] → 0 px; right [0, 50, 0] → 8 px;
  // bottom [0, 0, 50] → 16 px.
  [0, 0, Math.log(2), 50, 0, 0, 0, 50, 0, 0, 0, 50].forEach((value, channel) => set(channel, 1, value));
  // Cell (x=0, y=1) = cell 2: class 0 scores exactly the threshold 0.4; all bins equal → 1 bin = 8 px a side.
  scores[0 * plane + 2] = 0.4;
  // Cell 3: best score 0.39, under the threshold.
  scores[1 * plane + 3] = 0.39;
  return { stride: 8, scores, boxes, classes: 2, bins: 3, height: 2, width: 2 };
}

describe('decodeNanodet', () => {
  test('decodes centre ± s·E[bin] per side, clips to the input, and scales to the source image', async () => {
    const [detections] = await decodeNanodet(
      [smallHead()],
      [{ width: 16, height: 16, sourceWidth: 32, sourceHeight: 64 }],
      { score_threshold: 0.4, iou_threshold: 0.5, labels: ['cat', 'dog'] },
    );
    assert.ok(detections);
    assert.deepEqual(
      detections.map((d) => [d.label, Math.round(d.score * 1e6) / 1e6]),
      [
        ['dog', 0.9],
        ['cat', 0.4],
      ],
    );
    // Cell 1: centre (1.5·8, 0.5·8) = (12, 4); box [12 − 10, 4 − 0, 12 + 8, 4 + 16] = [2, 4, 20, 20], clipped to
    // 16 → [2, 4, 16, 16]; ×(32/16, 64/16) = ×(2, 4) → [4, 16, 32, 64].
    assertClose(detections[0]?.box ?? [], [4, 16, 32, 64], 1e-6);
    // Cell 2: centre (4, 12); 8 px a side → [-4, 4, 12, 20] → clipped [0, 4, 12, 16] → [0, 16, 24, 64].
    assertClose(detections[1]?.box ?? [], [0, 16, 24, 64], 1e-6);
  });

  test('keeps a score equal to score_threshold and drops one below it', async () => {
    const [strict] = await decodeNanodet([smallHead()], [{ width: 16, height: 16, sourceWidth: 16, sourceHeight: 16 }], {
      score_threshold: 0.41,
      iou_threshold: 0.5,
      labels: ['cat', 'dog'],
    });
    assert.deepEqual(strict?.map((d) => d.label), ['dog']);
  });

  test('reads image b of a batch from its own slice', async () => {
    const one = smallHead();
    // Batch of 2: image 0 all 0.1 (nothing), image 1 = the small head.
    const head: HeadOutput = {
      ...one,
      scores: Float32Array.from([...new Float32Array(8).fill(0.1), ...one.scores]),
      boxes: Float32Array.from([...new Float32Array(48), ...one.boxes]),
    };
    const geometry = { width: 16, height: 16, sourceWidth: 16, sourceHeight: 16 };
    const [first, second] = await decodeNanodet([head], [geometry, geometry], { score_threshold: 0.4, iou_threshold: 0.5, labels: ['cat', 'dog'] });
    assert.deepEqual(first, []);
    assert.deepEqual(second?.map((d) => d.label), ['dog', 'cat']);
    assertClose(second?.[0]?.box ?? [], [2, 4, 16, 16], 1e-6);
  });

  test('fails when the heads score another number of classes than the labels name', async () => {
    await assert.rejects(
      decodeNanodet([smallHead()], [{ width: 16, height: 16, sourceWidth: 16, sourceHeight: 16 }], { score_threshold: 0.4, iou_threshold: 0.5, labels: ['cat'] }),
      (error) => isInferlineError(error) && error.code === 'inference_failed',
    );
  });
});

describe('suppressPerClass', () => {
  test('drops a box overlapping a better one of its class, keeps other classes and distant boxes', async () => {
    const candidates: Candidates = {
      // A [0,0,10,10]; B [1,0,11,10]: IoU with A = 90 / 110 ≈ 0.82; C far away; D = A's box in class 1;
      // E [5,0,15,10]: IoU with A = 50 / 150 ≈ 0.33, with B = 60 / 140 ≈ 0.43.
      boxes: [0, 0, 10, 10, 1, 0, 11, 10, 20, 20, 30, 30, 0, 0, 10, 10, 5, 0, 15, 10],
      scores: [0.9, 0.8, 0.7, 0.6, 0.5],
      classes: [0, 0, 0, 1, 0],
    };
    // A kept; B suppressed by A; C kept; D kept (other class); E kept (B, suppressed, does not count).
    assert.deepEqual(await suppressPerClass(candidates, 0.5), [0, 2, 3, 4]);
    // At 0.3, E's IoU with A (0.33) suppresses it too.
    assert.deepEqual(await suppressPerClass(candidates, 0.3), [0, 2, 3]);
  });

  test('returns the kept boxes highest score first across classes, and nothing for no candidates', async () => {
    const candidates: Candidates = { boxes: [0, 0, 1, 1, 5, 5, 6, 6, 9, 9, 10, 10], scores: [0.2, 0.9, 0.5], classes: [3, 1, 3] };
    assert.deepEqual(await suppressPerClass(candidates, 0.5), [1, 2, 0]);
    assert.deepEqual(await suppressPerClass({ boxes: [], scores: [], classes: [] }, 0.5), []);
  });

  test('frees its tensors', async () => {
    const before = tf.memory().numTensors;
    await suppressPerClass({ boxes: [0, 0, 1, 1, 0, 0, 1, 1], scores: [0.5, 0.4], classes: [0, 0] }, 0.5);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('readHeadOutputs', () => {
  test('reads [B, C, H, W] scores and [B, 4·bins, H, W] boxes', async () => {
    const scores = tf.zeros([2, 80, 13, 13]);
    const boxes = tf.zeros([2, 44, 13, 13]);
    const [head] = await readHeadOutputs([scores, boxes], [{ stride: 32, scores: 's', boxes: 'b' }], { width: 416, height: 416 });
    assert.deepEqual([head?.classes, head?.bins, head?.height, head?.width, head?.scores.length], [80, 11, 13, 13, 2 * 80 * 169]);
    tf.dispose([scores, boxes]);
  });

  test('rejects a grid that does not match the stride', async () => {
    const scores = tf.zeros([1, 80, 26, 26]);
    const boxes = tf.zeros([1, 44, 26, 26]);
    await assert.rejects(
      readHeadOutputs([scores, boxes], [{ stride: 32, scores: 's', boxes: 'b' }], { width: 416, height: 416 }),
      (error) => isInferlineError(error) && error.code === 'inference_failed' && /stride 32/.test(error.message),
    );
    tf.dispose([scores, boxes]);
  });
});
