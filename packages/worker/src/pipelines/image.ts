import sharp from 'sharp';
import { InferlineError } from '@inferline/shared/errors';
import type { ImagePreprocessConfig } from '@inferline/shared';
import type { DecodedImage } from './image-tensor.ts';

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
