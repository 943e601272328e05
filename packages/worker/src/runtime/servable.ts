import * as tf from '@tensorflow/tfjs-core';
import { InferlineError, isInferlineError } from '@inferline/shared/errors';
import type { ModelConfig } from '@inferline/shared';
import { EmbeddingBag } from './embedding-bag.ts';

/**
 * A loaded model version behind one interface, whatever its platform (DESIGN.md section 6):
 * `embedding-bag` (optionally with a classifier head), `tfjs-graph`, `tfjs-layers`: cases of {@link loadServable}.
 */

/** A loaded model version, ready to run batches. */
export interface Servable {
  readonly name: string;
  readonly version: number;
  /** TF.js backend it runs on (`tensorflow`, `wasm`, `cpu`). */
  readonly backend: string;
  /**
   * Run one batched forward pass over decoded request inputs: a string per text request, a
   * `DecodedImage` (pipelines/image-tensor.ts) per image request. Returns one output object per input, in
   * order, e.g. `{embedding: Float32Array(100)}`.
   * @throws InferlineError `invalid_input` when an input has the wrong type; any error fails the whole batch.
   */
  predict(inputs: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** Run the model once at each size in `sizes` (warm-up: TF Serving runs warm-up before a version serves). */
  warmup(sizes: readonly number[]): Promise<void>;
  /** Free the version's memory (tensors). */
  dispose(): void;
}

/** Text used to warm up text models: common words, punctuation, a number, an unknown word. */
const WARMUP_TEXT = 'Call me Ishmael. Some years ago, never mind how long precisely, I went to sea in 1851 (zzqx).';

/** Turns a batch's embeddings into its outputs: the embedding itself, or a head's classification. */
type EmbeddingOutputs = (embeddings: Float32Array[]) => Record<string, unknown>[] | Promise<Record<string, unknown>[]>;

function embeddingBagServable(config: ModelConfig, version: number, model: EmbeddingBag, toOutputs: EmbeddingOutputs, disposeHead?: () => void): Servable {
  const run = (inputs: readonly unknown[]): Record<string, unknown>[] | Promise<Record<string, unknown>[]> => {
    for (const [i, input] of inputs.entries()) {
      if (typeof input !== 'string') throw new InferlineError('invalid_input', `input ${i}: expected a string, got ${typeof input}`);
    }
    return toOutputs(model.embedBatch(inputs as readonly string[]));
  };
  return {
    name: config.name,
    version,
    backend: tf.getBackend(),
    // The bag pass is synchronous; run it in a microtask so a failure is a rejection, not a throw.
    predict: (inputs) => Promise.resolve().then(() => run(inputs)),
    warmup: async (sizes) => {
      for (const size of sizes) await run(new Array<string>(size).fill(WARMUP_TEXT));
    },
    dispose: () => {
      disposeHead?.();
      model.dispose();
    },
  };
}

async function loadEmbeddingBag(config: ModelConfig, versionDir: string, version: number): Promise<Servable> {
  const where = `model ${config.name} version ${version}`;
  const { inputs, outputs } = config.signature;
  const [input] = inputs;
  const [output] = outputs;
  if (inputs.length !== 1 || input?.dtype !== 'string') {
    throw new InferlineError('invalid_config', `${where}: field /signature/inputs: embedding-bag takes one string input`);
  }
  // With a head, embedding-bag-classifier.ts checks the outputs.
  if (!config.head && (outputs.length !== 1 || output?.dtype !== 'float32' || output.shape.length !== 1)) {
    throw new InferlineError('invalid_config', `${where}: field /signature: embedding-bag takes one string input and gives one float32 [D] output`);
  }
  if (config.preprocess?.type !== 'glove-tokenizer') {
    throw new InferlineError('invalid_config', `${where}: field /preprocess: embedding-bag needs a glove-tokenizer preprocess`);
  }
  const model = await EmbeddingBag.load(versionDir, { vocabFile: config.preprocess.vocab_file, maxTokens: config.preprocess.max_tokens });
  if (config.head) {
    try {
      const classifier = await (await import('./embedding-bag-classifier.ts')).loadEmbeddingClassifier(config, versionDir, version, config.head, model.dims);
      return embeddingBagServable(config, version, model, (embeddings) => classifier.classify(embeddings), () => classifier.dispose());
    } catch (error) {
      model.dispose();
      throw error;
    }
  }
  const declared = output?.shape[0];
  if (declared !== -1 && declared !== model.dims) {
    model.dispose();
    throw new InferlineError('invalid_config', `${where}: field /signature/outputs/0/shape: [${declared}] but the table is [${model.table.shape.join(', ')}]`);
  }
  const outputName = output?.name ?? '';
  return embeddingBagServable(config, version, model, (embeddings) => embeddings.map((embedding) => ({ [outputName]: embedding })));
}

/**
 * Load the version folder `versionDir` of a model with the platform its config names, on the backend
 * `initBackend` picked (call it first).
 * @throws InferlineError `invalid_config` for a platform this worker cannot run, a config that does not fit
 *   the platform, or a broken version folder (message names the file or field).
 */
export async function loadServable(config: ModelConfig, versionDir: string, version: number): Promise<Servable> {
  try {
    switch (config.platform) {
      case 'embedding-bag':
        return await loadEmbeddingBag(config, versionDir, version);
      // Imported on first use: an instance thread loads only its own platform's modules.
      case 'tfjs-graph':
        return await (await import('./tfjs-graph.ts')).loadTfjsGraph(config, versionDir, version);
      case 'tfjs-layers':
        return await (await import('./tfjs-layers.ts')).loadTfjsLayers(config, versionDir, version);
      default:
        throw new InferlineError('invalid_config', `model ${config.name}: field /platform: "${config.platform}" is not supported by this worker yet`);
    }
  } catch (error) {
    if (isInferlineError(error)) throw error;
    throw new InferlineError('invalid_config', `model ${config.name} version ${version} (${versionDir}): ${(error as Error).message}`);
  }
}
