import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collectBatch, paddedBatchSize, predictPadded, type BatchSource, type Clock } from '../src/batcher/batcher.ts';

/**
 * A fake stream with a fake clock: requests arrive at scripted times (ms). `read` behaves like
 * XREADGROUP COUNT n BLOCK t: it answers at once with what has arrived, else waits until the next
 * arrival or the block time, whichever is first, advancing the fake clock.
 */
class FakeStream implements BatchSource<number>, Clock {
  time = 0;
  readonly reads: { count: number; blockMs: number; at: number }[] = [];
  readonly #arrivals: number[];

  constructor(arrivals: number[]) {
    this.#arrivals = [...arrivals].sort((a, b) => a - b);
  }

  now(): number {
    return this.time;
  }

  read(count: number, blockMs: number): Promise<number[]> {
    assert.ok(blockMs >= 1, 'a blocking read never asks for BLOCK 0 (which means forever)');
    this.reads.push({ count, blockMs, at: this.time });
    const next = this.#arrivals[0];
    if (next === undefined || next > this.time + blockMs) {
      this.time += blockMs;
      return Promise.resolve([]);
    }
    this.time = Math.max(this.time, next);
    const ready: number[] = [];
    while (ready.length < count && this.#arrivals[0] !== undefined && this.#arrivals[0] <= this.time) {
      ready.push(this.#arrivals.shift() as number);
    }
    return Promise.resolve(ready);
  }
}

describe('collectBatch', () => {
  test('fills to max_batch_size without waiting when requests are already there', async () => {
    const stream = new FakeStream(Array.from({ length: 40 }, () => 0));
    const batch = await collectBatch(stream, stream, { max_batch_size: 32, batch_timeout_ms: 50, idle_block_ms: 1000 });
    assert.equal(batch.length, 32);
    assert.equal(stream.time, 0, 'no time passed');
    assert.equal(stream.reads.length, 1, 'one read took the whole batch');
  });

  test('closes batch_timeout_ms after the first request when fewer arrive', async () => {
    const stream = new FakeStream([100, 103, 120, 200]);
    const batch = await collectBatch(stream, stream, { max_batch_size: 8, batch_timeout_ms: 30, idle_block_ms: 1000 });
    assert.deepEqual(batch, [100, 103, 120], 'the request at 200 is after the deadline of 130');
    assert.equal(stream.time, 130, 'closed exactly 30 ms after the first request');
  });

  test('never holds a full batch: returns as soon as the last slot fills', async () => {
    const stream = new FakeStream([10, 11, 12, 13]);
    const batch = await collectBatch(stream, stream, { max_batch_size: 4, batch_timeout_ms: 500, idle_block_ms: 1000 });
    assert.deepEqual(batch, [10, 11, 12, 13]);
    assert.equal(stream.time, 13);
  });

  test('asks each read only for the slots still missing', async () => {
    const stream = new FakeStream([0, 0, 0, 5, 5, 9]);
    await collectBatch(stream, stream, { max_batch_size: 6, batch_timeout_ms: 20, idle_block_ms: 1000 });
    assert.deepEqual(stream.reads.map((read) => read.count), [6, 3, 1]);
  });

  test('batch_timeout_ms 0 takes what is there', async () => {
    const stream = new FakeStream([50, 50, 51]);
    const batch = await collectBatch(stream, stream, { max_batch_size: 8, batch_timeout_ms: 0, idle_block_ms: 1000 });
    assert.deepEqual(batch, [50, 50]);
    assert.equal(stream.time, 50);
  });

  test('the clock starts at the first request, not at the start of the idle wait', async () => {
    const stream = new FakeStream([500, 520]);
    const batch = await collectBatch(stream, stream, { max_batch_size: 8, batch_timeout_ms: 30, idle_block_ms: 1000 });
    assert.deepEqual(batch, [500, 520]);
    assert.equal(stream.time, 530);
  });

  test('resolves empty after idle_block_ms when no request arrives', async () => {
    const stream = new FakeStream([2500]);
    const batch = await collectBatch(stream, stream, { max_batch_size: 8, batch_timeout_ms: 30, idle_block_ms: 1000 });
    assert.deepEqual(batch, []);
    assert.equal(stream.time, 1000);
    assert.equal(stream.reads.length, 1);
  });
});

describe('allowed_batch_sizes', () => {
  test('pads up to the next allowed batch size', () => {
    assert.equal(paddedBatchSize(3, [1, 2, 4, 8]), 4);
    assert.equal(paddedBatchSize(8, [1, 2, 4, 8]), 8);
    assert.equal(paddedBatchSize(1, [1, 2, 4, 8]), 1);
    assert.equal(paddedBatchSize(5, []), 5, 'no allowed sizes: no padding');
  });

  test('runs the padded batch and discards the padding rows', async () => {
    const seen: number[][] = [];
    const outputs = await predictPadded([1, 2, 3], [2, 4, 8], (batch) => {
      seen.push([...batch]);
      return Promise.resolve(batch.map((x) => x * 10));
    });
    assert.deepEqual(seen, [[1, 2, 3, 3]], 'padded to 4 with copies of the last input');
    assert.deepEqual(outputs, [10, 20, 30]);
  });
});
