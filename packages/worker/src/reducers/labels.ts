import { readMemberLabel } from './member-output.ts';
import type { ReducerModule } from './reducer.ts';

/** What `labels` puts between two labels. */
export const LABELS_SEPARATOR = ', ';

/**
 * `labels`: every member's string output `options.output` (a classifier's `label`) in index order,
 * `{ labels: "cat, dog, cat", items: string[], indexes: number[] }`, `indexes[i]` being the member
 * index of `items[i]`. Over no member: `labels: ""` and empty lists.
 *
 * `add` throws InferlineError `reduce_failed` when the output is missing or not a string.
 */
export const labelsReducer: ReducerModule = {
  name: 'labels',
  init(options) {
    const items: string[] = [];
    const indexes: number[] = [];
    return {
      add(output, index) {
        items.push(readMemberLabel(output, options.output, 'labels', index));
        indexes.push(index);
      },
      finish: () => ({ labels: items.join(LABELS_SEPARATOR), items, indexes }),
    };
  },
};
