import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeBytesElements, decodeRawElements, encodeBytesElements, encodeRawElements, frameInferenceResponse, splitInferenceBody, takeBinaryInputs } from '../src/binary-tensor-data.ts';

describe('binary-tensor-data: Triton binary tensor data framing', () => {
  it('a BYTES element is a uint32 little-endian length followed by the bytes', () => {
    const encoded = encodeBytesElements(['hi', Buffer.from([0xff]), '']);
    assert.deepEqual([...encoded], [2, 0, 0, 0, 0x68, 0x69, 1, 0, 0, 0, 0xff, 0, 0, 0, 0]);
    assert.deepEqual(decodeBytesElements(encoded, 't').map((b) => [...b]), [[0x68, 0x69], [0xff], []]);
  });

  it('a BYTES length or element running past the end is refused', () => {
    assert.throws(() => decodeBytesElements(Buffer.from([5, 0, 0, 0, 1, 2]), 'input "x"'), /input "x": a BYTES element of 5 bytes runs past the end/);
    assert.throws(() => decodeBytesElements(Buffer.from([1, 0, 0, 0, 7, 1, 0]), 'input "x"'), /length prefix is cut off at byte 5/);
  });

  it('FP32 and INT32 are 4 little-endian bytes each; a partial element is refused', () => {
    const raw = Buffer.alloc(8);
    raw.writeFloatLE(1.5, 0);
    raw.writeFloatLE(-0.25, 4);
    assert.deepEqual(decodeRawElements(raw, 'FP32', 't'), [1.5, -0.25]);
    assert.deepEqual([...encodeRawElements('FP32', [1.5, -0.25])], [...raw]);
    assert.deepEqual(decodeRawElements(encodeRawElements('INT32', [-2, 7]), 'INT32', 't'), [-2, 7]);
    assert.ok(Number.isNaN(encodeRawElements('FP32', [null]).readFloatLE(0)));
    assert.throws(() => decodeRawElements(Buffer.alloc(6), 'FP32', 't'), /6 bytes is not a whole number of 4-byte FP32 elements/);
  });

  it('a body splits at Inference-Header-Content-Length; without it the whole body is the JSON', () => {
    const json = Buffer.from('{"inputs":[]}');
    const { header, binary } = splitInferenceBody(Buffer.concat([json, Buffer.from([1, 2, 3])]), String(json.length));
    assert.deepEqual(header, { inputs: [] });
    assert.deepEqual([...binary], [1, 2, 3]);
    assert.equal(splitInferenceBody(json, undefined).binary.length, 0);
    assert.throws(() => splitInferenceBody(json, '99'), /not a byte count within the 13-byte body/);
    assert.throws(() => splitInferenceBody(json, '-1'), /not a byte count/);
    assert.throws(() => splitInferenceBody(json, '5'), /not valid JSON/);
    assert.throws(() => splitInferenceBody(Buffer.alloc(0), undefined), /body is empty/);
  });

  it('binary inputs take binary_data_size bytes each, in input order, and must use up the binary part', () => {
    const binary = Buffer.from([1, 2, 3, 4, 5]);
    const taken = takeBinaryInputs(
      [
        { name: 'a', parameters: { binary_data_size: 2 } },
        { name: 'b', data: [1] },
        { name: 'c', parameters: { binary_data_size: 3 } },
      ],
      binary,
    );
    assert.deepEqual(taken.map((t) => (t ? [...t] : undefined)), [[1, 2], undefined, [3, 4, 5]]);
    assert.throws(() => takeBinaryInputs([{ name: 'a', parameters: { binary_data_size: 2 } }], binary), /3 bytes after the JSON header belong to no input/);
    assert.throws(() => takeBinaryInputs([{ name: 'a', parameters: { binary_data_size: 6 } }], binary), /runs past the 5 bytes/);
    assert.throws(() => takeBinaryInputs([{ name: 'a', parameters: { binary_data_size: 1.5 } }], binary), /non-negative integer/);
  });

  it('a framed response is the JSON header then the outputs, with the header length', () => {
    const { body, headerLength } = frameInferenceResponse({ outputs: [] }, [Buffer.from([9]), Buffer.from([8, 7])]);
    assert.equal(body.subarray(0, headerLength).toString(), '{"outputs":[]}');
    assert.deepEqual([...body.subarray(headerLength)], [9, 8, 7]);
  });
});
