import * as tf from '@tensorflow/tfjs-core';
import { InferlineError } from '@inferline/shared/errors';
import type { NanodetHead } from '@inferline/shared';

/**
 * Decoding of NanoDet's detection heads (Generalized Focal Loss, https://arxiv.org/abs/2006.04388; head
 * and decode as in https://github.com/RangiLyu/nanodet `gfl_head.py` / `nanodet_head.py`) into boxes in
 * source-image pixels.
 *
 * For each head (stride s, grid H × W) and cell (x, y):
 * - centre ((x + 0.5)·s, (y + 0.5)·s) in model-input pixels;
 * - class = argmax of the cell's class scores (sigmoid already applied by the graph), kept when its
 *   score ≥ `score_threshold`;
 * - each side (left, top, right, bottom) has R + 1 bins; its distance is s · Σᵢ i·softmax(bins)ᵢ;
 *   box = [cx − d_left, cy − d_top, cx + d_right, cy + d_bottom], clipped to the input.
 * Then per-class non-maximum suppression (a box whose IoU with a kept box of its class is ≥
 * `iou_threshold` is dropped; TF.js' NonMaxSuppressionV3), and the boxes are scaled to the source image
 * (the input is a stretched resize of it, so IoU is the same in both spaces).
 */

/** One detected object. */
export interface Detection {
  /** Class name from the labels file. */
  label: string;
  /** Class score, 0..1. */
  score: number;
  /** `[x1, y1, x2, y2]` in source-image pixels, clipped to the image. */
  box: [number, number, number, number];
}

/** One head's outputs for a whole batch, as read from the graph. */
export interface HeadOutput {
  stride: number;
  /** `[batch, classes, height, width]` row-major. */
  scores: Float32Array;
  /** `[batch, 4 * bins, height, width]` row-major. */
  boxes: Float32Array;
  classes: number;
  /** Bins per side (R + 1). */
  bins: number;
  height: number;
  width: number;
}

/** Size of the model input and of one source image, pixels. */
export interface ImageGeometry {
  /** Model input size (the image was resized to it, stretched). */
  width: number;
  height: number;
  /** Source image size: boxes are mapped back to it. */
  sourceWidth: number;
  sourceHeight: number;
}

/** Decode options: thresholds and labels. */
export interface DecodeOptions {
  score_threshold: number;
  iou_threshold: number;
  /** Class names, index = class. */
  labels: readonly string[];
}

/** Detections of one image before NMS: boxes `[x1, y1, x2, y2]` in model-input pixels. */
export interface Candidates {
  /** 4 numbers per candidate. */
  boxes: number[];
  scores: number[];
  classes: number[];
}

/**
 * Read the heads' output tensors (`[scores, boxes]` per head, in `heads` order) into arrays and check
 * their shapes against each other and the input size. Does not dispose the tensors.
 * @throws InferlineError `inference_failed` when a shape does not fit (message names the head).
 */
export async function readHeadOutputs(
  tensors: readonly tf.Tensor[],
  heads: readonly NanodetHead[],
  input: { width: number; height: number },
): Promise<HeadOutput[]> {
  if (tensors.length !== heads.length * 2) throw new InferlineError('inference_failed', `expected ${heads.length * 2} head tensors, got ${tensors.length}`);
  const data = await Promise.all(tensors.map((tensor) => tensor.data<'float32'>()));
  return heads.map((head, i) => {
    const scores = tensors[2 * i] as tf.Tensor;
    const boxes = tensors[2 * i + 1] as tf.Tensor;
    const [batch, classes, height, width] = scores.shape;
    const [boxBatch, boxChannels, boxHeight, boxWidth] = boxes.shape;
    const fits =
      scores.rank === 4 &&
      boxes.rank === 4 &&
      boxBatch === batch &&
      boxHeight === height &&
      boxWidth === width &&
      boxChannels !== undefined &&
      boxChannels % 4 === 0 &&
      height === Math.ceil(input.height / head.stride) &&
      width === Math.ceil(input.width / head.stride);
    if (!fits || classes === undefined || height === undefined || width === undefined || boxChannels === undefined) {
      throw new InferlineError(
        'inference_failed',
        `head stride ${head.stride}: scores [${scores.shape.join(', ')}] and boxes [${boxes.shape.join(', ')}] do not fit an input of ${input.width}×${input.height}`,
      );
    }
    return {
      stride: head.stride,
      scores: data[2 * i] as Float32Array,
      boxes: data[2 * i + 1] as Float32Array,
      classes,
      bins: boxChannels / 4,
      height,
      width,
    };
  });
}

/**
 * Expected bin index under softmax: Σᵢ i·softmax(v)ᵢ over `bins` values `v[offset + i·step]`
 * (GFL's `Integral`). Stable for large logits (the maximum is subtracted first).
 */
export function binExpectation(values: ArrayLike<number>, offset: number, step: number, bins: number): number {
  let max = -Infinity;
  for (let i = 0; i < bins; i++) max = Math.max(max, values[offset + i * step] as number);
  let sum = 0;
  let weighted = 0;
  for (let i = 0; i < bins; i++) {
    const e = Math.exp((values[offset + i * step] as number) - max);
    sum += e;
    weighted += i * e;
  }
  return weighted / sum;
}

/**
 * The cells of image `image` of the batch whose best class scores at least `scoreThreshold`, with
 * their boxes in model-input pixels, clipped to `[0, width] × [0, height]`.
 */
export function decodeCandidates(heads: readonly HeadOutput[], image: number, input: { width: number; height: number }, scoreThreshold: number): Candidates {
  const out: Candidates = { boxes: [], scores: [], classes: [] };
  for (const head of heads) {
    const { stride, classes, bins, height, width } = head;
    const plane = height * width;
    const scoreBase = image * classes * plane;
    const boxBase = image * 4 * bins * plane;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const cell = y * width + x;
        let best = 0;
        let bestScore = -Infinity;
        for (let c = 0; c < classes; c++) {
          const score = head.scores[scoreBase + c * plane + cell] as number;
          if (score > bestScore) {
            bestScore = score;
            best = c;
          }
        }
        if (bestScore < scoreThreshold) continue;
        const cx = (x + 0.5) * stride;
        const cy = (y + 0.5) * stride;
        // Side k's bins are channels k·bins .. k·bins + bins − 1.
        const distance = (side: number) => stride * binExpectation(head.boxes, boxBase + side * bins * plane + cell, plane, bins);
        out.boxes.push(
          Math.min(Math.max(cx - distance(0), 0), input.width),
          Math.min(Math.max(cy - distance(1), 0), input.height),
          Math.min(Math.max(cx + distance(2), 0), input.width),
          Math.min(Math.max(cy + distance(3), 0), input.height),
        );
        out.scores.push(bestScore);
        out.classes.push(best);
      }
    }
  }
  return out;
}

/**
 * Per-class non-maximum suppression with TF.js' `nonMaxSuppressionAsync` (the same JS implementation
 * on every backend). Returns the indices of the kept candidates, highest score first.
 */
export async function suppressPerClass(candidates: Candidates, iouThreshold: number): Promise<number[]> {
  const byClass = new Map<number, number[]>();
  candidates.classes.forEach((c, i) => {
    const members = byClass.get(c);
    if (members) members.push(i);
    else byClass.set(c, [i]);
  });
  const kept: number[] = [];
  for (const members of byClass.values()) {
    // TF's box order is [y1, x1, y2, x2].
    const corners = members.flatMap((i) => {
      const [x1, y1, x2, y2] = candidates.boxes.slice(4 * i, 4 * i + 4) as [number, number, number, number];
      return [y1, x1, y2, x2];
    });
    const boxes = tf.tensor2d(corners, [members.length, 4], 'float32');
    const scores = tf.tensor1d(members.map((i) => candidates.scores[i] as number), 'float32');
    try {
      const selected = await tf.image.nonMaxSuppressionAsync(boxes, scores, members.length, iouThreshold);
      const indices = await selected.data();
      selected.dispose();
      for (const index of indices) kept.push(members[index] as number);
    } finally {
      boxes.dispose();
      scores.dispose();
    }
  }
  // Stable: equal scores keep candidate order.
  return kept.sort((a, b) => (candidates.scores[b] as number) - (candidates.scores[a] as number) || a - b);
}

/**
 * Decode a batch: one list of detections per image, highest score first, boxes in source pixels.
 * @param heads the batch's head outputs ({@link readHeadOutputs})
 * @param images the geometry of each image of the batch, in batch order
 * @throws InferlineError `inference_failed` when the heads score another number of classes than `labels` holds.
 */
export async function decodeNanodet(heads: readonly HeadOutput[], images: readonly ImageGeometry[], options: DecodeOptions): Promise<Detection[][]> {
  for (const head of heads) {
    if (head.classes !== options.labels.length) {
      throw new InferlineError('inference_failed', `head stride ${head.stride} scores ${head.classes} classes, the labels name ${options.labels.length}`);
    }
  }
  const results: Detection[][] = [];
  for (const [b, image] of images.entries()) {
    const candidates = decodeCandidates(heads, b, image, options.score_threshold);
    const kept = await suppressPerClass(candidates, options.iou_threshold);
    const sx = image.sourceWidth / image.width;
    const sy = image.sourceHeight / image.height;
    results.push(
      kept.map((i) => {
        const [x1, y1, x2, y2] = candidates.boxes.slice(4 * i, 4 * i + 4) as [number, number, number, number];
        const c = candidates.classes[i] as number;
        return { label: options.labels[c] ?? String(c), score: candidates.scores[i] as number, box: [x1 * sx, y1 * sy, x2 * sx, y2 * sy] };
      }),
    );
  }
  return results;
}
