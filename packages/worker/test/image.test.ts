import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { InferlineError, parseModelConfig, type ImagePreprocessConfig } from '@inferline/shared';
import { decodeImage } from '../src/pipelines/image.ts';
import { imagesToTensor, type DecodedImage } from '../src/pipelines/image-tensor.ts';
import { initBackend } from '../src/runtime/backend.ts';

/** The image preprocessing of a config, with the schema's defaults applied. */
function spec(overrides: Record<string, unknown>): ImagePreprocessConfig {
  const config = parseModelConfig({
    name: 'm',
    platform: 'tfjs-graph',
    signature: { inputs: [{ name: 'image', dtype: 'string', shape: [] }], outputs: [{ name: 'y', dtype: 'float32', shape: [1] }] },
    preprocess: { type: 'image', width: 4, height: 2, ...overrides },
  });
  return config.preprocess as ImagePreprocessConfig;
}

const isInvalidImage = (error: unknown): boolean => error instanceof InferlineError && error.code === 'invalid_image';

describe('decodeImage', () => {
  it('resizes to the model size, stretching, and keeps the source size', async () => {
    const png = await sharp({ create: { width: 40, height: 10, channels: 3, background: { r: 10, g: 20, b: 30 } } }).png().toBuffer();
    const image = await decodeImage(png, spec({}));
    assert.deepEqual([image.width, image.height, image.sourceWidth, image.sourceHeight, image.data.length], [4, 2, 40, 10, 4 * 2 * 3]);
    assert.deepEqual([...image.data.subarray(0, 3)], [10, 20, 30]);
  });

  it('removes alpha: an RGBA PNG decodes to 3 channels', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 255, b: 0, alpha: 1 } } }).png().toBuffer();
    const image = await decodeImage(png, spec({}));
    assert.equal(image.data.length, 4 * 2 * 3);
    assert.deepEqual([...image.data.subarray(0, 3)], [0, 255, 0]);
  });

  it('applies EXIF orientation: a 6 (rotate 90°) 40×10 JPEG is a 10×40 picture', async () => {
    const jpeg = await sharp({ create: { width: 40, height: 10, channels: 3, background: { r: 9, g: 9, b: 9 } } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const image = await decodeImage(jpeg, spec({}));
    assert.deepEqual([image.sourceWidth, image.sourceHeight], [10, 40]);
  });

  it('fails with invalid_image on a truncated JPEG, a text file, and too many pixels', async () => {
    const pixels = Buffer.alloc(128 * 128 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
    const jpeg = await sharp(pixels, { raw: { width: 128, height: 128, channels: 3 } }).jpeg().toBuffer();
    await assert.rejects(decodeImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), spec({})), isInvalidImage);
    await assert.rejects(decodeImage(Buffer.from('hello, not an image'), spec({})), isInvalidImage);
    const big = await sharp({ create: { width: 100, height: 100, channels: 3, background: 'white' } }).png().toBuffer();
    await assert.rejects(decodeImage(big, spec({ max_input_pixels: 9_999 })), isInvalidImage);
  });

  it('fails with invalid_image, before decoding, on a side longer than max_image_side even within max_input_pixels', async () => {
    const row = await sharp({ create: { width: 20_000, height: 1, channels: 3, background: 'white' } }).png().toBuffer();
    await assert.rejects(decodeImage(row, spec({ max_image_side: 16_384 })), (error: unknown) => isInvalidImage(error) && /max_image_side/.test((error as Error).message));
    const fine = await decodeImage(row, spec({ max_image_side: 20_000 }));
    assert.equal(fine.sourceWidth, 20_000);
  });
});

describe('imagesToTensor', () => {
  before(() => initBackend());
  /** A 2×1 image: pixel 0 = (r, g, b) = (10, 20, 30), pixel 1 = (40, 50, 60). */
  const image: DecodedImage = { data: Uint8Array.from([10, 20, 30, 40, 50, 60]), width: 2, height: 1, sourceWidth: 2, sourceHeight: 1 };

  it('nhwc rgb: (pixel - mean) / std per channel', () => {
    const s = { ...spec({}), width: 2, height: 1, mean: [10, 20, 30], std: [2, 4, 5] };
    const tensor = imagesToTensor([image, image], s);
    assert.deepEqual(tensor.shape, [2, 1, 2, 3]);
    assert.deepEqual([...tensor.dataSync().subarray(0, 6)], [0, 0, 0, 15, 7.5, 6]);
    tensor.dispose();
  });

  it('nchw bgr: channels reordered, then planes', () => {
    const s = { ...spec({}), width: 2, height: 1, channel_order: 'bgr' as const, layout: 'nchw' as const, mean: [0, 0, 0], std: [1, 1, 1] };
    const tensor = imagesToTensor([image], s);
    assert.deepEqual(tensor.shape, [1, 3, 1, 2]);
    assert.deepEqual([...tensor.dataSync()], [30, 60, 20, 50, 10, 40]);
    tensor.dispose();
  });
});
