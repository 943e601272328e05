import * as tf from '@tensorflow/tfjs-core';
import type { ImagePreprocessConfig } from '@inferline/shared';

/**
 * The model-side half of image preprocessing, which runs in the instance threads: decoded images into
 * the model's input tensor. (Decoding, with sharp, is pipelines/image.ts, on the worker's main thread.)
 */

/** One image decoded and resized for a model: `[height, width, 3]` uint8 RGB, plus its source size. */
export interface DecodedImage {
  /** `[height, width, 3]` RGB bytes, row-major, `height`×`width` of the model input. */
  data: Uint8Array;
  width: number;
  height: number;
  /** Size of the source image after EXIF orientation, pixels: boxes are mapped back to it. */
  sourceWidth: number;
  sourceHeight: number;
}

/**
 * Stack decoded images into the model input tensor: `(pixel - mean) / std` per channel in
 * `spec.channel_order`, layout `spec.layout` (`[batch, height, width, 3]` or `[batch, 3, height, width]`)
 * float32. The caller owns (disposes) the tensor.
 */
export function imagesToTensor(images: readonly DecodedImage[], spec: ImagePreprocessConfig): tf.Tensor4D {
  const { width, height } = spec;
  const plane = width * height;
  const out = new Float32Array(images.length * plane * 3);
  const order = spec.channel_order === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const [m0, m1, m2] = spec.mean as [number, number, number];
  const [s0, s1, s2] = spec.std as [number, number, number];
  const mean = [m0, m1, m2];
  const std = [s0, s1, s2];
  images.forEach((image, b) => {
    const base = b * plane * 3;
    for (let c = 0; c < 3; c++) {
      const source = order[c] as number;
      const mc = mean[c] as number;
      const sc = std[c] as number;
      for (let p = 0; p < plane; p++) {
        const value = ((image.data[p * 3 + source] as number) - mc) / sc;
        out[spec.layout === 'nchw' ? base + c * plane + p : base + p * 3 + c] = value;
      }
    }
  });
  const shape: [number, number, number, number] =
    spec.layout === 'nchw' ? [images.length, 3, height, width] : [images.length, height, width, 3];
  return tf.tensor4d(out, shape, 'float32');
}
