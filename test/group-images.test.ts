import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadModelConfig, type GroupView, type ImagePreprocessConfig } from '../packages/shared/src/index.ts';
import { decodeImage } from '../packages/worker/src/pipelines/image.ts';
import type { Detection } from '../packages/worker/src/postprocess/nanodet.ts';
import { BOXES_BACKGROUND, BOXES_PALETTE, BOXES_STROKE_PX, BOXES_TILE_PX } from '../packages/worker/src/reducers/boxes.ts';
import { LABELS_SEPARATOR } from '../packages/worker/src/reducers/labels.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';
import { TEST_IMAGES_DIR, TEST_PHOTOS } from './harness/fetch-test-data.ts';
import { callGateway, waitGroup } from './harness/gateway-http.ts';
import { ROOT, startAggregatorProcess, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';

/**
 * Aggregation groups over the real image models (`npm run models`) and photos (`npm run test-data`):
 * what a group reduces must be what the model answers in-process for each photo, in input order.
 */

const MODEL_REPOSITORY = join(ROOT, 'models');
/** Photos of the `boxes` group: a cat, a cup, a person (coco-detect costs ~0.5 s each on CPU). */
const BOXES_PHOTOS = ['chelsea.png', 'coffee.png', 'astronaut.png'] as const;
/** A JPEG cut short: its header passes the gateway, its decode fails in the worker (`invalid_image`). */
const TRUNCATED_BYTES = 60_000;

interface BoxesDetection extends Detection {
  colour: string;
}
interface BoxesTile {
  index: number;
  tile: { x: number; y: number; width: number; height: number };
  detections: BoxesDetection[];
}
interface GroupOutput {
  labels?: string;
  items?: string[];
  indexes?: number[];
  label?: string;
  count?: number;
  counts?: Record<string, number>;
  image?: { b64: string };
  width?: number;
  height?: number;
  columns?: number;
  rows?: number;
  tile_px?: number;
  detections?: BoxesTile[];
}
/** The API's group view, with the outputs these tests read. */
type Group = Omit<GroupView, 'output'> & { output?: GroupOutput };

async function photo(name: string): Promise<Buffer> {
  return readFile(join(TEST_IMAGES_DIR, name));
}

function b64(bytes: Buffer): { b64: string } {
  return { b64: bytes.toString('base64') };
}

/** Create a group (asserting 202, `queued`, its size) and long-poll it to a terminal state. */
async function runGroup(url: string, body: { model: string; inputs: unknown[]; reduce: string; on_item_error?: string }): Promise<Group> {
  const created = await callGateway<Group>(url, 'POST', '/v1/groups', body);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  assert.equal(created.json.size, body.inputs.length);
  assert.equal(created.json.status, 'queued');
  return waitGroup<Group>(url, created.json.id);
}

/** In-process outputs of the model in `models/<name>` for each photo, one predict per photo. */
async function predictInProcess(name: string, photos: readonly string[]): Promise<Record<string, unknown>[]> {
  await initBackend();
  const dir = join(MODEL_REPOSITORY, name);
  const config = await loadModelConfig(dir);
  const servable = await loadServable(config, join(dir, '1'), 1);
  try {
    const outputs: Record<string, unknown>[] = [];
    for (const file of photos) {
      const image = await decodeImage(await photo(file), config.preprocess as ImagePreprocessConfig);
      outputs.push(...(await servable.predict([image])));
    }
    return outputs;
  } finally {
    servable.dispose();
  }
}

/**
 * The expected `vote`: the most frequent label; between labels with that count, the one whose
 * count-th occurrence comes first in input order. `counts` in order of first appearance.
 */
function expectedVote(labels: readonly string[]): { label: string; count: number; counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  const count = Math.max(...Object.values(counts));
  const reachedAt = (label: string): number => {
    let seen = 0;
    return labels.findIndex((l) => l === label && ++seen === count);
  };
  const label = Object.keys(counts).filter((l) => counts[l] === count).sort((a, b) => reachedAt(a) - reachedAt(b))[0] as string;
  return { label, count, counts };
}

function hexToRgb(hex: string): number[] {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

function assertColour(actual: number[], expected: number[], what: string, tolerance = 8): void {
  assert.ok(actual.every((v, c) => Math.abs(v - (expected[c] as number)) <= tolerance), `${what}: ${actual.join(',')} vs ${expected.join(',')}`);
}

describe('aggregation groups over image models: gateway + 1 worker (image-classify, coco-detect) + aggregator + real Redis', () => {
  let redis: TestRedis;
  let gateway: RoleProcess & { url: string };
  const roles: RoleProcess[] = [];
  /** In-process image-classify label of each of TEST_PHOTOS. */
  let labels: string[];
  /** In-process coco-detect detections of each of BOXES_PHOTOS. */
  let detections: Detection[][];

  before(async () => {
    redis = await startTestRedis();
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY };
    gateway = await startGatewayProcess(env);
    roles.push(...(await Promise.all([startWorkerProcess(env, ['image-classify', 'coco-detect']), startAggregatorProcess(env)])));
    labels = (await predictInProcess('image-classify', TEST_PHOTOS)).map((output) => output.label as string);
    detections = (await predictInProcess('coco-detect', BOXES_PHOTOS)).map((output) => output.detections as Detection[]);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), ...roles.map((role) => role.stop())]);
    await redis?.stop();
  });

  test('labels lists the in-process label of every photo in input order; vote counts them', async () => {
    const inputs = await Promise.all(TEST_PHOTOS.map(async (name) => b64(await photo(name))));
    const [listed, voted] = await Promise.all([
      runGroup(gateway.url, { model: 'image-classify', inputs, reduce: 'labels' }),
      runGroup(gateway.url, { model: 'image-classify', inputs, reduce: 'vote' }),
    ]);

    assert.equal(listed.status, 'succeeded', JSON.stringify(listed.error));
    assert.equal(listed.completed, TEST_PHOTOS.length);
    assert.deepEqual(listed.output?.items, labels);
    assert.equal(listed.output?.labels, labels.join(LABELS_SEPARATOR));
    assert.deepEqual(listed.output?.indexes, TEST_PHOTOS.map((_, i) => i));

    assert.equal(voted.status, 'succeeded', JSON.stringify(voted.error));
    const expected = expectedVote(labels);
    assert.deepEqual({ label: voted.output?.label, count: voted.output?.count, counts: voted.output?.counts }, expected);
    assert.deepEqual(Object.keys(voted.output?.counts ?? {}), Object.keys(expected.counts), 'counts in order of first appearance');
  });

  test('a truncated JPEG: "skip" leaves it out and counts it, "fail" fails the group naming its index', async () => {
    const names = ['chelsea.png', 'coffee.png', 'truncated', 'astronaut.png'];
    const bad = names.indexOf('truncated');
    const truncated = (await photo('rocket.jpg')).subarray(0, TRUNCATED_BYTES);
    const inputs = await Promise.all(names.map(async (name) => b64(name === 'truncated' ? truncated : await photo(name))));
    const [skipped, failed] = await Promise.all([
      runGroup(gateway.url, { model: 'image-classify', inputs, reduce: 'labels', on_item_error: 'skip' }),
      runGroup(gateway.url, { model: 'image-classify', inputs, reduce: 'labels', on_item_error: 'fail' }),
    ]);

    assert.equal(skipped.status, 'succeeded', JSON.stringify(skipped.error));
    assert.equal(skipped.completed, names.length - 1);
    assert.equal(skipped.failed, 1);
    assert.deepEqual(skipped.failed_indexes, [bad]);
    const good = names.flatMap((name, i) => (i === bad ? [] : [i]));
    const goodLabels = good.map((i) => labels[TEST_PHOTOS.indexOf(names[i] as (typeof TEST_PHOTOS)[number])]);
    assert.deepEqual(skipped.output?.items, goodLabels);
    assert.equal(skipped.output?.labels, goodLabels.join(LABELS_SEPARATOR));
    assert.deepEqual(skipped.output?.indexes, good);

    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    assert.equal(failed.error?.code, 'member_failed');
    assert.match(failed.error?.message ?? '', new RegExp(`\\binput ${bad}\\b`));
    assert.match(failed.error?.message ?? '', /invalid_image/);
    assert.ok(failed.failed >= 1);
    assert.equal(failed.output, undefined);
  });

  test('boxes tiles the photos with their in-process detections, each box outlined in its colour', async () => {
    const sources = await Promise.all(BOXES_PHOTOS.map(photo));
    const group = await runGroup(gateway.url, { model: 'coco-detect', inputs: sources.map(b64), reduce: 'boxes' });
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    const output = group.output ?? {};

    // Layout rule: ceil(sqrt(n)) columns of BOXES_TILE_PX cells, as many rows as needed.
    const columns = Math.ceil(Math.sqrt(BOXES_PHOTOS.length));
    const rows = Math.ceil(BOXES_PHOTOS.length / columns);
    assert.deepEqual([output.columns, output.rows, output.tile_px], [columns, rows, BOXES_TILE_PX]);
    assert.deepEqual([output.width, output.height], [columns * BOXES_TILE_PX, rows * BOXES_TILE_PX]);

    const response = await fetch(`${gateway.url}/v1/groups/${group.id}/output.png`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/png');
    const png = Buffer.from(await response.arrayBuffer());
    assert.ok(png.equals(Buffer.from(output.image?.b64 ?? '', 'base64')), 'output.png is the JSON output image');
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [columns * BOXES_TILE_PX, rows * BOXES_TILE_PX]);
    const pixel = (x: number, y: number): number[] => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];

    // Each photo fits a cell (aspect kept, sides rounded), centred; member k in column k % columns, row k / columns.
    const tiles = output.detections ?? [];
    assert.deepEqual(tiles.map((t) => t.index), BOXES_PHOTOS.map((_, i) => i));
    const sizes = await Promise.all(sources.map(async (bytes) => (await sharp(bytes).metadata()).autoOrient));
    const colours = new Map<string, string>();
    let checked = 0;
    tiles.forEach(({ tile, detections: drawn }, k) => {
      const name = BOXES_PHOTOS[k];
      const { width: sourceWidth, height: sourceHeight } = sizes[k] as { width: number; height: number };
      const scale = Math.min(BOXES_TILE_PX / sourceWidth, BOXES_TILE_PX / sourceHeight);
      const [width, height] = [Math.round(sourceWidth * scale), Math.round(sourceHeight * scale)];
      assert.deepEqual(tile, {
        x: (k % columns) * BOXES_TILE_PX + Math.floor((BOXES_TILE_PX - width) / 2),
        y: Math.floor(k / columns) * BOXES_TILE_PX + Math.floor((BOXES_TILE_PX - height) / 2),
        width,
        height,
      }, `${name}: tile`);

      // What the worker detected is what the model detects in-process.
      const want = detections[k] ?? [];
      assert.deepEqual(drawn.map((d) => d.label), want.map((d) => d.label), `${name}: labels`);
      drawn.forEach((d, j) => {
        const reference = want[j] as Detection;
        assert.ok(Math.abs(d.score - reference.score) <= 1e-4, `${name} #${j}: score ${d.score} vs ${reference.score}`);
        d.box.forEach((v, c) => assert.ok(Math.abs(v - (reference.box[c] as number)) <= 1e-2, `${name} #${j}: box ${JSON.stringify(d.box)} vs ${JSON.stringify(reference.box)}`));
        // A label's colour: the palette entry at the position of its first appearance in the group.
        if (!colours.has(d.label)) colours.set(d.label, BOXES_PALETTE[colours.size % BOXES_PALETTE.length] as string);
        assert.equal(d.colour, colours.get(d.label), `${name} #${j}: ${d.label} colour`);
      });

      // The last box of a tile is drawn over everything else: the middle of its top edge has its colour.
      const last = drawn.at(-1);
      if (last === undefined) return;
      const [sx, sy] = [width / sourceWidth, height / sourceHeight];
      const [x1, y1, x2, y2] = last.box;
      const left = Math.min(Math.max(Math.round(Math.min(x1, x2) * sx), 0), width - 1);
      const top = Math.min(Math.max(Math.round(Math.min(y1, y2) * sy), 0), height - 1);
      const right = Math.min(Math.max(Math.round(Math.max(x1, x2) * sx), left + 1), width);
      const bottom = Math.min(Math.max(Math.round(Math.max(y1, y2) * sy), top + 1), height);
      const middle = tile.x + Math.floor((left + right) / 2);
      for (let row = 0; row < Math.min(BOXES_STROKE_PX, bottom - top); row++) {
        assertColour(pixel(middle, tile.y + top + row), hexToRgb(last.colour), `${name}: ${last.label} top edge row ${row}`);
      }
      checked++;
    });
    assert.ok(checked >= 1, 'at least one box was checked on the picture');
    assert.ok(['cat', 'cup', 'person'].every((label) => colours.has(label)), `the cat, the cup and the person are found: ${[...colours.keys()].join(', ')}`);
    // The cells left empty by the grid (and the margins) are background.
    const empty = columns * rows - BOXES_PHOTOS.length;
    for (let e = 0; e < empty; e++) {
      const k = BOXES_PHOTOS.length + e;
      const centre = [(k % columns) * BOXES_TILE_PX + BOXES_TILE_PX / 2, Math.floor(k / columns) * BOXES_TILE_PX + BOXES_TILE_PX / 2] as const;
      assertColour(pixel(...centre), hexToRgb(BOXES_BACKGROUND), `empty cell ${k}`, 0);
    }
  });
});
