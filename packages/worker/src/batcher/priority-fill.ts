/**
 * Filling batches from several priority levels (Triton's `dynamic_batching.priority_levels`,
 * https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md#priority),
 * one request stream per level, level 1 the highest.
 *
 * Contract:
 * - Each fill (one {@link PriorityFill.read}, what {@link collectBatch} asks for) takes requests from
 *   the highest level that has some, then from the next ones, until it holds `count`.
 * - Starvation bound: a level that had requests waiting and got none in a fill is *passed over*; once
 *   passed over `max_skips` consecutive fills, the next fill takes it first (before every higher
 *   level). So under a steady load of higher levels a waiting request of a lower level is taken within
 *   `max_skips + 1` fills of the moment it was first seen. `max_skips = 0` serves the waiting levels
 *   in turn.
 * - Reads: every level holding fewer than `count` requests in hand is read again (at most `count`
 *   each), all such levels in one call; the read blocks (up to `blockMs`) only when no level has
 *   anything in hand. So a level holds fewer than 2 × `count` requests read ahead. With one level this
 *   is the plain FIFO read of before: every read asks for `count` and hands all of it out.
 */
import type { BatchSource } from './batcher.ts';

/** Reads from the level streams (a consumer group read over several streams, or a fake in tests). */
export interface LevelSource<T> {
  /**
   * Read at most `count` requests from each level of `levels` (0-based indexes, highest level first),
   * waiting up to `blockMs` (ms, ≥ 1) for the first one when `blockMs` is given, else not at all.
   * @returns per level of `levels`, in the same order, what was read ([] when nothing).
   */
  read(levels: readonly number[], count: number, blockMs?: number): Promise<T[][]>;
}

/** A {@link BatchSource} over prioritized levels (see the contract above). */
export class PriorityFill<T> implements BatchSource<T> {
  readonly #source: LevelSource<T>;
  readonly #buffers: T[][];
  readonly #skips: number[];
  #maxSkips: number;

  /**
   * @param levels number of levels (`priority_levels`, ≥ 1)
   * @param maxSkips `priority_max_skips`
   */
  constructor(source: LevelSource<T>, levels: number, maxSkips: number) {
    this.#source = source;
    this.#buffers = Array.from({ length: Math.max(1, levels) }, () => []);
    this.#skips = this.#buffers.map(() => 0);
    this.#maxSkips = maxSkips;
  }

  /** Take a changed `priority_max_skips` (from the next fill). */
  set maxSkips(value: number) {
    this.#maxSkips = value;
  }

  /** Requests read and not yet handed out (they are this consumer's pending entries). */
  get buffered(): number {
    return this.#buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  }

  /** One fill: refill short levels (blocking only when nothing is in hand), then take up to `count`. */
  async read(count: number, blockMs: number): Promise<T[]> {
    const short = this.#buffers.flatMap((buffer, level) => (buffer.length < count ? [level] : []));
    if (short.length > 0) {
      const replies = await this.#source.read(short, count, this.buffered === 0 ? blockMs : undefined);
      short.forEach((level, i) => this.#buffers[level]?.push(...(replies[i] ?? [])));
    }
    return this.take(count);
  }

  /** Hand out up to `count` buffered requests without reading (a stop: finish what is in hand). */
  take(count: number): T[] {
    const order = this.#buffers.map((_, level) => level);
    // Levels passed over max_skips times go first, the most passed over (then the highest) first.
    const overdue = order.filter((level) => (this.#skips[level] ?? 0) >= this.#maxSkips && (this.#buffers[level]?.length ?? 0) > 0);
    overdue.sort((a, b) => (this.#skips[b] ?? 0) - (this.#skips[a] ?? 0) || a - b);
    const rest = order.filter((level) => !overdue.includes(level));
    const taken: T[] = [];
    for (const level of [...overdue, ...rest]) {
      const buffer = this.#buffers[level] ?? [];
      const had = buffer.length;
      if (taken.length < count) taken.push(...buffer.splice(0, count - taken.length));
      if (had === 0) this.#skips[level] = 0;
      else if (buffer.length === had) this.#skips[level] = (this.#skips[level] ?? 0) + 1;
      else this.#skips[level] = 0;
    }
    return taken;
  }
}
