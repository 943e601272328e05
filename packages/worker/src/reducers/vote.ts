import { InferlineError } from '@inferline/shared';
import { readMemberLabel } from './member-output.ts';
import type { ReducerModule } from './reducer.ts';

/**
 * `vote`: the most frequent string output `options.output` (a classifier's `label`) over the members,
 * `{ label, count, counts: { [label]: n } }` with `counts` in order of each label's first appearance.
 *
 * Ties go to the label that reached the winning count first in index order: with members
 * `dog, cat, cat, dog` both have 2, and `cat` wins because it had 2 at member 2, `dog` only at member 3.
 *
 * `add` throws InferlineError `reduce_failed` when the output is missing or not a string; `finish`
 * throws `empty_group` over no member.
 */
export const voteReducer: ReducerModule = {
  name: 'vote',
  init(options) {
    const counts = new Map<string, number>();
    let winner: string | undefined;
    let winnerCount = 0;
    return {
      add(output, index) {
        const label = readMemberLabel(output, options.output, 'vote', index);
        const count = (counts.get(label) ?? 0) + 1;
        counts.set(label, count);
        // Strictly greater: on a tie the label that got there first keeps the lead.
        if (count > winnerCount) {
          winner = label;
          winnerCount = count;
        }
      },
      finish() {
        if (winner === undefined) throw new InferlineError('empty_group', 'vote: the group has no member to vote');
        return { label: winner, count: winnerCount, counts: Object.fromEntries(counts) };
      },
    };
  },
};
