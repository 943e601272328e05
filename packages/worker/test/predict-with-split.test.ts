import assert from 'node:assert/strict';
import { test } from 'node:test';
import { predictWithSplit } from '../src/predict-with-split.ts';

/** A model that throws for any batch containing the input 'bad', else doubles each number. */
function fussyModel(calls: number[]) {
  return (batch: readonly unknown[]): Promise<Record<string, unknown>[]> => {
    calls.push(batch.length);
    if (batch.includes('bad')) return Promise.reject(new Error('cannot run "bad"'));
    return Promise.resolve(batch.map((x) => ({ y: Number(x) * 2 })));
  };
}

test('runs a healthy batch in one forward pass', async () => {
  const calls: number[] = [];
  const results = await predictWithSplit([1, 2, 3], fussyModel(calls), () => undefined);
  assert.deepEqual(calls, [3]);
  assert.deepEqual(results, [1, 2, 3].map((x) => ({ ok: true, output: { y: x * 2 } })));
});

test('one bad input fails alone and the rest of its batch succeeds', async () => {
  const calls: number[] = [];
  const splits: number[] = [];
  const inputs = [1, 2, 3, 4, 'bad', 6, 7, 8];
  const results = await predictWithSplit(inputs, fussyModel(calls), (_error, size) => splits.push(size));
  assert.equal(results.length, 8);
  results.forEach((result, i) => {
    if (i === 4) assert.deepEqual(result, { ok: false, code: 'inference_failed', message: 'cannot run "bad"' });
    else assert.deepEqual(result, { ok: true, output: { y: Number(inputs[i]) * 2 } });
  });
  assert.deepEqual(splits, [8, 4, 2], 'split only the halves that hold the bad input');
  assert.ok(calls.length <= 1 + 2 * Math.log2(8), `${calls.length} passes`);
});

test('a model returning the wrong number of outputs fails the batch, never misaligns results', async () => {
  const dropsOne = (batch: readonly unknown[]) => Promise.resolve(batch.slice(1).map((x) => ({ y: x })));
  const results = await predictWithSplit([1, 2], dropsOne, () => undefined);
  assert.ok(results.every((result) => !result.ok));
});
