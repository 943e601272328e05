import sharp from 'sharp';
import { InferlineError, type ImagePreprocessConfig, type ModelConfig } from '@inferline/shared';
import { decodeBase64 } from './base64.ts';

/** Encoded formats an image model accepts (what the workers' sharp/libvips decodes). */
export const IMAGE_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff']);

/**
 * Accept one image input for an image model, before anything is stored: `{"b64": "<base64>"}` in JSON
 * (TF Serving's convention for binary inputs) or the bytes of a multipart file. Only the header is read
 * (sharp metadata): format, width and height. Decoding happens in the worker, where a corrupt body
 * fails that one job with `invalid_image`.
 *
 * @returns the encoded image bytes, stored once in the request's stream entry.
 * @throws InferlineError `invalid_input` (not b64 / not bytes), `payload_too_large` (over
 *   `max_image_bytes`), `invalid_image` (unreadable header, unsupported format, more than
 *   `max_input_pixels` pixels, a side longer than `max_image_side`).
 */
export async function readImageInput(config: ModelConfig, spec: ImagePreprocessConfig, input: unknown): Promise<Buffer> {
  let bytes: Buffer;
  if (Buffer.isBuffer(input)) {
    bytes = input;
  } else if (typeof input === 'object' && input !== null && !Array.isArray(input) && typeof (input as { b64?: unknown }).b64 === 'string') {
    bytes = decodeBase64((input as { b64: string }).b64, 'input.b64');
  } else {
    throw new InferlineError('invalid_input', `field "input": model "${config.name}" takes an image as {"b64": "<base64>"} or a multipart file field "input"`);
  }
  if (bytes.length === 0) throw new InferlineError('invalid_image', 'the image is empty');
  if (bytes.length > spec.max_image_bytes) {
    throw new InferlineError('payload_too_large', `the image is ${bytes.length} bytes, more than the ${spec.max_image_bytes} model "${config.name}" accepts (max_image_bytes)`);
  }
  let width: number | undefined;
  let height: number | undefined;
  let format: string | undefined;
  try {
    // The pixel limit is checked below with a clearer message; metadata reads the header only.
    ({ width, height, format } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch {
    throw new InferlineError('invalid_image', `not a readable image: send ${[...IMAGE_FORMATS].join(', ')}`);
  }
  if (!format || !IMAGE_FORMATS.has(format)) {
    throw new InferlineError('invalid_image', `image format "${format ?? 'unknown'}" is not accepted: send ${[...IMAGE_FORMATS].join(', ')}`);
  }
  if (!width || !height) throw new InferlineError('invalid_image', 'the image header has no size');
  if (width * height > spec.max_input_pixels) {
    throw new InferlineError('invalid_image', `the image is ${width}×${height} = ${width * height} pixels, more than the ${spec.max_input_pixels} model "${config.name}" accepts (max_input_pixels)`);
  }
  if (Math.max(width, height) > spec.max_image_side) {
    throw new InferlineError('invalid_image', `the image is ${width}×${height}: a side longer than the ${spec.max_image_side} pixels model "${config.name}" accepts (max_image_side)`);
  }
  return bytes;
}
