import { InferlineError, type ReducerName } from '@inferline/shared';
import { boxesReducer } from './boxes.ts';
import { collectReducer } from './collect.ts';
import { labelsReducer } from './labels.ts';
import { maxReducer } from './max.ts';
import { meanReducer } from './mean.ts';
import { minReducer } from './min.ts';
import type { Reducer, ReducerModule, ReducerOptions } from './reducer.ts';
import { sumReducer } from './sum.ts';
import { voteReducer } from './vote.ts';

export type { MemberOutput, Reducer, ReducerModule, ReducerOptions } from './reducer.ts';

/** Every reducer module by name (DESIGN.md section 5). */
export const REDUCER_MODULES: Record<ReducerName, ReducerModule> = {
  mean: meanReducer,
  sum: sumReducer,
  max: maxReducer,
  min: minReducer,
  collect: collectReducer,
  labels: labelsReducer,
  vote: voteReducer,
  boxes: boxesReducer,
};

/**
 * A fresh reducer `name` for one group.
 *
 * @throws InferlineError `invalid_reduce` when `name` is not a reducer (a group record from elsewhere).
 */
export function createReducer(name: ReducerName, options: ReducerOptions): Reducer {
  if (!Object.hasOwn(REDUCER_MODULES, name)) throw new InferlineError('invalid_reduce', `unknown reducer "${String(name)}"`);
  return REDUCER_MODULES[name].init(options);
}
