import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isInferlineError } from '@inferline/shared';
import { argmax, classifierOutputs, l2Normalize } from '../src/postprocess/classifier.ts';
import { readLabels } from '../src/postprocess/labels.ts';

const LABELS = ['cat', 'dog', 'bird'];

function closeTo(actual: ArrayLike<number> | undefined, expected: readonly number[], tolerance = 1e-6): void {
  assert.ok(actual, 'array missing');
  assert.equal(actual.length, expected.length);
  expected.forEach((value, i) => assert.ok(Math.abs((actual[i] as number) - value) <= tolerance, `[${i}]: ${actual[i]} vs ${value}`));
}

function assertCode(code: string, pattern?: RegExp): (error: unknown) => boolean {
  return (error) => isInferlineError(error) && error.code === code && (pattern === undefined || pattern.test(error.message));
}

describe('argmax', () => {
  test('returns the index of the largest value', () => {
    assert.equal(argmax([0.1, 0.7, 0.2]), 1);
    assert.equal(argmax([-3, -1, -2]), 1);
  });

  test('takes the first index on a tie and never picks NaN', () => {
    assert.equal(argmax([0.5, 0.5, 0]), 0);
    assert.equal(argmax([Number.NaN, 0.2, 0.1]), 1);
  });
});

describe('l2Normalize', () => {
  test('scales to unit norm: [3, 4] → [0.6, 0.8], [1, 1, 1, 1] → 0.5 each', () => {
    closeTo(l2Normalize(new Float32Array([3, 4])), [0.6, 0.8]);
    closeTo(l2Normalize(new Float32Array([1, 1, 1, 1])), [0.5, 0.5, 0.5, 0.5]);
    closeTo(l2Normalize(new Float32Array([0, -2, 0])), [0, -1, 0]);
  });

  test('leaves a zero vector zero (no NaN)', () => {
    assert.deepEqual([...l2Normalize(new Float32Array(4))], [0, 0, 0, 0]);
  });

  test('works in place and returns its argument', () => {
    const vector = new Float32Array([0, 5]);
    assert.equal(l2Normalize(vector), vector);
    closeTo(vector, [0, 1]);
  });
});

describe('classifierOutputs', () => {
  test('splits a batch into per-request probabilities, argmax label and normalized embedding', () => {
    const probabilities = new Float32Array([0.1, 0.7, 0.2, 0.5, 0.3, 0.2]);
    const embeddings = new Float32Array([3, 4, 0, 0]);
    const outputs = classifierOutputs(probabilities, embeddings, 2, LABELS);
    assert.equal(outputs.length, 2);
    closeTo(outputs[0]?.probabilities, [0.1, 0.7, 0.2]);
    assert.equal(outputs[0]?.label, 'dog');
    closeTo(outputs[0]?.embedding, [0.6, 0.8]);
    closeTo(outputs[1]?.probabilities, [0.5, 0.3, 0.2]);
    assert.equal(outputs[1]?.label, 'cat');
    assert.deepEqual([...(outputs[1]?.embedding ?? [])], [0, 0]);
  });

  test('gives each request its own arrays, not views of the batch', () => {
    const probabilities = new Float32Array([0.2, 0.3, 0.5]);
    const embeddings = new Float32Array([1, 0]);
    const [output] = classifierOutputs(probabilities, embeddings, 1, LABELS);
    probabilities.fill(0);
    embeddings.fill(9);
    closeTo(output?.probabilities, [0.2, 0.3, 0.5]);
    assert.equal(output?.label, 'bird');
    closeTo(output?.embedding, [1, 0]);
  });

  test('omits the embedding when the model has none; an empty batch gives no outputs', () => {
    const [output] = classifierOutputs(new Float32Array([0, 0, 1]), undefined, 1, LABELS);
    assert.deepEqual(Object.keys(output ?? {}).sort(), ['label', 'probabilities']);
    assert.deepEqual(classifierOutputs(new Float32Array(0), new Float32Array(0), 0, LABELS), []);
  });

  test('fails with inference_failed when the arrays do not fit the batch', () => {
    assert.throws(() => classifierOutputs(new Float32Array(5), undefined, 2, LABELS), assertCode('inference_failed'));
    assert.throws(() => classifierOutputs(new Float32Array(6), new Float32Array(5), 2, LABELS), assertCode('inference_failed'));
  });
});

describe('readLabels', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-labels-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads one label per line, final newline optional, CRLF accepted', async () => {
    for (const [name, text] of [
      ['lf.txt', 'cat\ndog\nbird\n'],
      ['bare.txt', 'cat\ndog\nbird'],
      ['crlf.txt', 'cat\r\ndog\r\nbird\r\n'],
    ] as const) {
      await writeFile(join(dir, name), text);
      assert.deepEqual(await readLabels(join(dir, name)), LABELS, name);
    }
  });

  test('rejects a missing file, an empty file or an empty line with invalid_config', async () => {
    await writeFile(join(dir, 'empty.txt'), '');
    await writeFile(join(dir, 'gap.txt'), 'cat\n\ndog\n');
    for (const name of ['missing.txt', 'empty.txt', 'gap.txt']) {
      await assert.rejects(readLabels(join(dir, name)), assertCode('invalid_config', new RegExp(name)));
    }
  });
});
