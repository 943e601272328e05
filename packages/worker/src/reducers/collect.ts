import { readMemberOutput } from './member-output.ts';
import type { ReducerModule } from './reducer.ts';

/** The output name that makes `collect` keep each member's whole output object. */
export const COLLECT_WHOLE_OUTPUT = '*';

/**
 * `collect`: every member's output in index order, `{ outputs: unknown[], indexes: number[] }`, where
 * `indexes[i]` is the member index of `outputs[i]` (they differ when `on_item_error: "skip"` left failed
 * members out). With `options.output === "*"` ({@link COLLECT_WHOLE_OUTPUT}) each item is the member's
 * whole output object, else only its output `options.output`. Over no member: empty lists.
 *
 * `add` throws InferlineError `reduce_failed` when a member lacks output `options.output`.
 */
export const collectReducer: ReducerModule = {
  name: 'collect',
  init(options) {
    const outputs: unknown[] = [];
    const indexes: number[] = [];
    return {
      add(output, index) {
        outputs.push(options.output === COLLECT_WHOLE_OUTPUT ? output : readMemberOutput(output, options.output, 'collect', index));
        indexes.push(index);
      },
      finish: () => ({ outputs, indexes }),
    };
  },
};
