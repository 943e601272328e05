import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { decode, keys } from '@inferline/shared';
import { entryOf, postJob, startFixture, type Fixture } from './fixture.ts';

const IMAGE_MODEL = 'img-model';

/** A minimal image model config: the gateway reads configs and version folders, never weights. */
const imageConfig = {
  name: IMAGE_MODEL,
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'image', dtype: 'string', shape: [] }], outputs: [{ name: 'detections', dtype: 'float32', shape: [-1] }] },
  preprocess: { type: 'image', width: 32, height: 32, max_image_bytes: 200_000, max_input_pixels: 1_000_000 },
};

/** A real PNG of `width`×`height` made by sharp. */
function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 30 } } }).png().toBuffer();
}

/**
 * A PNG that announces `width`×`height` in its IHDR but carries one empty compressed IDAT: a header
 * as an attacker sends it, a few dozen bytes for a picture that would decode to gigabytes.
 */
function pngHeaderOnly(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
  const emptyZlib = Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', emptyZlib), pngChunk('IEND', Buffer.alloc(0))]);
}

/** One PNG chunk: length, type, data, CRC of type + data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A JPEG of random noise (so its scan data, not its header, makes up most of the file). */
async function noiseJpeg(width: number, height: number): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  return sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** CRC-32 (ISO-HDLC, as PNG uses: https://www.w3.org/TR/png/#D-CRCAppendix). */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe('image inputs at the gateway', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ settings: { max_wait_s: 1 } });
    await mkdir(join(f.repository, IMAGE_MODEL, '1'), { recursive: true });
    await writeFile(join(f.repository, IMAGE_MODEL, 'config.json'), JSON.stringify(imageConfig));
    await writeFile(join(f.repository, IMAGE_MODEL, '1', 'model.json'), '{}');
    await f.models.refresh();
    await f.announce([1], 'AVAILABLE', undefined, IMAGE_MODEL);
    await f.models.refresh();
  });
  after(() => f.close());

  async function storedInput(id: string): Promise<Buffer> {
    const entry = await entryOf(f.redis, id);
    const [[, fields]] = (await f.redis.xrangeBuffer(keys.requests(IMAGE_MODEL, 1), entry, entry)) as [[Buffer, Buffer[]]];
    const index = fields.findIndex((field) => field.toString() === 'input');
    return Buffer.from(decode<Uint8Array>(fields[index + 1] as Buffer));
  }

  it('accepts {"b64": ...} and stores the image bytes once, in the stream entry', async () => {
    const image = await png(64, 48);
    const response = await postJob(f.app, { model: IMAGE_MODEL, input: { b64: image.toString('base64') } });
    assert.equal(response.statusCode, 202, response.body);
    const id = response.json<{ id: string }>().id;
    assert.ok((await storedInput(id)).equals(image));
    assert.equal(await f.redis.hexists(keys.job(id), 'input'), 0, 'the job record does not copy the input');
  });

  it('accepts a multipart/form-data upload (fields model, version, file input)', async () => {
    const image = await sharp(await png(40, 40)).jpeg().toBuffer();
    const address = await f.app.listen({ port: 0, host: '127.0.0.1' });
    const form = new FormData();
    form.set('model', IMAGE_MODEL);
    form.set('version', '1');
    form.set('input', new Blob([image], { type: 'image/jpeg' }), 'photo.jpg');
    const response = await fetch(`${address}/v1/jobs`, { method: 'POST', body: form });
    const body = (await response.json()) as { id: string; version: number };
    assert.equal(response.status, 202, JSON.stringify(body));
    assert.equal(body.version, 1);
    assert.ok((await storedInput(body.id)).equals(image));
  });

  it('refuses what is not an image, and images over the limits, storing nothing', async () => {
    const before = await f.redis.xlen(keys.requests(IMAGE_MODEL, 1));
    const cases: [unknown, number, string, RegExp][] = [
      [{ b64: Buffer.from('this is a text file, not an image\n').toString('base64') }, 400, 'invalid_image', /not a readable image/],
      [{ b64: pngHeaderOnly(30_000, 30_000).toString('base64') }, 400, 'invalid_image', /30000×30000 = 900000000 pixels/],
      // Few pixels, one enormous row: within max_input_pixels, yet seconds of decode; refused by its side.
      [{ b64: pngHeaderOnly(100_000, 1).toString('base64') }, 400, 'invalid_image', /100000×1: a side longer than the 16384 pixels .*max_image_side/],
      [{ b64: (await png(1200, 1000)).toString('base64') }, 400, 'invalid_image', /1200×1000 = 1200000 pixels.*max_input_pixels/],
      [{ b64: Buffer.alloc(300_000, 1).toString('base64') }, 413, 'payload_too_large', /max_image_bytes/],
      [{ b64: 'not base64!' }, 400, 'invalid_input', /not standard base64/],
      ['a string', 400, 'invalid_input', /takes an image as \{"b64"/],
      [{ b64: '' }, 400, 'invalid_image', /empty/],
    ];
    for (const [input, status, code, message] of cases) {
      const response = await postJob(f.app, { model: IMAGE_MODEL, input });
      assert.equal(response.statusCode, status, response.body);
      const error = response.json<{ error: { code: string; message: string } }>().error;
      assert.equal(error.code, code);
      assert.match(error.message, message);
    }
    assert.equal(await f.redis.xlen(keys.requests(IMAGE_MODEL, 1)), before);
  });

  it('TF Serving :predict passes {"b64"} instances of an image model through as image bytes, plain or by input name', async () => {
    const image = await png(20, 20);
    // Row format takes all plain values or all named objects (TF Serving decides by the first instance).
    for (const instances of [[{ b64: image.toString('base64') }], [{ image: { b64: image.toString('base64') } }]]) {
      const response = await f.app.inject({ method: 'POST', url: `/v1/models/${IMAGE_MODEL}:predict`, payload: { instances } });
      // No worker runs here: the call times out (504), its instance stored as the image bytes.
      assert.equal(response.statusCode, 504, response.body);
    }
    const entries = (await f.redis.xrangeBuffer(keys.requests(IMAGE_MODEL, 1), '-', '+')).slice(-2);
    assert.equal(entries.length, 2);
    for (const [, fields] of entries) {
      const index = fields.findIndex((field) => field.toString() === 'input');
      assert.ok(Buffer.from(decode<Uint8Array>(fields[index + 1] as Buffer)).equals(image));
    }
  });

  it('a truncated JPEG passes the header check: it fails later, alone, in the worker', async () => {
    const jpeg = await noiseJpeg(128, 128);
    const truncated = jpeg.subarray(0, Math.floor(jpeg.length * 0.6));
    await assert.rejects(sharp(truncated, { failOn: 'truncated' }).raw().toBuffer(), 'the truncated JPEG really cannot be decoded');
    const response = await postJob(f.app, { model: IMAGE_MODEL, input: { b64: truncated.toString('base64') } });
    assert.equal(response.statusCode, 202, response.body);
  });
});
