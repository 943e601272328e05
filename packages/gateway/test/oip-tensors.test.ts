import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelConfig } from '@inferline/shared';
import { encodeBytesElements } from '../src/binary-tensor-data.ts';
import { outputTensors, selectOutputs, tensorMetadata, tensorRows } from '../src/oip-tensors.ts';

/** Just the parts of a config the conversion reads. */
function config(fields: Partial<ModelConfig>): ModelConfig {
  return { name: 'm', platform: 'tfjs-graph', ...fields } as ModelConfig;
}

const text = config({
  signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'embedding', dtype: 'float32', shape: [3] }] },
  preprocess: { type: 'glove-tokenizer', max_tokens: 8, max_text_bytes: 100, vocab_file: 'v' },
});
const image = config({
  signature: {
    inputs: [{ name: 'image', dtype: 'string', shape: [] }],
    outputs: [
      { name: 'label', dtype: 'string', shape: [] },
      { name: 'detections', dtype: 'json', shape: [-1] },
    ],
  },
  preprocess: { type: 'image' } as ModelConfig['preprocess'],
});
const tensor = config({ signature: { inputs: [{ name: 'x', dtype: 'float32', shape: [2, -1] }], outputs: [{ name: 'y', dtype: 'int32', shape: [] }] } });

describe('oip-tensors: OIP tensors ↔ job inputs and outputs', () => {
  it('metadata: OIP datatypes, batch dimension -1 first, a json output one BYTES per row', () => {
    assert.deepEqual(tensorMetadata({ name: 'text', dtype: 'string', shape: [] }), { name: 'text', datatype: 'BYTES', shape: [-1] });
    assert.deepEqual(tensorMetadata({ name: 'e', dtype: 'float32', shape: [100] }), { name: 'e', datatype: 'FP32', shape: [-1, 100] });
    assert.deepEqual(tensorMetadata({ name: 'n', dtype: 'int32', shape: [2, -1] }), { name: 'n', datatype: 'INT32', shape: [-1, 2, -1] });
    assert.deepEqual(tensorMetadata({ name: 'd', dtype: 'json', shape: [-1] }), { name: 'd', datatype: 'BYTES', shape: [-1] });
  });

  it('text: one row per element, [N] or [N, 1], JSON strings or UTF-8 bytes', () => {
    assert.deepEqual(tensorRows(text, [{ name: 'text', datatype: 'BYTES', shape: [2], data: ['a', 'b'] }]), ['a', 'b']);
    assert.deepEqual(tensorRows(text, [{ name: 'text', datatype: 'BYTES', shape: [2, 1], data: [['a'], ['b']] }]), ['a', 'b']);
    assert.deepEqual(tensorRows(text, [{ name: 'text', datatype: 'BYTES', shape: [2], raw: encodeBytesElements(['é', 'z']) }]), ['é', 'z']);
    assert.throws(() => tensorRows(text, [{ name: 'text', datatype: 'BYTES', shape: [1], raw: encodeBytesElements([Buffer.from([0xff])]) }]), /row 0: the bytes are not valid UTF-8/);
  });

  it('image: raw bytes as they are, JSON text as base64', () => {
    const [bytes, b64] = tensorRows(image, [{ name: 'image', datatype: 'BYTES', shape: [2], data: [Buffer.from([1, 2]), 'AQI='] }]);
    assert.deepEqual(bytes, Buffer.from([1, 2]));
    assert.deepEqual(b64, { b64: 'AQI=' });
    assert.throws(() => tensorRows(image, [{ name: 'image', datatype: 'BYTES', shape: [1], data: [3] }]), /expected an encoded image/);
  });

  it('tensor: flat or nested row-major data reshaped per row, variable dimensions from the request', () => {
    const flat = tensorRows(tensor, [{ name: 'x', datatype: 'FP32', shape: [2, 2, 3], data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }]);
    assert.deepEqual(flat, [
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      [
        [7, 8, 9],
        [10, 11, 12],
      ],
    ]);
    const nested = tensorRows(tensor, [{ name: 'x', datatype: 'FP32', shape: [1, 2, 1], data: [[[1], [2]]] }]);
    assert.deepEqual(nested, [[[1], [2]]]);
    assert.throws(() => tensorRows(tensor, [{ name: 'x', datatype: 'FP32', shape: [1, 3, 1], data: [1, 2, 3] }]), /shape \[1, 3, 1\], expected \[N, 2, -1\]/);
  });

  it('refuses what does not fit the signature', () => {
    const cases: [Parameters<typeof tensorRows>[1], RegExp][] = [
      [[], /takes one input, "text" \(BYTES\); the request has 0/],
      [[{ name: 'txt', datatype: 'BYTES', shape: [1], data: ['a'] }], /unknown input "txt"/],
      [[{ name: 'text', datatype: 'INT32', shape: [1], data: [1] }], /datatype INT32, expected BYTES/],
      [[{ name: 'text', datatype: 'BYTES', shape: [0], data: [] }], /at least one row/],
      [[{ name: 'text', datatype: 'BYTES', shape: [1.5], data: ['a'] }], /non-negative integers/],
      [[{ name: 'text', datatype: 'BYTES', shape: [3], data: ['a', 'b'] }], /holds 3 elements, the data has 2/],
      [[{ name: 'text', datatype: 'BYTES', shape: [1] }], /no data/],
    ];
    for (const [tensors, message] of cases) assert.throws(() => tensorRows(text, tensors), message);
  });

  it('outputs: rows gathered batch-first in the order asked for; strings and JSON as BYTES', () => {
    const rows = [
      { label: 'cat', detections: [{ label: 'cat', score: 0.9, box: [1, 2, 3, 4] }] },
      { label: 'dog', detections: [] },
    ];
    assert.deepEqual(outputTensors(image, rows, ['detections', 'label']), [
      { name: 'detections', datatype: 'BYTES', shape: [2], data: ['[{"label":"cat","score":0.9,"box":[1,2,3,4]}]', '[]'] },
      { name: 'label', datatype: 'BYTES', shape: [2], data: ['cat', 'dog'] },
    ]);
    assert.deepEqual(outputTensors(text, [{ embedding: [1, 2, 3] }, { embedding: [4, 5, null] }]), [
      { name: 'embedding', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, null] },
    ]);
    assert.deepEqual(outputTensors(tensor, [{ y: 3 }]), [{ name: 'y', datatype: 'INT32', shape: [1], data: [3] }]);
    assert.throws(() => selectOutputs(text, ['logits']), /unknown output "logits": model "m" has "embedding"/);
    assert.throws(() => outputTensors(text, [{ embedding: [1, 2, 3] }, { embedding: [1] }]), /row 1 has shape \[1\], row 0 \[3\]/);
  });
});
