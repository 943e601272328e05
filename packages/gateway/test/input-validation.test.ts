import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InferlineError, parseModelConfig } from '@inferline/shared';
import { validateInput } from '../src/input-validation.ts';

const text = parseModelConfig({
  name: 'text',
  platform: 'embedding-bag',
  signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'e', dtype: 'float32', shape: [4] }] },
  preprocess: { type: 'glove-tokenizer', max_text_bytes: 8 },
});
const textDefault = parseModelConfig({
  name: 'text2',
  platform: 'embedding-bag',
  signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'e', dtype: 'float32', shape: [4] }] },
});
const tensor = parseModelConfig({
  name: 'tensor',
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'x', dtype: 'int32', shape: [-1, 2] }], outputs: [{ name: 'y', dtype: 'float32', shape: [1] }] },
});

const floats = parseModelConfig({
  name: 'floats',
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'x', dtype: 'float32', shape: [3] }], outputs: [{ name: 'y', dtype: 'float32', shape: [1] }] },
});

function message(fn: () => void): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof InferlineError);
    assert.equal(error.code, 'invalid_input');
    return error.message;
  }
  assert.fail('expected invalid_input');
}

describe('validateInput', () => {
  it('accepts text up to max_text_bytes UTF-8 bytes', () => {
    validateInput(text, '12345678');
    validateInput(text, 'ééé');
    validateInput(textDefault, 'x'.repeat(65_536));
  });

  it('rejects non-strings and text over the limit, saying why', () => {
    assert.match(message(() => validateInput(text, null)), /JSON string, got null/);
    assert.match(message(() => validateInput(text, { b64: 'AA' })), /got an object/);
    assert.match(message(() => validateInput(text, 'ééééé')), /10 UTF-8 bytes, more than the 8/);
    assert.match(message(() => validateInput(textDefault, 'x'.repeat(65_537))), /more than the 65536/);
  });

  it('checks a tensor input against rank, fixed dimensions and dtype', () => {
    validateInput(tensor, [[1, 2], [3, 4], [5, 6]]);
    validateInput(tensor, []);
    assert.match(message(() => validateInput(tensor, [[1, 2, 3]])), /input\[0\]": expected 2 elements/);
    assert.match(message(() => validateInput(tensor, [[1, 2.5]])), /input\[0\]\[1\]": expected a finite int32 number/);
    assert.match(message(() => validateInput(tensor, [1, 2])), /input\[0\]": expected an array/);
    assert.match(message(() => validateInput(tensor, 'text')), /expected an array/);
  });

  it('takes NaN and ±Infinity for float32 (the DT_FLOAT JSON mapping of TF Serving), never for int32', () => {
    validateInput(floats, [NaN, Infinity, -Infinity]);
    assert.match(message(() => validateInput(tensor, [[1, NaN]])), /input\[0\]\[1\]": expected a finite int32 number/);
    assert.match(message(() => validateInput(tensor, [[Infinity, 1]])), /expected a finite int32 number/);
    assert.match(message(() => validateInput(floats, [1, 2, '3'])), /input\[2\]": expected a float32 number, got a string/);
  });
});
