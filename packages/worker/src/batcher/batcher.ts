/**
 * The dynamic batching loop (DESIGN.md section 3; TF Serving's batch scheduler semantics,
 * https://github.com/tensorflow/serving/blob/master/tensorflow_serving/batching/README.md).
 *
 * Contract:
 * - The batch opens when its first request arrives; `batch_timeout_ms` is measured from that moment.
 * - It closes as soon as it holds `max_batch_size` requests (a full batch never waits), or when the
 *   timeout passes, whichever comes first. `batch_timeout_ms = 0` takes what is there.
 * - Redis answers a blocking XREADGROUP as soon as *any* entry arrives, so filling a batch is a loop
 *   on the client side: each read asks for the missing count and blocks at most the time left.
 */

/** A source of requests: a consumer group read, or a fake in tests. */
export interface BatchSource<T> {
  /**
   * Read at most `count` requests, waiting at most `blockMs` (ms, ≥ 1) for the first one.
   * Resolves with [] when none arrived in time.
   */
  read(count: number, blockMs: number): Promise<T[]>;
}

/** Monotonic clock in ms (performance.now in production, a fake in tests). */
export interface Clock {
  now(): number;
}

/** Options of {@link collectBatch}. */
export interface CollectOptions {
  /** Most requests in one batch. */
  max_batch_size: number;
  /** Wait for the batch to fill, ms from its first request; 0 = take what is there. */
  batch_timeout_ms: number;
  /** Longest single wait while no request is there, ms: bounds how late a stop request is seen. */
  idle_block_ms: number;
}

/**
 * Collect one batch. Waits up to `idle_block_ms` for a first request; resolves with [] when none came,
 * so the caller can look at its stop signal and its other duties between idle waits. Once a first
 * request is there, fills the batch until it is full or `batch_timeout_ms` has passed since then.
 */
export async function collectBatch<T>(source: BatchSource<T>, clock: Clock, options: CollectOptions): Promise<T[]> {
  const batch = await source.read(options.max_batch_size, options.idle_block_ms);
  if (batch.length === 0) return batch;
  const deadline = clock.now() + options.batch_timeout_ms;
  while (batch.length < options.max_batch_size) {
    const remaining = deadline - clock.now();
    if (remaining <= 0) break;
    batch.push(...(await source.read(options.max_batch_size - batch.length, Math.ceil(remaining))));
  }
  return batch;
}

/**
 * The size a batch of `size` requests runs at: the smallest of `allowed_batch_sizes` ≥ `size`, or `size`
 * itself when none are set (TF Serving's `allowed_batch_sizes`). The list is increasing and ends at
 * max_batch_size (validated when the config loads), so a batch never exceeds its last entry.
 */
export function paddedBatchSize(size: number, allowed: readonly number[]): number {
  return allowed.find((candidate) => candidate >= size) ?? size;
}

/**
 * Run `predict` on `inputs` padded up to the next allowed batch size with copies of the last input;
 * the padding rows' outputs are discarded. With no allowed sizes this is `predict(inputs)`.
 */
export async function predictPadded<T, R>(inputs: readonly T[], allowed: readonly number[], predict: (batch: readonly T[]) => Promise<R[]>): Promise<R[]> {
  const target = paddedBatchSize(inputs.length, allowed);
  if (target === inputs.length || inputs.length === 0) return predict(inputs);
  const last = inputs[inputs.length - 1] as T;
  const outputs = await predict([...inputs, ...new Array<T>(target - inputs.length).fill(last)]);
  return outputs.slice(0, inputs.length);
}
