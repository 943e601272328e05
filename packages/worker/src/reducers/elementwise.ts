import { InferlineError, type ReducerName } from '@inferline/shared';
import { readMemberOutput, reduceFailed } from './member-output.ts';
import type { Reducer, ReducerModule, ReducerOptions } from './reducer.ts';

/** A member's tensor output: its shape and its values in row-major order. */
export interface MemberTensor {
  /** `[]` for a plain number, `[n]` for a typed array or `number[]`, `[n, m]` for `number[][]`, ... */
  shape: number[];
  values: ArrayLike<number>;
}

/** What the element-wise reducers return per output: a number, or arrays nested to the members' shape. */
export type NestedNumbers = number | NestedNumbers[];

/** A numeric typed array or a plain array: one level of a tensor. BigInt arrays are not numeric here. */
function isArrayLevel(value: unknown): value is ArrayLike<unknown> {
  if (Array.isArray(value)) return true;
  return ArrayBuffer.isView(value) && !(value instanceof DataView) && !(value instanceof BigInt64Array) && !(value instanceof BigUint64Array);
}

/**
 * Read a member's tensor output: a typed array (`Float32Array`, `Int32Array`, ...: shape `[length]`,
 * values not copied), a plain number (shape `[]`), or rectangular nested arrays of numbers whose
 * innermost level may also be typed arrays (shape from the nesting, values flattened row-major).
 * NaN and ±Infinity are numbers and pass through.
 *
 * @throws InferlineError `reduce_failed` (naming `reducer` and member `index`) for anything else:
 *   a string, an object, a BigInt array, ragged nesting, a non-number leaf.
 */
export function readTensor(value: unknown, reducer: ReducerName, index: number): MemberTensor {
  if (typeof value === 'number') return { shape: [], values: [value] };
  if (!isArrayLevel(value)) throw reduceFailed(reducer, index, 'output is not a numeric tensor');
  if (!Array.isArray(value)) return { shape: [value.length], values: value as ArrayLike<number> };
  const shape: number[] = [];
  for (let level: unknown = value; isArrayLevel(level); level = level[0]) shape.push(level.length);
  const values: number[] = [];
  const flatten = (level: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof level !== 'number') throw reduceFailed(reducer, index, 'output holds a non-numeric element');
      values.push(level);
      return;
    }
    if (!isArrayLevel(level) || level.length !== shape[depth]) throw reduceFailed(reducer, index, 'output is a ragged array');
    for (let i = 0; i < level.length; i++) flatten(level[i], depth + 1);
  };
  flatten(value, 0);
  return { shape, values };
}

/** Rebuild row-major `values` into plain arrays nested to `shape` (`[]` → the single number). */
export function nestValues(values: ArrayLike<number>, shape: readonly number[]): NestedNumbers {
  if (shape.length === 0) return values[0] as number;
  let offset = 0;
  const build = (depth: number): NestedNumbers[] => {
    const length = shape[depth] as number;
    const level: NestedNumbers[] = new Array<NestedNumbers>(length);
    for (let i = 0; i < length; i++) level[i] = depth === shape.length - 1 ? (values[offset++] as number) : build(depth + 1);
    return level;
  };
  return build(0);
}

/**
 * A reducer module that folds every member's tensor output `options.output` element by element into
 * a float64 accumulator: the first member's values start it (and fix the shape), each further member
 * is folded in with `combine(accumulated, value)`, and `finish` maps each element through
 * `finalize(accumulated, count)` when given (mean divides by the member count).
 *
 * The reducer's `add` throws InferlineError `reduce_failed` when a member lacks the output, it is not
 * numeric, or its shape differs from the first member's; `finish` throws `empty_group` over no member
 * (no shape is known). `finish` returns `{ [options.output]: NestedNumbers }` of plain float64 numbers.
 */
export function elementwiseModule(
  name: ReducerName,
  combine: (accumulated: number, value: number) => number,
  finalize?: (accumulated: number, count: number) => number,
): ReducerModule {
  return { name, init: (options) => elementwiseReducer(name, options, combine, finalize) };
}

function elementwiseReducer(
  name: ReducerName,
  options: ReducerOptions,
  combine: (accumulated: number, value: number) => number,
  finalize: ((accumulated: number, count: number) => number) | undefined,
): Reducer {
  let shape: number[] = [];
  let accumulator: Float64Array | undefined;
  let count = 0;
  return {
    add(output, index) {
      const { shape: memberShape, values } = readTensor(readMemberOutput(output, options.output, name, index), name, index);
      if (accumulator === undefined) {
        shape = memberShape;
        accumulator = Float64Array.from(values);
      } else {
        if (memberShape.length !== shape.length || memberShape.some((size, axis) => size !== shape[axis])) {
          throw reduceFailed(name, index, `output "${options.output}" has shape [${memberShape.join(', ')}], the group has [${shape.join(', ')}]`);
        }
        for (let i = 0; i < accumulator.length; i++) accumulator[i] = combine(accumulator[i] as number, values[i] as number);
      }
      count++;
    },
    finish() {
      if (accumulator === undefined) throw new InferlineError('empty_group', `${name}: the group has no member to reduce`);
      const result = finalize === undefined ? accumulator : accumulator.map((value) => finalize(value, count));
      return { [options.output]: nestValues(result, shape) };
    },
  };
}
