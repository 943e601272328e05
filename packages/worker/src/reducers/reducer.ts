import type { ReducerName } from '@inferline/shared';

/**
 * One member's output as a worker wrote it and MessagePack decoded it: output name → value. Tensors
 * are typed arrays (`embedding: Float32Array [100]`) or nested number arrays, strings stay strings
 * (`label`), structured outputs stay objects (`detections: Detection[]`).
 */
export type MemberOutput = Record<string, unknown>;

/** What a reducer is built with (from the group record). */
export interface ReducerOptions {
  /** Member output the reducer reads (`embedding`, `label`, `detections`); resolved by the gateway. */
  output: string;
  /** Members the group holds (upper bound of `index`). */
  size: number;
}

/**
 * A reducer (DESIGN.md section 5): built by its module's `init(options)`, fed every member that
 * succeeded in increasing index order with `add`, then asked once for the group output with `finish`.
 * Memory is O(reducer state): `mean` keeps one accumulator whatever the group size; `collect`,
 * `labels` and `boxes` keep what they return.
 *
 * `add` and `finish` throw InferlineError `reduce_failed` when a member's output does not fit the
 * reducer (a missing output, a tensor of another shape), and `empty_group` from `finish` when the
 * reducer cannot answer over no member (`mean`, `max`, `min`, `vote`).
 */
export interface Reducer {
  /**
   * @param output the member's output
   * @param index its index in the group (0-based, increasing between calls; failed members skipped)
   * @param input its encoded input bytes, given only to reducers of `REDUCERS_KEEPING_INPUTS` (shared)
   */
  add(output: MemberOutput, index: number, input?: Buffer): void | Promise<void>;
  /** The group output, a MessagePack-encodable object (typed arrays, Buffers allowed). */
  finish(): Record<string, unknown> | Promise<Record<string, unknown>>;
}

/** A reducer module: one file under `reducers/`. */
export interface ReducerModule {
  name: ReducerName;
  init(options: ReducerOptions): Reducer;
}
