import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { EMBEDDING_BAG_FORMAT, EMBEDDING_WEIGHT_NAME } from '@inferline/shared/embedding-bag-format';
import { InferlineError } from '@inferline/shared/errors';
import { DEFAULT_MAX_TOKENS, loadVocabulary, tokenIds, type Vocabulary } from '../pipelines/glove-tokenizer.ts';

/**
 * The `embedding-bag` platform: a `[V, D]` table applied to a ragged batch of token lists with a mean,
 * as PyTorch's `nn.EmbeddingBag(mode="mean")`
 * (https://pytorch.org/docs/stable/generated/torch.nn.EmbeddingBag.html), then L2-normalized.
 * The cost follows the batch's token count; nothing is padded.
 *
 * The version folder holds a TF.js weights manifest `model.json`
 * (https://www.tensorflow.org/js/guide/save_load#model_json, `weightsManifest` with one float32 weight
 * `embedding` of shape [V, D]), its little-endian shards, and the vocab file (line n = row n).
 * Shards are read from disk and decoded with `tf.io.decodeWeights`: TF.js' file:// loader needs tfjs-node.
 */

/** Norms below this count as zero: a text without a known token embeds to zeros, not NaN. */
const MIN_NORM = 1e-12;

/** Options of {@link EmbeddingBag.load}. */
export interface EmbeddingBagOptions {
  /** Vocab file inside the version folder. Default `vocab.txt`. */
  vocabFile?: string;
  /** Tokens kept per text. Default {@link DEFAULT_MAX_TOKENS}. */
  maxTokens?: number;
}

interface WeightsManifestFile {
  format?: unknown;
  weightsManifest?: { paths?: unknown; weights?: tf.io.WeightsManifestEntry[] }[];
}

/**
 * A loaded embedding table with its vocabulary. Holds a tf.Tensor2D: call {@link dispose} when done.
 * Not reentrant across backends; the backend must be initialized (`initBackend`) before {@link load}.
 */
export class EmbeddingBag {
  /** The `[V, D]` float32 table. */
  readonly table: tf.Tensor2D;
  readonly vocab: Vocabulary;
  /** Embedding width D. */
  readonly dims: number;
  readonly maxTokens: number;

  private constructor(table: tf.Tensor2D, vocab: Vocabulary, maxTokens: number) {
    this.table = table;
    this.vocab = vocab;
    this.dims = table.shape[1];
    this.maxTokens = maxTokens;
  }

  /**
   * Load a version folder (`model.json`, its shards, the vocab file).
   * @throws InferlineError `invalid_config` naming the file when the folder is incomplete or inconsistent
   *   (wrong format, missing shard, byte count or vocabulary size differing from the manifest's shape).
   */
  static async load(versionDir: string, options: EmbeddingBagOptions = {}): Promise<EmbeddingBag> {
    const manifestPath = join(versionDir, 'model.json');
    const fail = (message: string) => new InferlineError('invalid_config', `${manifestPath}: ${message}`);
    let manifest: WeightsManifestFile;
    try {
      manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as WeightsManifestFile;
    } catch (error) {
      throw fail(`cannot read: ${(error as Error).message}`);
    }
    if (manifest.format !== EMBEDDING_BAG_FORMAT) throw fail(`format is ${JSON.stringify(manifest.format)}, expected "${EMBEDDING_BAG_FORMAT}"`);
    const group = manifest.weightsManifest?.[0];
    const spec = group?.weights?.find((weight) => weight.name === EMBEDDING_WEIGHT_NAME);
    const paths = group?.paths;
    if (manifest.weightsManifest?.length !== 1 || group?.weights?.length !== 1 || !spec) {
      throw fail(`weightsManifest must hold one group with the one weight "${EMBEDDING_WEIGHT_NAME}"`);
    }
    const [rows, dims] = spec.shape;
    if (spec.dtype !== 'float32' || spec.shape.length !== 2 || !rows || !dims) throw fail(`weight must be float32 [V, D], got ${spec.dtype} [${spec.shape.join(', ')}]`);
    if (!Array.isArray(paths) || !paths.every((path): path is string => typeof path === 'string' && /^[\w.-]+$/.test(path) && path !== '..')) {
      throw fail('paths must be file names inside the version folder');
    }

    const shards: ArrayBuffer[] = [];
    let bytes = 0;
    for (const path of paths) {
      let data: Buffer;
      try {
        data = await readFile(join(versionDir, path));
      } catch (error) {
        throw fail(`shard ${path}: ${(error as Error).message}`);
      }
      shards.push(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
      bytes += data.byteLength;
    }
    if (bytes !== rows * dims * 4) throw fail(`shards hold ${bytes} bytes, [${rows}, ${dims}] float32 needs ${rows * dims * 4}`);

    const vocabPath = join(versionDir, options.vocabFile ?? 'vocab.txt');
    const vocab = await loadVocabulary(vocabPath);
    if (vocab.size !== rows) throw new InferlineError('invalid_config', `${vocabPath}: ${vocab.size} tokens, the table has ${rows} rows`);

    const table = tf.io.decodeWeights(shards, [spec])[EMBEDDING_WEIGHT_NAME] as tf.Tensor2D;
    return new EmbeddingBag(table, vocab, options.maxTokens ?? DEFAULT_MAX_TOKENS);
  }

  /**
   * Embed a batch of texts in one ragged forward pass: tokenize each text (first `maxTokens` tokens),
   * drop unknown tokens, concatenate the rows of all texts with segment ids, take
   * `tf.sparse.sparseSegmentMean(table, ids, segmentIds)` (the bag mean), and L2-normalize each row.
   * A text without a known token (empty, or only unknown words) gets a zero vector.
   * @returns one Float32Array of length D per text, in order: views on one [texts, D] buffer, so a
   *   batch's outputs cross to the main thread as one transferred ArrayBuffer (one per text made a
   *   backing store, a transfer and an external-memory GC record each).
   */
  embedBatch(texts: readonly string[]): Float32Array[] {
    const dims = this.dims;
    const perText: Int32Array[] = new Array<Int32Array>(texts.length);
    let total = 0;
    let segments = 0; // 1 + index of the last text with a known token
    for (let i = 0; i < texts.length; i++) {
      const ids = tokenIds(texts[i] ?? '', this.vocab, this.maxTokens);
      perText[i] = ids;
      total += ids.length;
      if (ids.length > 0) segments = i + 1;
    }
    const rows = new Float32Array(texts.length * dims);
    const out = new Array<Float32Array>(texts.length);
    for (let i = 0; i < texts.length; i++) out[i] = rows.subarray(i * dims, (i + 1) * dims);
    if (total === 0) return out;

    const indices = new Int32Array(total);
    const segmentIds = new Int32Array(total);
    let at = 0;
    for (let i = 0; i < segments; i++) {
      const ids = perText[i] as Int32Array;
      indices.set(ids, at);
      segmentIds.fill(i, at, at + ids.length);
      at += ids.length;
    }

    // Output rows: max(segmentId) + 1 = `segments`; an empty segment in the middle is a zero row
    // (TF's SparseSegmentMean semantics); texts after the last non-empty one are filled in below.
    const embedded = tf.tidy(() => {
      const mean = tf.sparse.sparseSegmentMean(this.table, tf.tensor1d(indices, 'int32'), tf.tensor1d(segmentIds, 'int32'));
      const norm = tf.sqrt(tf.sum(tf.square(mean), 1, true));
      return tf.div(mean, tf.maximum(norm, MIN_NORM));
    });
    // Texts after the last one with a known token keep their zero rows.
    rows.set((embedded.dataSync() as Float32Array).subarray(0, segments * dims));
    embedded.dispose();
    return out;
  }

  /** Free the table's memory. The instance must not be used afterwards. */
  dispose(): void {
    this.table.dispose();
  }
}
