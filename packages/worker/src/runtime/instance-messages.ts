import type { ModelConfig } from '@inferline/shared';

/**
 * The messages between a worker's main thread and one model instance thread (instance-thread.ts),
 * and the transfer rule for their buffers. Inputs are structured-cloned (copied as binary: a batch
 * that fails is retried in halves with the same inputs, so the main thread must keep them); outputs
 * are transferred (their ArrayBuffers move to the main thread without a copy).
 */

/** What an instance thread is started with (`workerData`). */
export interface InstanceData {
  config: ModelConfig;
  /** The version folder (model.json, shards, assets). */
  versionDir: string;
  version: number;
  /** Backend the main thread picked (`tensorflow`, `wasm`, `cpu`); the thread initializes the same one. */
  backend: string;
  /** Batch sizes to warm up at before the instance reports ready. */
  warmupSizes: number[];
}

/** Main thread → instance. */
export type InstanceRequest =
  | { type: 'predict'; id: number; inputs: unknown[] }
  | { type: 'memory'; id: number };

/** TF.js memory of one instance: tensors alive and their bytes (`tf.memory()`). */
export interface InstanceMemory {
  tensors: number;
  tensor_bytes: number;
}

/** Instance → main thread. */
export type InstanceReply =
  | ({ type: 'ready'; backend: string } & InstanceMemory)
  | { type: 'load_failed'; message: string }
  | { type: 'result'; id: number; outputs: Record<string, unknown>[] }
  | { type: 'error'; id: number; message: string; code?: string }
  | ({ type: 'memory'; id: number } & InstanceMemory);

/**
 * The distinct ArrayBuffers under `value` (typed arrays in objects and arrays, any depth), to pass as
 * postMessage's transfer list. SharedArrayBuffers are left out (they are shared, not moved).
 */
export function transferables(value: unknown, found = new Set<ArrayBuffer>()): ArrayBuffer[] {
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) found.add(value.buffer);
  } else if (Array.isArray(value)) {
    for (const item of value) transferables(item, found);
  } else if (typeof value === 'object' && value !== null) {
    for (const item of Object.values(value)) transferables(item, found);
  }
  return [...found];
}
