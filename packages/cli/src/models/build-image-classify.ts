import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InferlineError } from '@inferline/shared';
import { addWeightShards, replaceDir, verifyChecksums, writeFilesWithChecksums } from './build-glove-embed.ts';

/**
 * Build the `image-classify` model version from the npm package `nsfwjs` (MobileNetV2 fine-tuned on 5
 * classes, MIT, https://github.com/infinitered/nsfwjs) into a plain TF.js layers-model folder:
 *
 * ```
 * models/image-classify/1/
 *   model.json              TF.js layers model: Keras topology + weights manifest (uint8-quantized weights, as shipped)
 *   group1-shard1of1.bin    the weights, bytes exactly as the package's base64 payload decodes
 *   labels.txt              one class per line, line n = output n
 *   checksums.sha256        `sha256sum` format over every other file
 * ```
 *
 * The package ships its model as browserify bundles (`model.min.js`: `module.exports = {modelTopology,
 * weightsManifest}` as a minified object literal; `group1-shard1of1.min.js`: `module.exports = "<base64>"`).
 * They are read as text and parsed, never evaluated.
 */

/** The npm package the weights come from (never a dependency; fetched with `npm pack`). */
export const IMAGE_CLASSIFY_SOURCE_SPEC = 'nsfwjs@4.4.0';
/** The model folder inside the package root. */
export const NSFWJS_MODEL_DIR = 'dist/models/mobilenet_v2';
/** The module holding the class names, `NSFW_CLASSES = {0: 'Drawing', ...}`, inside the package root. */
export const NSFWJS_CLASSES_FILE = 'dist/cjs/nsfw_classes.js';
/** The labels asset (the config's `postprocess.labels_file`). */
export const LABELS_FILE = 'labels.txt';

/** Bytes per stored element, by the stored dtype (the quantization dtype when there is one). */
const STORED_BYTES: Readonly<Record<string, number>> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };
/** Shortest string literal taken for a weight payload: the bundle's other strings are a few words. */
const MIN_PAYLOAD_CHARS = 1024;

/** Tokens of {@link parseJsLiteral}, sticky (matched at the current offset only). */
const SPACE = /\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\//y;
const NUMBER = /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/y;
const IDENTIFIER = /[A-Za-z_$][\w$]*/y;
const HEX_ESCAPE = /x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|u\{([0-9a-fA-F]{1,6})\}/y;
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', v: '\v', '0': '\0', '\n': '' };

/** One entry of a TF.js weights manifest (https://www.tensorflow.org/js/guide/save_load#model_json). */
interface WeightEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype?: string };
}

/** A layers model as the bundle exports it. */
interface LayersModelJson {
  modelTopology: Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: WeightEntry[] }[];
  [key: string]: unknown;
}

function fail(where: string, message: string): InferlineError {
  return new InferlineError('invalid_input', `${where}: ${message}`);
}

/**
 * Parse the JavaScript literal (object, array, string, number, `true`/`false`/`!0`/`!1`, `null`,
 * `void 0`) that starts at `text[start]`: the subset a minifier emits for data, JSON's superset with
 * unquoted keys, single quotes, `.5` numbers and trailing commas. Anything else (a call, an identifier
 * reference, an operator) is an error, so no code is ever run.
 * @returns the value and the index just past it
 * @throws InferlineError `invalid_input` naming `where` and the offset.
 */
export function parseJsLiteral(text: string, start: number, where = 'literal'): { value: unknown; end: number } {
  let pos = start;
  const error = (message: string): InferlineError => fail(where, `${message} at offset ${pos}: ${JSON.stringify(text.slice(pos, pos + 40))}`);
  /** Match the sticky `pattern` at `pos`; advance past it when it matches. */
  const take = (pattern: RegExp): RegExpExecArray | null => {
    pattern.lastIndex = pos;
    const match = pattern.exec(text);
    if (match) pos += match[0].length;
    return match;
  };
  const skipSpace = (): void => {
    // Each match is non-empty, so this ends.
    while (take(SPACE) !== null) continue;
  };

  const parseString = (): string => {
    const quote = text[pos];
    pos++;
    let out = '';
    for (;;) {
      const ch = text[pos];
      if (ch === undefined || ch === '\n') throw error('unterminated string');
      pos++;
      if (ch === quote) return out;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const esc = text[pos];
      const hex = esc === 'x' || esc === 'u' ? take(HEX_ESCAPE) : null;
      if (hex) out += String.fromCodePoint(parseInt(hex[1] ?? hex[2] ?? hex[3] ?? '', 16));
      else if (esc === undefined || esc === 'x' || esc === 'u') throw error('bad escape');
      else {
        out += SIMPLE_ESCAPES[esc] ?? esc;
        pos++;
      }
    }
  };

  const parseNumber = (): number => {
    const match = take(NUMBER);
    if (!match) throw error('expected a value');
    return Number(match[0]);
  };

  const parseValue = (): unknown => {
    skipSpace();
    const ch = text[pos];
    if (ch === '{') {
      pos++;
      const object: Record<string, unknown> = {};
      for (;;) {
        skipSpace();
        if (text[pos] === '}') {
          pos++;
          return object;
        }
        let key: string;
        const next = text[pos];
        if (next === '"' || next === "'") key = parseString();
        else if (next !== undefined && /[\d.]/.test(next)) key = String(parseNumber());
        else {
          const ident = take(IDENTIFIER);
          if (!ident) throw error('expected a key');
          key = ident[0];
        }
        skipSpace();
        if (text[pos] !== ':') throw error('expected ":"');
        pos++;
        // defineProperty: a key named `__proto__` is data, not a prototype change.
        Object.defineProperty(object, key, { value: parseValue(), enumerable: true, writable: true, configurable: true });
        skipSpace();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== '}') throw error('expected "," or "}"');
      }
    }
    if (ch === '[') {
      pos++;
      const array: unknown[] = [];
      for (;;) {
        skipSpace();
        if (text[pos] === ']') {
          pos++;
          return array;
        }
        array.push(parseValue());
        skipSpace();
        if (text[pos] === ',') pos++;
        else if (text[pos] !== ']') throw error('expected "," or "]"');
      }
    }
    if (ch === '"' || ch === "'") return parseString();
    for (const [word, value] of [
      ['!0', true],
      ['!1', false],
      ['true', true],
      ['false', false],
      ['null', null],
      ['void 0', undefined],
    ] as const) {
      if (text.startsWith(word, pos) && !/[\w$]/.test(text[pos + word.length] ?? '')) {
        pos += word.length;
        return value;
      }
    }
    return parseNumber();
  };

  const value = parseValue();
  return { value, end: pos };
}

/**
 * The layers model a bundle exports: the object literal that starts with a `modelTopology` key.
 * @throws InferlineError `invalid_input` when there is none or it lacks a topology or weights manifest.
 */
export function extractLayersModelJson(bundle: string, where = 'model bundle'): LayersModelJson {
  const match = /\{\s*(["']?)modelTopology\1\s*:/.exec(bundle);
  if (!match) throw fail(where, 'no object literal with a "modelTopology" key');
  const { value } = parseJsLiteral(bundle, match.index, where);
  const json = value as Partial<LayersModelJson>;
  const groups = json.weightsManifest;
  if (typeof json.modelTopology !== 'object' || json.modelTopology === null || !Array.isArray(groups)) {
    throw fail(where, 'the model literal lacks "modelTopology" or "weightsManifest"');
  }
  for (const group of groups) {
    if (!Array.isArray(group.paths) || !Array.isArray(group.weights)) throw fail(where, 'a weights group lacks "paths" or "weights"');
  }
  return json as LayersModelJson;
}

/**
 * The weight bytes a bundle exports: its one base64 string literal of at least 1024 characters.
 * @throws InferlineError `invalid_input` when there is no such literal or more than one.
 */
export function extractBase64Payload(bundle: string, where = 'weights bundle'): Buffer {
  const payloads = [...bundle.matchAll(new RegExp(`(["'])([A-Za-z0-9+/]{${MIN_PAYLOAD_CHARS},}={0,2})\\1`, 'g'))];
  if (payloads.length !== 1 || !payloads[0]?.[2]) throw fail(where, `expected one base64 string literal, found ${payloads.length}`);
  const base64 = payloads[0][2];
  if (base64.length % 4 !== 0) throw fail(where, `base64 payload of ${base64.length} characters is not a multiple of 4`);
  return Buffer.from(base64, 'base64');
}

/** Bytes the weights of a manifest group take when stored (quantized ones at their quantized width). */
function storedBytes(weights: readonly WeightEntry[], where: string): number {
  let total = 0;
  for (const weight of weights) {
    const stored = weight.quantization?.dtype ?? weight.dtype;
    const width = STORED_BYTES[stored];
    if (width === undefined) throw fail(where, `weight "${weight.name}": unsupported stored dtype "${stored}"`);
    total += weight.shape.reduce((product, dim) => product * dim, 1) * width;
  }
  return total;
}

/** A shard as the package ships it: `<path>` (raw bytes) or `<path>.min.js` / `<path>.js` (base64 bundle). */
async function readSourceShard(modelDir: string, path: string): Promise<Buffer> {
  for (const candidate of [path, `${path}.min.js`, `${path}.js`]) {
    const file = join(modelDir, candidate);
    const isFile = await stat(file).then(
      (info) => info.isFile(),
      () => false,
    );
    if (!isFile) continue;
    if (!candidate.endsWith('.js')) return readFile(file);
    return extractBase64Payload(await readFile(file, 'utf8'), file);
  }
  throw fail(modelDir, `weight shard "${path}" not found (tried ${path}, ${path}.min.js, ${path}.js)`);
}

/**
 * The class names of `NSFW_CLASSES = {0: 'Drawing', 1: 'Hentai', ...}`, index order.
 * @throws InferlineError `invalid_input` when the object is missing or its keys are not 0..n-1.
 */
export function extractClassNames(source: string, where = 'classes module'): string[] {
  const match = /NSFW_CLASSES\s*=\s*(?=\{)/.exec(source);
  if (!match) throw fail(where, 'no "NSFW_CLASSES = {...}"');
  const { value } = parseJsLiteral(source, match.index + match[0].length, where);
  const entries = Object.entries(value as Record<string, unknown>);
  const names = entries.map((_, i) => (value as Record<string, unknown>)[String(i)]);
  if (entries.length === 0 || !names.every((name): name is string => typeof name === 'string' && name !== '' && !/[\r\n]/.test(name))) {
    throw fail(where, 'NSFW_CLASSES must map 0..n-1 to non-empty one-line names');
  }
  return names;
}

/** `units` of the model's (first) output layer, when the topology says. */
function outputUnits(topology: Record<string, unknown>): number | undefined {
  const config = (topology.model_config as { config?: { layers?: unknown; output_layers?: unknown } } | undefined)?.config;
  const layers = Array.isArray(config?.layers) ? (config.layers as { name?: string; config?: { units?: unknown } }[]) : [];
  const outputName = (config?.output_layers as unknown[][] | undefined)?.[0]?.[0];
  const units = layers.find((layer) => layer.name === outputName)?.config?.units;
  return typeof units === 'number' ? units : undefined;
}

/** A source file's text; `invalid_input` naming it when it cannot be read. */
async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fail(path, (error as Error).message);
  }
}

/** Options of {@link buildImageClassify}. */
export interface BuildImageClassifyOptions {
  /** Root of the unpacked `nsfwjs` package. */
  sourceDir: string;
  /** The version folder to produce, e.g. `models/image-classify/1`. */
  outDir: string;
  /** Fraction done, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Recorded in the manifest's `convertedBy`. Default {@link IMAGE_CLASSIFY_SOURCE_SPEC}. */
  source?: string;
}

/**
 * Build the image-classify version folder `outDir` unless it is already complete ({@link verifyChecksums}):
 * the package's MobileNetV2 bundles become `model.json` + `.bin` shards (the weight bytes untouched, so
 * the model computes exactly what nsfwjs computes) + `labels.txt`. Byte-for-byte deterministic; written
 * into a hidden sibling folder and renamed into place ({@link replaceDir}).
 * @returns `skipped: true` when the folder was already complete.
 * @throws InferlineError `invalid_input` when the package departs from the layout above (a missing file,
 *   a weights payload whose size does not match its manifest, labels that do not match the output width).
 */
export async function buildImageClassify(options: BuildImageClassifyOptions): Promise<{ skipped: boolean }> {
  const { sourceDir, outDir, onProgress, source = IMAGE_CLASSIFY_SOURCE_SPEC } = options;
  if (await verifyChecksums(outDir)) {
    onProgress?.(1);
    return { skipped: true };
  }
  const modelDir = join(sourceDir, NSFWJS_MODEL_DIR);
  const modelFile = join(modelDir, 'model.min.js');
  const model = extractLayersModelJson(await readText(modelFile), modelFile);
  onProgress?.(0.2);

  const chunks: Buffer[] = [];
  for (const group of model.weightsManifest) {
    const bytes = Buffer.concat(await Promise.all(group.paths.map((path) => readSourceShard(modelDir, path))));
    const expected = storedBytes(group.weights, modelFile);
    if (bytes.length !== expected) throw fail(modelDir, `shards ${group.paths.join(', ')} hold ${bytes.length} bytes, the manifest needs ${expected}`);
    chunks.push(bytes);
  }
  const weights = Buffer.concat(chunks);
  onProgress?.(0.7);

  const classesFile = join(sourceDir, NSFWJS_CLASSES_FILE);
  const labels = extractClassNames(await readText(classesFile), classesFile);
  const units = outputUnits(model.modelTopology);
  if (units !== labels.length) throw fail(classesFile, `${labels.length} class names, but the model's output layer has ${units ?? 'unknown'} units`);

  const files = new Map<string, Uint8Array | string>();
  const paths = addWeightShards(files, weights);
  files.set(LABELS_FILE, `${labels.join('\n')}\n`);
  const { modelTopology, weightsManifest } = model;
  const kerasVersion = (modelTopology.keras_version as string | undefined) ?? 'unknown';
  const modelJson = {
    format: 'layers-model',
    generatedBy: `keras v${kerasVersion}`,
    convertedBy: `inferline build-image-classify from ${source} ${NSFWJS_MODEL_DIR}`,
    modelTopology,
    // One group: the shards hold every group's weights back to back, in manifest order.
    weightsManifest: [{ paths, weights: weightsManifest.flatMap((group) => group.weights) }],
  };
  // model.json last: a version counts as present once it exists.
  files.set('model.json', `${JSON.stringify(modelJson)}\n`);
  await replaceDir(outDir, (tmp) => writeFilesWithChecksums(tmp, files));
  onProgress?.(1);
  return { skipped: false };
}
