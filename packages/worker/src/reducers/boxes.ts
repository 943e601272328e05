import { InferlineError } from '@inferline/shared';
import sharp from 'sharp';
import type { Detection } from '../postprocess/nanodet.ts';
import { readMemberOutput, reduceFailed } from './member-output.ts';
import type { ReducerModule } from './reducer.ts';

/** Side of the square cell each member's image gets in the tiled PNG, pixels. */
export const BOXES_TILE_PX = 320;
/** Colour of the cells around each image, and behind transparent pixels. */
export const BOXES_BACKGROUND = '#202020';
/** Width of a box's outline, pixels; the outline lies inside the box. */
export const BOXES_STROKE_PX = 3;
/** Font size of a box's caption (`"dog 0.87"`), pixels. */
export const BOXES_FONT_PX = 12;
/**
 * Box colours: distinct, saturated, opaque. A label takes the colour at the position of its first
 * appearance in the group (first member, first detection onwards) modulo the palette's length, so the
 * first ten labels of a group never share a colour and a label keeps its colour across the tiles.
 */
export const BOXES_PALETTE = [
  '#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231',
  '#911eb4', '#42d4f4', '#f032e6', '#bfef45', '#469990',
] as const;

/** One detection as returned by `boxes`: the member's detection plus the colour it was drawn in. */
export interface BoxesDetection extends Detection {
  /** `#rrggbb` from {@link BOXES_PALETTE}. */
  colour: string;
}

/** Where one member's image sits in the tiled PNG (pixels) and what was drawn on it. */
export interface BoxesTile {
  /** The member's index in the group. */
  index: number;
  /** The resized image's rectangle inside the PNG. */
  tile: { x: number; y: number; width: number; height: number };
  detections: BoxesDetection[];
}

/** Columns and rows of the grid for `count` tiles: `ceil(sqrt(count))` columns, as many rows as needed. */
export function boxesGrid(count: number): { columns: number; rows: number } {
  const columns = Math.ceil(Math.sqrt(count));
  return { columns, rows: Math.ceil(count / columns) };
}

/** A member's image after resize and drawing: PNG bytes (all the reducer keeps of it) and its size. */
interface DrawnTile {
  index: number;
  png: Buffer;
  width: number;
  height: number;
  detections: BoxesDetection[];
}

/**
 * `boxes` (in REDUCERS_KEEPING_INPUTS: `add` gets each input): for a detector, every member's input image with its detections drawn, tiled
 * into one PNG.
 *
 * Layout: each image (EXIF-oriented, as the worker decoded it) is resized to fit inside a
 * {@link BOXES_TILE_PX} square (enlarged if smaller, aspect kept, each side rounded to whole pixels) and
 * centred in its cell on {@link BOXES_BACKGROUND}; the k-th member added goes to column `k % columns`,
 * row `floor(k / columns)` of a {@link boxesGrid}, so the PNG is `columns * 320` × `rows * 320`.
 * Each detection's box (source pixels) is scaled by the resize factor of each axis, rounded, clipped to
 * the image, and outlined {@link BOXES_STROKE_PX} px wide inside its edges in its label's colour (see
 * {@link BOXES_PALETTE}), with `"label 0.87"` above it (inside it at the image's top edge); a box
 * thinner than two strokes is filled. Captions need a system font; without one only boxes show.
 *
 * Member output `options.output` (typically `detections`) must be `{ label, score, box: [x1, y1, x2, y2] }[]`.
 * `add` gets the member's encoded input (JPEG, PNG, WebP, ...) and keeps only the drawn tile's PNG, and
 * must be awaited before the next `add`. `finish` returns `{ image: Buffer (RGB PNG), width, height, columns,
 * rows, tile_px, detections: BoxesTile[] }`, in index order.
 *
 * @throws InferlineError `reduce_failed` from `add` when the output is missing or malformed, the input is
 *   missing, or the input does not decode; `empty_group` from `finish` over no member.
 */
export const boxesReducer: ReducerModule = {
  name: 'boxes',
  init(options) {
    const colours = new Map<string, string>();
    const colourOf = (label: string): string => {
      const known = colours.get(label);
      if (known !== undefined) return known;
      const colour = BOXES_PALETTE[colours.size % BOXES_PALETTE.length] as string;
      colours.set(label, colour);
      return colour;
    };
    const tiles: DrawnTile[] = [];
    return {
      async add(output, index, input) {
        const detections = readDetections(readMemberOutput(output, options.output, 'boxes', index), index);
        if (input === undefined) throw reduceFailed('boxes', index, 'the member input is missing');
        const coloured = detections.map((detection) => ({ ...detection, colour: colourOf(detection.label) }));
        tiles.push({ index, detections: coloured, ...(await drawTile(input, coloured, index)) });
      },
      async finish() {
        if (tiles.length === 0) throw new InferlineError('empty_group', 'boxes: the group has no member to draw');
        const { columns, rows } = boxesGrid(tiles.length);
        const placed: BoxesTile[] = tiles.map((tile, k) => ({
          index: tile.index,
          tile: {
            x: (k % columns) * BOXES_TILE_PX + Math.floor((BOXES_TILE_PX - tile.width) / 2),
            y: Math.floor(k / columns) * BOXES_TILE_PX + Math.floor((BOXES_TILE_PX - tile.height) / 2),
            width: tile.width,
            height: tile.height,
          },
          detections: tile.detections,
        }));
        const width = columns * BOXES_TILE_PX;
        const height = rows * BOXES_TILE_PX;
        const image = await sharp({ create: { width, height, channels: 3, background: BOXES_BACKGROUND } })
          .composite(placed.map(({ tile }, k) => ({ input: (tiles[k] as DrawnTile).png, left: tile.x, top: tile.y })))
          .removeAlpha()
          .png()
          .toBuffer();
        return { image, width, height, columns, rows, tile_px: BOXES_TILE_PX, detections: placed };
      },
    };
  },
};

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** Check a member's detections; `reduce_failed` names the first malformed one. */
function readDetections(value: unknown, index: number): Detection[] {
  if (!Array.isArray(value)) throw reduceFailed('boxes', index, 'detections are not an array');
  return value.map((item: unknown, i) => {
    const { label, score, box } = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    if (typeof label !== 'string' || !isFiniteNumber(score) || !Array.isArray(box) || box.length !== 4 || !box.every(isFiniteNumber)) {
      throw reduceFailed('boxes', index, `detection ${i} is not { label: string, score: number, box: [x1, y1, x2, y2] }`);
    }
    return { label, score, box: [box[0], box[1], box[2], box[3]] as Detection['box'] };
  });
}

/** Decode, orient, resize into the cell, flatten onto the background, draw the boxes; keep a PNG. */
async function drawTile(input: Buffer, detections: readonly BoxesDetection[], index: number): Promise<Omit<DrawnTile, 'index' | 'detections'>> {
  try {
    const image = sharp(input, { failOn: 'error', autoOrient: true });
    const { autoOrient: source } = await image.metadata();
    const scale = Math.min(BOXES_TILE_PX / source.width, BOXES_TILE_PX / source.height);
    const width = Math.min(BOXES_TILE_PX, Math.max(1, Math.round(source.width * scale)));
    const height = Math.min(BOXES_TILE_PX, Math.max(1, Math.round(source.height * scale)));
    const svg = boxesSvg(detections, width / source.width, height / source.height, width, height);
    const png = await image
      .resize(width, height, { fit: 'fill' })
      .flatten({ background: BOXES_BACKGROUND })
      .toColourspace('srgb')
      .composite([{ input: Buffer.from(svg), left: 0, top: 0 }])
      .removeAlpha()
      // A tile is intermediate: compress fast, it is only kept until `finish`.
      .png({ compressionLevel: 1 })
      .toBuffer();
    return { png, width, height };
  } catch (error) {
    throw reduceFailed('boxes', index, `cannot draw the input image: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * An SVG of `width` × `height` with every detection's box scaled by (`scaleX`, `scaleY`), rounded and
 * clipped to at least one pixel inside the image, drawn after all captions so a caption never covers a box.
 */
function boxesSvg(detections: readonly BoxesDetection[], scaleX: number, scaleY: number, width: number, height: number): string {
  const captions: string[] = [];
  const rects: string[] = [];
  const stroke = BOXES_STROKE_PX;
  for (const { label, score, box, colour } of detections) {
    const [x1, y1, x2, y2] = box;
    const left = Math.min(Math.max(Math.round(Math.min(x1, x2) * scaleX), 0), width - 1);
    const top = Math.min(Math.max(Math.round(Math.min(y1, y2) * scaleY), 0), height - 1);
    const right = Math.min(Math.max(Math.round(Math.max(x1, x2) * scaleX), left + 1), width);
    const bottom = Math.min(Math.max(Math.round(Math.max(y1, y2) * scaleY), top + 1), height);
    const [w, h] = [right - left, bottom - top];
    rects.push(
      w > 2 * stroke && h > 2 * stroke
        ? `<rect x="${left + stroke / 2}" y="${top + stroke / 2}" width="${w - stroke}" height="${h - stroke}" fill="none" stroke="${colour}" stroke-width="${stroke}"/>`
        : `<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="${colour}"/>`,
    );
    const baseline = top >= BOXES_FONT_PX + stroke ? top - stroke : top + stroke + BOXES_FONT_PX;
    captions.push(
      `<text x="${left}" y="${baseline}" font-family="sans-serif" font-size="${BOXES_FONT_PX}" fill="${colour}">${escapeXml(label)} ${score.toFixed(2)}</text>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${captions.join('')}${rects.join('')}</svg>`;
}
