import { InferlineError } from '@inferline/shared/errors';

/**
 * Output decoding of a classifier (`postprocess.type: "classifier"`): per request, the class
 * probabilities, the label of the most probable class, and optionally an L2-normalized embedding taken
 * from an inner layer (so that a dot product of two embeddings is their cosine similarity).
 */

/** One request's classifier output (a type, not an interface, so it is a `Record<string, unknown>`). */
export type ClassifierOutput = {
  /** `[classes]` as the model gives them (softmax: they sum to 1). */
  probabilities: Float32Array;
  /** Name of the most probable class (the first one on a tie). */
  label: string;
  /** `[D]`, unit L2 norm (a zero vector stays zero). Present when the model has an embedding layer. */
  embedding?: Float32Array;
};

/** Index of the largest value (the first one on a tie; NaN never wins); 0 for an empty or all-NaN array. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    if (value > bestValue) {
      best = i;
      bestValue = value;
    }
  }
  return best;
}

/** Scale `vector` in place to unit L2 norm (sum of squares in float64); a zero vector stays zero. Returns `vector`. */
export function l2Normalize(vector: Float32Array): Float32Array {
  let sumSquares = 0;
  for (const value of vector) sumSquares += value * value;
  if (sumSquares === 0) return vector;
  const scale = 1 / Math.sqrt(sumSquares);
  for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] as number) * scale;
  return vector;
}

/**
 * Split a batch's outputs into per-request classifier outputs.
 * @param probabilities `[batch, labels.length]` row-major
 * @param embeddings `[batch, D]` row-major, or undefined for a classifier without embedding
 * @param batch number of requests
 * @param labels class names, index = output column
 * @returns one output per request, each with its own (copied) arrays
 * @throws InferlineError `inference_failed` when the arrays do not hold `batch` rows of the expected width.
 */
export function classifierOutputs(
  probabilities: Float32Array,
  embeddings: Float32Array | undefined,
  batch: number,
  labels: readonly string[],
): ClassifierOutput[] {
  const classes = labels.length;
  if (probabilities.length !== batch * classes) {
    throw new InferlineError('inference_failed', `classifier: ${probabilities.length} probabilities for ${batch} requests × ${classes} classes`);
  }
  const dims = embeddings === undefined || batch === 0 ? 0 : embeddings.length / batch;
  if (embeddings !== undefined && !Number.isInteger(dims)) {
    throw new InferlineError('inference_failed', `classifier: ${embeddings.length} embedding values do not split into ${batch} rows`);
  }
  const outputs: ClassifierOutput[] = [];
  for (let b = 0; b < batch; b++) {
    const row = probabilities.slice(b * classes, (b + 1) * classes);
    const output: ClassifierOutput = { probabilities: row, label: labels[argmax(row)] as string };
    if (embeddings !== undefined) output.embedding = l2Normalize(embeddings.slice(b * dims, (b + 1) * dims));
    outputs.push(output);
  }
  return outputs;
}
