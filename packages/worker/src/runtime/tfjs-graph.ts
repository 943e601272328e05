import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { InferlineError } from '@inferline/shared/errors';
import type { ImagePreprocessConfig, ModelConfig, NanodetPostprocessConfig } from '@inferline/shared';
import { imagesToTensor, type DecodedImage } from '../pipelines/image-tensor.ts';
import { readLabels } from '../postprocess/labels.ts';
import { decodeNanodet, readHeadOutputs } from '../postprocess/nanodet.ts';
import { readModelArtifacts } from './model-artifacts.ts';
import type { Servable } from './servable.ts';

/**
 * The `tfjs-graph` platform (DESIGN.md section 6): a TF.js graph model (`model.json` + weight shards,
 * https://www.tensorflow.org/js/guide/conversion) read from the version folder and run on the
 * process' backend. Today it serves image detectors: `preprocess.type: "image"` (the worker decodes
 * each request into a {@link DecodedImage} before `predict`) and `postprocess.type: "nanodet"`.
 */

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** `input` as a decoded image of the model's input size, or `invalid_input`. */
function asDecodedImage(input: unknown, index: number, spec: ImagePreprocessConfig): DecodedImage {
  const ok =
    isObject(input) &&
    input.data instanceof Uint8Array &&
    input.width === spec.width &&
    input.height === spec.height &&
    input.data.length === spec.width * spec.height * 3 &&
    typeof input.sourceWidth === 'number' &&
    input.sourceWidth > 0 &&
    typeof input.sourceHeight === 'number' &&
    input.sourceHeight > 0;
  if (!ok) throw new InferlineError('invalid_input', `input ${index}: expected an image decoded to ${spec.width}×${spec.height} RGB`);
  return input as unknown as DecodedImage;
}

/** The model input's per-request shape the preprocess produces. */
function expectedInputShape(spec: ImagePreprocessConfig): number[] {
  return spec.layout === 'nchw' ? [3, spec.height, spec.width] : [spec.height, spec.width, 3];
}

function graphServable(
  config: ModelConfig,
  version: number,
  model: GraphModel,
  preprocess: ImagePreprocessConfig,
  postprocess: NanodetPostprocessConfig,
  labels: readonly string[],
  outputName: string,
): Servable {
  const [inputName] = model.inputNodes as [string];
  const tensorNames = postprocess.heads.flatMap((head) => [head.scores, head.boxes]);
  const decodeOptions = { score_threshold: postprocess.score_threshold, iou_threshold: postprocess.iou_threshold, labels };

  const run = async (images: readonly DecodedImage[]): Promise<Record<string, unknown>[]> => {
    if (images.length === 0) return [];
    const input = imagesToTensor(images, preprocess);
    let outputs: tf.Tensor[];
    try {
      // One forward pass for every head tensor; execute() frees the intermediates.
      outputs = model.execute({ [inputName]: input }, tensorNames) as tf.Tensor[];
    } finally {
      input.dispose();
    }
    try {
      const heads = await readHeadOutputs(outputs, postprocess.heads, preprocess);
      const detections = await decodeNanodet(heads, images, decodeOptions);
      return detections.map((list) => ({ [outputName]: list }));
    } finally {
      tf.dispose(outputs);
    }
  };

  return {
    name: config.name,
    version,
    backend: tf.getBackend(),
    predict: (inputs) => Promise.resolve().then(() => run(inputs.map((input, i) => asDecodedImage(input, i, preprocess)))),
    warmup: async (sizes) => {
      const blank: DecodedImage = {
        data: new Uint8Array(preprocess.width * preprocess.height * 3),
        width: preprocess.width,
        height: preprocess.height,
        sourceWidth: preprocess.width,
        sourceHeight: preprocess.height,
      };
      for (const size of sizes) await run(new Array<DecodedImage>(size).fill(blank));
    },
    dispose: () => model.dispose(),
  };
}

/**
 * Load a `tfjs-graph` version folder: the graph, its weights and the postprocess' labels asset. Call
 * `initBackend` first.
 *
 * `predict(inputs)` takes {@link DecodedImage}s of the preprocess size, stacks them with
 * `imagesToTensor`, runs the graph once for every tensor the postprocess reads, and returns
 * `{<output name>: Detection[]}` per image (see `postprocess/nanodet.ts`).
 * @throws InferlineError `invalid_config` naming the field or file when the config does not fit the
 *   platform or the graph (input shape, node names), or a file is missing.
 */
export async function loadTfjsGraph(config: ModelConfig, versionDir: string, version: number): Promise<Servable> {
  const where = `model ${config.name} version ${version}`;
  const { inputs, outputs } = config.signature;
  const [output] = outputs;
  if (inputs.length !== 1 || outputs.length !== 1 || !output) {
    throw new InferlineError('invalid_config', `${where}: field /signature: tfjs-graph takes one image input and gives one output`);
  }
  const preprocess = config.preprocess;
  if (preprocess?.type !== 'image') {
    throw new InferlineError('invalid_config', `${where}: field /preprocess: tfjs-graph needs an image preprocess`);
  }
  const postprocess = config.postprocess;
  if (postprocess?.type !== 'nanodet') {
    throw new InferlineError('invalid_config', `${where}: field /postprocess/type: tfjs-graph decodes "nanodet" detector outputs`);
  }

  const artifacts = await readModelArtifacts(versionDir);
  const nodes = new Set(((artifacts.modelTopology as { node?: { name: string }[] } | undefined)?.node ?? []).map((node) => node.name));
  for (const [i, head] of postprocess.heads.entries()) {
    for (const field of ['scores', 'boxes'] as const) {
      if (!nodes.has(head[field].replace(/:\d+$/, ''))) {
        throw new InferlineError('invalid_config', `${where}: field /postprocess/heads/${i}/${field}: node "${head[field]}" is not in ${versionDir}/model.json`);
      }
    }
  }
  const labels = await readLabels(join(versionDir, postprocess.labels_file));

  const model = await loadGraphModel(tf.io.fromMemory(artifacts));
  try {
    const graphInputs = model.inputs;
    const shape = graphInputs[0]?.shape;
    const expected = expectedInputShape(preprocess);
    if (graphInputs.length !== 1 || !shape || shape.slice(1).join() !== expected.join()) {
      throw new InferlineError(
        'invalid_config',
        `${where}: field /preprocess: makes [batch, ${expected.join(', ')}] but the graph takes ${graphInputs.map((input) => `[${input.shape?.join(', ') ?? '?'}]`).join(', ')}`,
      );
    }
    const batch = shape[0] ?? -1;
    if (batch !== -1 && !(batch === 1 && config.batching.max_batch_size === 1)) {
      throw new InferlineError('invalid_config', `${where}: field /batching/max_batch_size: the graph's input has a fixed batch of ${batch}`);
    }
    return graphServable(config, version, model, preprocess, postprocess, labels, output.name);
  } catch (error) {
    model.dispose();
    throw error;
  }
}
