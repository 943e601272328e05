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
