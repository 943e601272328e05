import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { InferlineError, type ImagePreprocessConfig } from '@inferline/shared';

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
 * Decode one encoded image (JPEG, PNG, WebP, GIF, TIFF: what sharp/libvips reads) for a model: EXIF
 * orientation applied, alpha removed (flattened on black), resized to `spec.width`×`spec.height`
 * (stretched, no crop), 8-bit sRGB. Runs on libvips' thread pool, off the event loop.
 *
 * @throws InferlineError `invalid_image` when the bytes are not a readable image, it holds more than
 *   `spec.max_input_pixels` pixels, or a side is longer than `spec.max_image_side`.
 */
export async function decodeImage(bytes: Uint8Array, spec: ImagePreprocessConfig): Promise<DecodedImage> {
  try {
    const image = sharp(bytes, { limitInputPixels: spec.max_input_pixels, failOn: 'error' }).rotate();
    const { width: rawWidth = 0, height: rawHeight = 0, orientation = 1 } = await image.metadata();
    // EXIF orientations 5-8 swap width and height.
    const [sourceWidth, sourceHeight] = orientation >= 5 ? [rawHeight, rawWidth] : [rawWidth, rawHeight];
    // The gateway checks this on the header; a stream entry written by something else is checked here too.
    if (Math.max(rawWidth, rawHeight) > spec.max_image_side) throw new Error(`a side of ${rawWidth}×${rawHeight} is longer than max_image_side ${spec.max_image_side}`);
    const { data, info } = await image
      .removeAlpha()
      .toColourspace('srgb')
      .resize(spec.width, spec.height, { fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, sourceWidth, sourceHeight };
  } catch (error) {
    throw new InferlineError('invalid_image', `cannot decode image: ${error instanceof Error ? error.message : String(error)}`);
  }
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
