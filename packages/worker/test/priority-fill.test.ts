import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collectBatch, type Clock } from '../src/batcher/batcher.ts';
import { PriorityFill, type LevelSource } from '../src/batcher/priority-fill.ts';

/** A request: its level (0-based) and its arrival order within the level. */
interface Request {
  level: number;
  n: number;
}

/**
 * Fake level streams with a fake clock. Each level has a scripted arrival time per request (ms); a
 * read answers at once with what has arrived on the asked levels (at most `count` each), else, when it
 * may block, waits until the next arrival on those levels or the block time, advancing the clock.
 */
class FakeLevels implements LevelSource<Request>, Clock {
  time = 0;
  readonly reads: { levels: number[]; count: number; blockMs: number | undefined }[] = [];
  readonly #arrivals: number[][];
  readonly #next: number[];

  constructor(arrivals: number[][]) {
    this.#arrivals = arrivals.map((times) => [...times].sort((a, b) => a - b));
    this.#next = arrivals.map(() => 0);
  }

  now(): number {
    return this.time;
  }

  /** Add `count` requests at `level` arriving now (a steady load). */
  arrive(level: number, count: number): void {
    for (let i = 0; i < count; i++) this.#arrivals[level]?.push(this.time);
  }

  read(levels: readonly number[], count: number, blockMs?: number): Promise<Request[][]> {
    this.reads.push({ levels: [...levels], count, blockMs });
    const ready = (): Request[][] =>
      levels.map((level) => {
        const out: Request[] = [];
        const times = this.#arrivals[level] ?? [];
        while (out.length < count && (this.#next[level] ?? 0) < times.length && (times[this.#next[level] ?? 0] ?? Infinity) <= this.time) {
          out.push({ level, n: this.#next[level] ?? 0 });
          this.#next[level] = (this.#next[level] ?? 0) + 1;
        }
        return out;
      });
    let got = ready();
    if (got.every((r) => r.length === 0) && blockMs !== undefined) {
      const upcoming = levels.map((level) => this.#arrivals[level]?.[this.#next[level] ?? 0] ?? Infinity);
      const first = Math.min(...upcoming);
      this.time = first <= this.time + blockMs ? first : this.time + blockMs;
      got = ready();
    }
    return Promise.resolve(got);
  }
}

const batching = (max_batch_size: number, batch_timeout_ms = 0) => ({ max_batch_size, batch_timeout_ms, idle_block_ms: 1000 });

describe('PriorityFill', () => {
  test('one level behaves as the plain FIFO read: every read asks for the missing count and hands it all out', async () => {
    const levels = new FakeLevels([[0, 0, 0, 5, 5]]);
    const fill = new PriorityFill(levels, 1, 4);
    const batch = await collectBatch(fill, levels, batching(4, 10));
    assert.deepEqual(batch.map((r) => r.n), [0, 1, 2, 3]);
    assert.deepEqual(levels.reads.map((r) => r.count), [4, 1], 'the second read asks only for what is missing');
    assert.equal(fill.buffered, 0, 'nothing is held back');
  });

  test('fills from the highest level first, then the next, in one batch', async () => {
    const levels = new FakeLevels([[0, 0], [0, 0, 0, 0]]);
    const fill = new PriorityFill(levels, 2, 4);
    const batch = await collectBatch(fill, levels, batching(4));
    assert.deepEqual(batch, [{ level: 0, n: 0 }, { level: 0, n: 1 }, { level: 1, n: 0 }, { level: 1, n: 1 }]);
    assert.equal(fill.buffered, 2, 'the rest of the lower level stays in hand for the next batch');
  });

  test('a waiting lower level is passed over at most priority_max_skips batches under a steady higher load', async () => {
    const maxSkips = 3;
    const levels = new FakeLevels([[], [0]]);
    const fill = new PriorityFill(levels, 2, maxSkips);
    const batches: Request[][] = [];
    for (let i = 0; i < 10; i++) {
      levels.arrive(0, 4); // a full batch of level 1 arrives before every fill
      batches.push(await collectBatch(fill, levels, batching(4)));
      levels.time += 1;
    }
    const served = batches.findIndex((batch) => batch.some((r) => r.level === 1));
    assert.equal(served, maxSkips, `served in batch ${served + 1}: after ${maxSkips} batches of level 1`);
    assert.equal(batches[served]?.[0]?.level, 1, 'the overdue level goes first in its batch');
    assert.ok(batches.every((batch) => batch.length === 4), 'every batch is full');
  });

  test('priority_max_skips 0 serves waiting levels in turn', async () => {
    const levels = new FakeLevels([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]);
    const fill = new PriorityFill(levels, 2, 0);
    const order: number[] = [];
    for (let i = 0; i < 4; i++) order.push((await collectBatch(fill, levels, batching(2)))[0]?.level ?? -1);
    assert.deepEqual(order, [0, 1, 0, 1]);
  });

  test('blocks only when nothing is in hand', async () => {
    const levels = new FakeLevels([[0], [0, 0, 0, 0, 0, 0]]);
    const fill = new PriorityFill(levels, 2, 10);
    await collectBatch(fill, levels, batching(2));
    await collectBatch(fill, levels, batching(2));
    assert.deepEqual(levels.reads[0], { levels: [0, 1], count: 2, blockMs: 1000 }, 'the first read waits on every level');
    assert.deepEqual(levels.reads[1], { levels: [0, 1], count: 2, blockMs: undefined }, 'with some of level 2 in hand, the levels are looked at without waiting');
  });

  test('take() hands out what was read ahead without reading (a stop)', async () => {
    const levels = new FakeLevels([[0, 0], [0, 0]]);
    const fill = new PriorityFill(levels, 2, 4);
    assert.deepEqual(await fill.read(1, 10), [{ level: 0, n: 0 }]);
    const reads = levels.reads.length;
    assert.deepEqual(fill.take(8), [{ level: 1, n: 0 }]);
    assert.equal(levels.reads.length, reads);
    assert.equal(fill.buffered, 0);
  });
});
