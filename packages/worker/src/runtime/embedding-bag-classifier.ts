import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel, type LayersModel } from '@tensorflow/tfjs-layers';
import { InferlineError } from '@inferline/shared/errors';
import type { EmbeddingHeadConfig, ModelConfig } from '@inferline/shared';
import { classifierOutputs } from '../postprocess/classifier.ts';
import { readLabels } from '../postprocess/labels.ts';
import { readModelArtifacts } from './model-artifacts.ts';

/**
 * An `embedding-bag` model with a classifier head (config `head`, DESIGN.md section 6): the bag
 * embedding `[batch, D]` of each text (glove-tokenizer, mean of the known tokens' rows, L2-normalized)
 * goes through a TF.js layers model (`head.model_file`, softmax `[batch, classes]`) in the same batch,
 * and the `classifier` postprocess turns each row into `probabilities` and the argmax `label`.
 */

/** Output names of a classifier, by role (as tfjs-layers classifiers name them). */
const PROBABILITIES_OUTPUT = 'probabilities';
const LABEL_OUTPUT = 'label';

/** A loaded head: run it on a batch of embeddings. */
export interface EmbeddingClassifier {
  /** Class probabilities and label of each embedding (`[D]` each), in order. */
  classify(embeddings: readonly Float32Array[]): Promise<Record<string, unknown>[]>;
  dispose(): void;
}

/**
 * Load the head of an embedding-bag version and check it against the config and the table: the head
 * takes `[batch, dims]` and gives `[batch, labels]`, the signature's outputs are exactly
 * `probabilities` float32 [labels] and `label` string [].
 * @param dims the table's width D
 * @throws InferlineError `invalid_config` naming the field or file that does not fit.
 */
export async function loadEmbeddingClassifier(
  config: ModelConfig,
  versionDir: string,
  version: number,
  head: EmbeddingHeadConfig,
  dims: number,
): Promise<EmbeddingClassifier> {
  const where = `model ${config.name} version ${version}`;
  const invalid = (field: string, message: string): InferlineError => new InferlineError('invalid_config', `${where}: field ${field}: ${message}`);
  const postprocess = config.postprocess;
  if (postprocess?.type !== 'classifier') throw invalid('/postprocess/type', 'an embedding-bag head is decoded by a "classifier" postprocess');
  if (postprocess.embedding_layer !== undefined) throw invalid('/postprocess/embedding_layer', 'an embedding-bag head has no embedding layer output');
  const labels = await readLabels(join(versionDir, postprocess.labels_file));
  checkSignature(config, labels.length, invalid);

  const model = await loadLayersModel(tf.io.fromMemory(await readModelArtifacts(versionDir, head.model_file)));
  try {
    const [input] = model.inputs;
    const [output] = model.outputs;
    if (model.inputs.length !== 1 || model.outputs.length !== 1 || input?.shape.length !== 2 || input.shape[1] !== dims) {
      throw invalid('/head/model_file', `${head.model_file} must take one [null, ${dims}] input (the table's width), it takes [${input?.shape.join(', ') ?? ''}]`);
    }
    if (output?.shape.length !== 2 || output.shape[1] !== labels.length) {
      throw invalid('/postprocess/labels_file', `${labels.length} labels, but ${head.model_file} outputs [${output?.shape.join(', ') ?? ''}]`);
    }
  } catch (error) {
    model.dispose();
    throw error;
  }
  return classifierOf(model, dims, labels);
}

function checkSignature(config: ModelConfig, classes: number, invalid: (field: string, message: string) => InferlineError): void {
  const { outputs } = config.signature;
  const names = outputs.map((output) => output.name).sort();
  if (names.join() !== [LABEL_OUTPUT, PROBABILITIES_OUTPUT].join()) {
    throw invalid('/signature/outputs', `an embedding-bag classifier gives exactly ${PROBABILITIES_OUTPUT} and ${LABEL_OUTPUT}`);
  }
  outputs.forEach((output, i) => {
    if (output.name === LABEL_OUTPUT && (output.dtype !== 'string' || output.shape.length !== 0)) throw invalid(`/signature/outputs/${i}`, 'expected string []');
    const width = output.shape[0];
    if (output.name === PROBABILITIES_OUTPUT && (output.dtype !== 'float32' || output.shape.length !== 1 || (width !== -1 && width !== classes))) {
      throw invalid(`/signature/outputs/${i}`, `expected float32 [${classes}] (one probability per label)`);
    }
  });
}

function classifierOf(model: LayersModel, dims: number, labels: readonly string[]): EmbeddingClassifier {
  return {
    async classify(embeddings) {
      const batch = embeddings.length;
      if (batch === 0) return [];
      const data = new Float32Array(batch * dims);
      embeddings.forEach((row, i) => data.set(row, i * dims));
      const probabilities = tf.tidy(() => model.predict(tf.tensor2d(data, [batch, dims])) as tf.Tensor);
      try {
        return classifierOutputs(await probabilities.data<'float32'>(), undefined, batch, labels);
      } finally {
        probabilities.dispose();
      }
    },
    dispose: () => model.dispose(),
  };
}
