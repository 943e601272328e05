import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { InferlineError } from '@inferline/shared/errors';

/** The parts of a TF.js `model.json` this loader reads (https://www.tensorflow.org/js/guide/save_load). */
interface ModelJson {
  modelTopology?: unknown;
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  signature?: unknown;
  userDefinedMetadata?: Record<string, object>;
  modelInitializer?: unknown;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

/**
 * Read a TF.js model (graph or layers) from a version folder on disk: `model.json` (or `modelFile`)
 * plus its weight shards (paths relative to the folder), concatenated in manifest order. Pass the result to `tf.io.fromMemory(...)` and then
 * `loadGraphModel` / `loadLayersModel`: TF.js' own file:// loader needs tfjs-node, which this worker may
 * not have.
 * @throws InferlineError `invalid_config` naming the file when `model.json` or a shard is missing or unreadable.
 */
export async function readModelArtifacts(versionDir: string, modelFile = 'model.json'): Promise<tf.io.ModelArtifacts> {
  const manifestPath = join(versionDir, modelFile);
  let json: ModelJson;
  try {
    json = JSON.parse(await readFile(manifestPath, 'utf8')) as ModelJson;
  } catch (error) {
    throw new InferlineError('invalid_config', `${manifestPath}: ${(error as Error).message}`);
  }
  const groups = json.weightsManifest ?? [];
  const shards: Buffer[] = [];
  for (const group of groups) {
    for (const path of group.paths) {
      try {
        shards.push(await readFile(join(versionDir, path)));
      } catch (error) {
        throw new InferlineError('invalid_config', `${join(versionDir, path)}: ${(error as Error).message}`);
      }
    }
  }
  const weights = Buffer.concat(shards);
  return {
    modelTopology: json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy ?? undefined,
    signature: json.signature as tf.io.ModelArtifacts['signature'],
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer as tf.io.ModelArtifacts['modelInitializer'],
    weightSpecs: groups.flatMap((group) => group.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
  };
}
