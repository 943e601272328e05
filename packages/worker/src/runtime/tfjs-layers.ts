import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel, model as functionalModel, type LayersModel, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import { InferlineError } from '@inferline/shared/errors';
import type { ImagePreprocessConfig, ModelConfig } from '@inferline/shared';
import { imagesToTensor, type DecodedImage } from '../pipelines/image-tensor.ts';
import { classifierOutputs } from '../postprocess/classifier.ts';
import { readLabels } from '../postprocess/labels.ts';
import { readModelArtifacts } from './model-artifacts.ts';
import type { Servable } from './servable.ts';

/**
 * The `tfjs-layers` platform (DESIGN.md section 6): a Keras model saved by TF.js (`model.json` with a
 * `modelTopology`, weight shards), run with `@tensorflow/tfjs-layers` on the backend `initBackend` picked.
 * Supported today: an image classifier (`preprocess.type: "image"`, `postprocess.type: "classifier"`),
 * whose outputs `probabilities`, `label` and optional `embedding` come from one forward pass.
 */

/** Output names a classifier produces, by role. */
const PROBABILITIES_OUTPUT = 'probabilities';
const LABEL_OUTPUT = 'label';
const EMBEDDING_OUTPUT = 'embedding';

/** True when `input` is an image decoded to the model's input size (what the worker's decode step gives). */
function isDecodedImage(input: unknown, spec: ImagePreprocessConfig): input is DecodedImage {
  if (typeof input !== 'object' || input === null) return false;
  const { data, width, height } = input as Partial<DecodedImage>;
  return data instanceof Uint8Array && width === spec.width && height === spec.height && data.length === spec.width * spec.height * 3;
}

/** Per-request width of a symbolic tensor `[batch, …]`, or undefined when a dimension is unknown. */
function rowWidth(shape: readonly (number | null)[]): number | undefined {
  const dims = shape.slice(1);
  return dims.every((dim): dim is number => typeof dim === 'number' && dim > 0) ? dims.reduce((product, dim) => product * dim, 1) : undefined;
}

/**
 * Load a tfjs-layers classifier from `versionDir` (`model.json`, shards, the labels file) and check that
 * the config fits it: input shape = the preprocess size, `probabilities` [classes] with one label per
 * class, `embedding` [D] = the width of `postprocess.embedding_layer`.
 * @throws InferlineError `invalid_config` naming the field or file that does not fit.
 */
export async function loadTfjsLayers(config: ModelConfig, versionDir: string, version: number): Promise<Servable> {
  const where = `model ${config.name} version ${version}`;
  const invalid = (field: string, message: string): InferlineError => new InferlineError('invalid_config', `${where}: field ${field}: ${message}`);
  const preprocess = config.preprocess;
  if (preprocess?.type !== 'image') throw invalid('/preprocess', 'tfjs-layers serves image models: needs an image preprocess');
  if (preprocess.layout !== 'nhwc') throw invalid('/preprocess/layout', 'Keras image models take nhwc');
  const postprocess = config.postprocess;
  if (postprocess?.type !== 'classifier') throw invalid('/postprocess/type', 'tfjs-layers decodes "classifier" outputs');
  const { inputs, outputs } = config.signature;
  if (inputs.length !== 1) throw invalid('/signature/inputs', 'an image classifier takes one input');
  const expectedOutputs = [PROBABILITIES_OUTPUT, LABEL_OUTPUT, ...(postprocess.embedding_layer === undefined ? [] : [EMBEDDING_OUTPUT])];
  const declared = outputs.map((output) => output.name);
  if (declared.length !== expectedOutputs.length || !expectedOutputs.every((name) => declared.includes(name))) {
    throw invalid('/signature/outputs', `a classifier${postprocess.embedding_layer ? ' with embedding_layer' : ''} gives exactly ${expectedOutputs.join(', ')}`);
  }

  const labels = await readLabels(join(versionDir, postprocess.labels_file));
  const base = await loadLayersModel(tf.io.fromMemory(await readModelArtifacts(versionDir)));
  let model: LayersModel = base;
  try {
    const [input] = base.inputs;
    const [head] = base.outputs;
    if (base.inputs.length !== 1 || !input || !head) {
      throw new InferlineError('invalid_config', `${join(versionDir, 'model.json')}: an image classifier has one input and an output`);
    }
    const [, height, width, channels] = input.shape;
    if (input.shape.length !== 4 || height !== preprocess.height || width !== preprocess.width || channels !== 3) {
      throw invalid('/preprocess', `the model takes [${input.shape.join(', ')}], the preprocess gives [null, ${preprocess.height}, ${preprocess.width}, 3]`);
    }
    const checkShape = (name: string, actual: number | undefined, label: string): void => {
      const index = outputs.findIndex((output) => output.name === name);
      const spec = outputs[index];
      if (!spec || spec.dtype !== 'float32' || spec.shape.length !== 1 || (spec.shape[0] !== -1 && spec.shape[0] !== actual)) {
        throw invalid(`/signature/outputs/${index}`, `expected float32 [${actual ?? -1}] (${label})`);
      }
    };
    const classes = head.shape.length === 2 ? head.shape[1] : undefined;
    if (classes !== labels.length) {
      throw invalid('/postprocess/labels_file', `${labels.length} labels, but the model outputs [${head.shape.join(', ')}]`);
    }
    checkShape(PROBABILITIES_OUTPUT, classes, 'one probability per label');
    const labelIndex = outputs.findIndex((output) => output.name === LABEL_OUTPUT);
    const labelSpec = outputs[labelIndex];
    if (labelSpec?.dtype !== 'string' || labelSpec.shape.length !== 0) throw invalid(`/signature/outputs/${labelIndex}`, 'expected string []');

    if (postprocess.embedding_layer !== undefined) {
      let layerOutput: SymbolicTensor | SymbolicTensor[];
      try {
        layerOutput = base.getLayer(postprocess.embedding_layer).output;
      } catch {
        throw invalid('/postprocess/embedding_layer', `the model has no layer "${postprocess.embedding_layer}"`);
      }
      if (Array.isArray(layerOutput)) throw invalid('/postprocess/embedding_layer', 'the layer has several outputs');
      checkShape(EMBEDDING_OUTPUT, rowWidth(layerOutput.shape), `layer ${postprocess.embedding_layer} outputs [${layerOutput.shape.join(', ')}]`);
      // One model, two outputs: probabilities and embedding from the same forward pass.
      model = functionalModel({ inputs: base.inputs, outputs: [head, layerOutput] });
    }
  } catch (error) {
    base.dispose();
    throw error;
  }
  return layersClassifierServable(config, version, preprocess, model, labels);
}

function layersClassifierServable(
  config: ModelConfig,
  version: number,
  spec: ImagePreprocessConfig,
  model: LayersModel,
  labels: readonly string[],
): Servable {
  const run = async (inputs: readonly unknown[]): Promise<Record<string, unknown>[]> => {
    inputs.forEach((input, i) => {
      if (!isDecodedImage(input, spec)) {
        throw new InferlineError('invalid_input', `input ${i}: expected an image decoded to ${spec.width}×${spec.height} RGB`);
      }
    });
    const batch = inputs.length;
    if (batch === 0) return [];
    const results = tf.tidy(() => {
      const prediction = model.predict(imagesToTensor(inputs as readonly DecodedImage[], spec));
      const [probabilities, embedding] = Array.isArray(prediction) ? prediction : [prediction];
      return [probabilities as tf.Tensor, ...(embedding ? [tf.reshape(embedding, [batch, -1])] : [])];
    });
    try {
      const [probabilities, embeddings] = await Promise.all(results.map((tensor) => tensor.data<'float32'>()));
      return classifierOutputs(probabilities as Float32Array, embeddings, batch, labels);
    } finally {
      tf.dispose(results);
    }
  };
  return {
    name: config.name,
    version,
    backend: tf.getBackend(),
    predict: run,
    warmup: async (sizes) => {
      const blank: DecodedImage = { data: new Uint8Array(spec.width * spec.height * 3), width: spec.width, height: spec.height, sourceWidth: spec.width, sourceHeight: spec.height };
      for (const size of sizes) await run(new Array<DecodedImage>(size).fill(blank));
    },
    // The two-output model shares base's layers: disposing it frees their weights, and base has no others.
    dispose: () => model.dispose(),
  };
}
