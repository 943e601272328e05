import { InferlineError, type ReducerName } from '@inferline/shared';
import type { MemberOutput } from './reducer.ts';

/**
 * The InferlineError `reduce_failed` for member `index` of a `reducer` group, with a message that
 * names both (`mean: member 3: output "embedding" has shape [4], the group has [3]`).
 */
export function reduceFailed(reducer: ReducerName, index: number, message: string): InferlineError {
  return new InferlineError('reduce_failed', `${reducer}: member ${index}: ${message}`, { index });
}

/**
 * The value of output `name` in a member's output object.
 *
 * @throws InferlineError `reduce_failed` when the member has no such output (absent or undefined).
 */
export function readMemberOutput(output: MemberOutput, name: string, reducer: ReducerName, index: number): unknown {
  const value = typeof output === 'object' && output !== null && Object.hasOwn(output, name) ? output[name] : undefined;
  if (value === undefined) throw reduceFailed(reducer, index, `output "${name}" is missing`);
  return value;
}

/**
 * The string value of output `name` (a classifier's `label`).
 *
 * @throws InferlineError `reduce_failed` when the output is missing or not a string.
 */
export function readMemberLabel(output: MemberOutput, name: string, reducer: ReducerName, index: number): string {
  const value = readMemberOutput(output, name, reducer, index);
  if (typeof value !== 'string') throw reduceFailed(reducer, index, `output "${name}" is not a string`);
  return value;
}
