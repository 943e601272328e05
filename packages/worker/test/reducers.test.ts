import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import { isInferlineError, REDUCERS_KEEPING_INPUTS, type ReducerName } from '@inferline/shared';
import { BOXES_PALETTE, BOXES_STROKE_PX, BOXES_TILE_PX, boxesGrid, type BoxesTile } from '../src/reducers/boxes.ts';
import { createReducer, REDUCER_MODULES } from '../src/reducers/index.ts';
import type { MemberOutput, Reducer } from '../src/reducers/reducer.ts';

function isCode(code: string): (error: unknown) => boolean {
  return (error) => isInferlineError(error) && error.code === code;
}

/** Feed `outputs` (member i at index `indexes[i]`, default i) one at a time and finish. */
async function reduce(reducer: Reducer, outputs: MemberOutput[], indexes?: number[], inputs?: Buffer[]): Promise<Record<string, unknown>> {
  for (const [i, output] of outputs.entries()) await reducer.add(output, indexes?.[i] ?? i, inputs?.[i]);
  return reducer.finish();
}

/** Row-major `flat` → nested arrays of `shape`, written independently of the reducers' own. */
function reshape(flat: readonly number[], shape: readonly number[]): unknown {
  if (shape.length === 0) return flat[0];
  const [first, ...rest] = shape as [number, ...number[]];
  const step = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: first }, (_, i) => reshape(flat.slice(i * step, (i + 1) * step), rest));
}

const ELEMENTWISE = ['mean', 'sum', 'max', 'min'] as const;

/** The straightforward reference: fold each element over the members in float64. */
function reference(name: (typeof ELEMENTWISE)[number], members: readonly (readonly number[])[]): number[] {
  return (members[0] as number[]).map((_, e) => {
    const column = members.map((m) => m[e] as number);
    if (name === 'max') return column.reduce((a, b) => Math.max(a, b));
    if (name === 'min') return column.reduce((a, b) => Math.min(a, b));
    const sum = column.reduce((a, b) => a + b);
    return name === 'sum' ? sum : sum / column.length;
  });
}

/** A shape of 1-3 axes of 1-4, with 1-6 members of float32 values. */
const tensorGroup = fc
  .array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 })
  .chain((shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const value = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });
    return fc.record({ shape: fc.constant(shape), members: fc.array(fc.array(value, { minLength: size, maxLength: size }), { minLength: 1, maxLength: 6 }) });
  });

describe('element-wise reducers (mean, sum, max, min)', () => {
  for (const name of ELEMENTWISE) {
    test(`${name} of Float32Array members matches the float64 reference, as plain numbers`, async () => {
      await fc.assert(
        fc.asyncProperty(tensorGroup, async ({ shape, members }) => {
          const size = shape.reduce((a, b) => a * b, 1);
          const outputs = members.map((m) => ({ embedding: new Float32Array(m), label: 'x' }));
          const result = await reduce(createReducer(name, { output: 'embedding', size: members.length }), outputs);
          const expected = reference(name, members.map((m) => [...new Float32Array(m)]));
          assert.deepEqual(Object.keys(result), ['embedding']);
          assert.ok(Array.isArray(result.embedding) && result.embedding.length === size);
          assert.deepEqual(result.embedding, expected);
        }),
      );
    });

    test(`${name} of nested number arrays keeps the members' shape`, async () => {
      await fc.assert(
        fc.asyncProperty(tensorGroup, async ({ shape, members }) => {
          const outputs = members.map((m) => ({ logits: reshape(m, shape) }));
          const result = await reduce(createReducer(name, { output: 'logits', size: members.length }), outputs);
          assert.deepEqual(result, { logits: reshape(reference(name, members), shape) });
        }),
      );
    });

    test(`${name} fails reduce_failed on a member of another shape, even with the same element count`, async () => {
      const cases: [unknown, unknown][] = [
        [new Float32Array(3), new Float32Array(4)],
        [[[1, 2, 3], [4, 5, 6]], [[1, 2], [3, 4], [5, 6]]],
        [[[1, 2, 3], [4, 5, 6]], new Float32Array(6)],
        [[1, 2], 3],
      ];
      for (const [first, second] of cases) {
        const reducer = createReducer(name, { output: 'y', size: 2 });
        await reducer.add({ y: first }, 0);
        assert.throws(() => reducer.add({ y: second }, 1), isCode('reduce_failed'));
      }
    });

    test(`${name} fails reduce_failed on a missing or non-numeric output`, () => {
      for (const bad of [{ z: new Float32Array(2) }, { y: 'cat' }, { y: ['a', 'b'] }, { y: [[1, 2], [3]] }, { y: { a: 1 } }, { y: new BigInt64Array(2) }, { y: null }]) {
        const reducer = createReducer(name, { output: 'y', size: 1 });
        assert.throws(() => reducer.add(bad, 0), isCode('reduce_failed'), JSON.stringify(bad, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
      }
    });

    test(`${name} over no member fails empty_group`, () => {
      assert.throws(() => createReducer(name, { output: 'y', size: 0 }).finish(), isCode('empty_group'));
    });
  }

  test('accepts other typed arrays, rows of typed arrays and plain numbers', async () => {
    const mean = await reduce(createReducer('mean', { output: 'y', size: 2 }), [{ y: new Int32Array([1, 2]) }, { y: new Float64Array([2, 5]) }]);
    assert.deepEqual(mean, { y: [1.5, 3.5] });
    const rows = await reduce(createReducer('sum', { output: 'y', size: 2 }), [{ y: [new Float32Array([1, 2]), new Float32Array([3, 4])] }, { y: [[1, 1], [1, 1]] }]);
    assert.deepEqual(rows, { y: [[2, 3], [4, 5]] });
    assert.deepEqual(await reduce(createReducer('max', { output: 'score', size: 3 }), [{ score: 0.2 }, { score: 0.9 }, { score: 0.4 }]), { score: 0.9 });
  });

  test('mean is a plain mean, not re-normalized', async () => {
    const result = await reduce(createReducer('mean', { output: 'e', size: 2 }), [{ e: new Float32Array([1, 0]) }, { e: new Float32Array([0, 1]) }]);
    assert.deepEqual(result, { e: [0.5, 0.5] });
  });
});

describe('collect', () => {
  const memberOutputs = fc.array(fc.record({ index: fc.nat({ max: 3 }), output: fc.dictionary(fc.constantFrom('a', 'b', 'label'), fc.oneof(fc.integer(), fc.string())) }), { maxLength: 8 });

  test('returns whole outputs for "*" in index order, with their member indexes', async () => {
    await fc.assert(
      fc.asyncProperty(memberOutputs, async (members) => {
        // Gaps between indexes stand for skipped members.
        const indexes = members.reduce<number[]>((acc, m) => [...acc, (acc.at(-1) ?? -1) + 1 + m.index], []);
        const outputs = members.map((m) => m.output);
        const result = await reduce(createReducer('collect', { output: '*', size: 40 }), outputs, indexes);
        assert.deepEqual(result, { outputs, indexes });
      }),
    );
  });

  test('returns one named output per member, and fails reduce_failed when a member lacks it', async () => {
    const result = await reduce(createReducer('collect', { output: 'label', size: 5 }), [{ label: 'cat', p: 1 }, { label: 'dog' }], [0, 4]);
    assert.deepEqual(result, { outputs: ['cat', 'dog'], indexes: [0, 4] });
    assert.throws(() => createReducer('collect', { output: 'label', size: 1 }).add({ p: 1 }, 0), isCode('reduce_failed'));
  });

  test('over no member returns empty lists', async () => {
    assert.deepEqual(await createReducer('collect', { output: '*', size: 0 }).finish(), { outputs: [], indexes: [] });
  });
});

describe('labels', () => {
  test('joins the labels with ", " in index order', async () => {
    const result = await reduce(createReducer('labels', { output: 'label', size: 4 }), [{ label: 'cat' }, { label: 'dog' }, { label: 'cat' }], [0, 2, 3]);
    assert.deepEqual(result, { labels: 'cat, dog, cat', items: ['cat', 'dog', 'cat'], indexes: [0, 2, 3] });
  });

  test('fails reduce_failed on a missing or non-string label; no member gives ""', async () => {
    assert.throws(() => createReducer('labels', { output: 'label', size: 1 }).add({ label: 3 }, 0), isCode('reduce_failed'));
    assert.throws(() => createReducer('labels', { output: 'label', size: 1 }).add({}, 0), isCode('reduce_failed'));
    assert.deepEqual(await createReducer('labels', { output: 'label', size: 0 }).finish(), { labels: '', items: [], indexes: [] });
  });
});

describe('vote', () => {
  test('picks the most frequent label; a tie goes to the label that reached the count first', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('cat', 'dog', 'bird', '__proto__'), { minLength: 1, maxLength: 20 }), async (labels) => {
        const counts = new Map<string, number>();
        const reachedAt = new Map<string, number>();
        for (const label of labels) counts.set(label, (counts.get(label) ?? 0) + 1);
        const top = Math.max(...counts.values());
        const seen = new Map<string, number>();
        labels.forEach((label, i) => {
          seen.set(label, (seen.get(label) ?? 0) + 1);
          if (seen.get(label) === top && !reachedAt.has(label)) reachedAt.set(label, i);
        });
        const winner = [...reachedAt.entries()].sort((a, b) => a[1] - b[1])[0]?.[0];
        const result = await reduce(createReducer('vote', { output: 'label', size: labels.length }), labels.map((label) => ({ label })));
        assert.equal(result.label, winner);
        assert.equal(result.count, top);
        assert.deepEqual(Object.entries(result.counts as object), [...counts], 'counts in order of first appearance, "__proto__" included');
      }),
    );
  });

  test('dog, cat, cat, dog → cat (it had 2 first)', async () => {
    const result = await reduce(createReducer('vote', { output: 'label', size: 4 }), ['dog', 'cat', 'cat', 'dog'].map((label) => ({ label })));
    assert.deepEqual(result, { label: 'cat', count: 2, counts: { dog: 2, cat: 2 } });
  });

  test('over no member fails empty_group; a non-string label fails reduce_failed', () => {
    assert.throws(() => createReducer('vote', { output: 'label', size: 0 }).finish(), isCode('empty_group'));
    assert.throws(() => createReducer('vote', { output: 'label', size: 1 }).add({ label: ['cat'] }, 0), isCode('reduce_failed'));
  });
});

describe('createReducer', () => {
  test('has a module for every reducer name, and only boxes needs inputs', () => {
    for (const [name, module] of Object.entries(REDUCER_MODULES)) {
      assert.equal(module.name, name);
      assert.equal(REDUCERS_KEEPING_INPUTS.has(module.name), name === 'boxes');
    }
  });

  test('fails invalid_reduce on an unknown name', () => {
    assert.throws(() => createReducer('median' as ReducerName, { output: 'y', size: 1 }), isCode('invalid_reduce'));
  });
});

const GREY = 128;

function solid(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: GREY, g: GREY, b: GREY } } }).png().toBuffer();
}

/** Decode a PNG to raw RGB and read pixel (x, y). */
async function pixelReader(png: Buffer): Promise<(x: number, y: number) => number[]> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return (x, y) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
}

function assertColour(actual: number[], expected: number[], what: string, tolerance = 8): void {
  assert.ok(actual.every((v, c) => Math.abs(v - (expected[c] as number)) <= tolerance), `${what}: ${actual.join(',')} vs ${expected.join(',')}`);
}

function hexToRgb(hex: string): number[] {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

describe('boxes', () => {
  const detections = [
    { detections: [{ label: 'dog', score: 0.87, box: [10, 10, 60, 40] }, { label: 'cat', score: 0.5, box: [140, 60, 190, 95] }] },
    { detections: [{ label: 'cat', score: 0.66, box: [4, 8, 60, 40] }, { label: 'dog', score: 0.91, box: [8, 90, 56, 120] }] },
  ];
  const sizes: [number, number][] = [
    [200, 100],
    [64, 128],
  ];

  test('tiles the images into columns*320 × rows*320 and outlines each box in its returned colour', async () => {
    const inputs = await Promise.all(sizes.map(([w, h]) => solid(w, h)));
    const result = await reduce(createReducer('boxes', { output: 'detections', size: 3 }), detections, [0, 2], inputs);
    const { image, width, height, columns, rows, tile_px } = result as { image: Buffer; width: number; height: number; columns: number; rows: number; tile_px: number };
    assert.deepEqual([columns, rows, width, height, tile_px], [2, 1, 2 * BOXES_TILE_PX, BOXES_TILE_PX, BOXES_TILE_PX]);
    const metadata = await sharp(image).metadata();
    assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', width, height]);

    const tiles = result.detections as BoxesTile[];
    assert.deepEqual(tiles.map((t) => t.index), [0, 2]);
    // 200×100 scales by 1.6 to 320×160, centred in cell 0; 64×128 by 2.5 to 160×320, centred in cell 1.
    assert.deepEqual(tiles.map((t) => t.tile), [
      { x: 0, y: 80, width: 320, height: 160 },
      { x: 320 + 80, y: 0, width: 160, height: 320 },
    ]);
    const colours = tiles.flatMap((t) => t.detections.map((d) => d.colour));
    assert.deepEqual(colours, [BOXES_PALETTE[0], BOXES_PALETTE[1], BOXES_PALETTE[1], BOXES_PALETTE[0]], 'one colour per label, by first appearance');

    const pixel = await pixelReader(image);
    tiles.forEach(({ tile, detections: drawn }, k) => {
      const [sourceWidth, sourceHeight] = sizes[k] as [number, number];
      const [sx, sy] = [tile.width / sourceWidth, tile.height / sourceHeight];
      for (const { box, colour, label } of drawn) {
        assert.deepEqual(box, detections[k]?.detections.find((d) => d.label === label)?.box, 'boxes stay in source pixels');
        const [x1, y1, x2] = box;
        const middle = tile.x + Math.round((Math.round(x1 * sx) + Math.round(x2 * sx)) / 2);
        const top = tile.y + Math.round(y1 * sy);
        for (let row = 0; row < BOXES_STROKE_PX; row++) assertColour(pixel(middle, top + row), hexToRgb(colour), `tile ${k} ${label} top edge row ${row}`);
        assertColour(pixel(middle, top + BOXES_STROKE_PX + 1), [GREY, GREY, GREY], `tile ${k} ${label} inside the box`);
      }
      assertColour(pixel(tile.x + tile.width / 2, tile.y + tile.height / 2), [GREY, GREY, GREY], `tile ${k} centre`, 0);
    });
    assertColour(pixel(10, 10), [0x20, 0x20, 0x20], 'background above tile 0', 0);
  });

  test('grid: ceil(sqrt(n)) columns and as many rows as needed', async () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), (n) => {
        const { columns, rows } = boxesGrid(n);
        assert.equal(columns, Math.ceil(Math.sqrt(n)));
        assert.ok(columns * rows >= n && (rows - 1) * columns < n);
      }),
    );
    const input = await solid(10, 10);
    const result = await reduce(createReducer('boxes', { output: 'detections', size: 5 }), Array.from({ length: 5 }, () => ({ detections: [] })), undefined, Array.from({ length: 5 }, () => input));
    assert.deepEqual([result.columns, result.rows, result.width, result.height], [3, 2, 960, 640]);
    const metadata = await sharp(result.image as Buffer).metadata();
    assert.deepEqual([metadata.width, metadata.height], [960, 640]);
    assert.deepEqual((result.detections as BoxesTile[])[4]?.tile, { x: 320, y: 320, width: 320, height: 320 }, 'the 5th tile is row 1, column 1');
  });

  test('uses the EXIF-oriented image, as the worker decoded it', async () => {
    const rotated = await sharp({ create: { width: 200, height: 100, channels: 3, background: '#808080' } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const result = await reduce(createReducer('boxes', { output: 'detections', size: 1 }), [{ detections: [] }], undefined, [rotated]);
    assert.deepEqual((result.detections as BoxesTile[])[0]?.tile, { x: 80, y: 0, width: 160, height: 320 });
  });

  test('fails reduce_failed on a missing input, an undecodable input or a malformed detection', async () => {
    const input = await solid(10, 10);
    const reducer = (): Reducer => createReducer('boxes', { output: 'detections', size: 1 });
    await assert.rejects(async () => reducer().add({ detections: [] }, 0), isCode('reduce_failed'));
    await assert.rejects(async () => reducer().add({ detections: [] }, 0, Buffer.from('not an image')), isCode('reduce_failed'));
    for (const bad of [{ detections: 'x' }, { detections: [{ label: 'a', score: 1, box: [0, 0, 1] }] }, { detections: [{ label: 1, score: 1, box: [0, 0, 1, 1] }] }, {}]) {
      await assert.rejects(async () => reducer().add(bad, 0, input), isCode('reduce_failed'), JSON.stringify(bad));
    }
  });

  test('over no member fails empty_group', async () => {
    await assert.rejects(async () => createReducer('boxes', { output: 'detections', size: 0 }).finish(), isCode('empty_group'));
  });
});
