import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InferlineError, parseModelConfig } from '@inferline/shared';
import { readPredictRequest, type PredictBody } from '../src/tfserving-request.ts';

const text = parseModelConfig({
  name: 'text',
  platform: 'embedding-bag',
  signature: { inputs: [{ name: 'text', dtype: 'string', shape: [] }], outputs: [{ name: 'embedding', dtype: 'float32', shape: [4] }] },
});
const image = parseModelConfig({
  name: 'image',
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'image', dtype: 'string', shape: [] }], outputs: [{ name: 'p', dtype: 'float32', shape: [2] }] },
  preprocess: { type: 'image', width: 8, height: 8 },
});
const floats = parseModelConfig({
  name: 'floats',
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'x', dtype: 'float32', shape: [2] }], outputs: [{ name: 'y', dtype: 'float32', shape: [1] }] },
});
const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

function refused(body: unknown, config = text): string {
  try {
    readPredictRequest(body as PredictBody, config);
  } catch (error) {
    assert.ok(error instanceof InferlineError);
    assert.equal(error.code, 'invalid_input');
    assert.equal(error.statusCode, 400);
    return error.message;
  }
  assert.fail(`expected ${JSON.stringify(body)} to be refused`);
}

describe('readPredictRequest', () => {
  it('row format: plain values, or objects keyed by the input name; {"b64"} text decoded', () => {
    assert.deepEqual(readPredictRequest({ instances: ['a', { b64: b64('bé') }] }, text), { format: 'row', values: ['a', 'bé'] });
    assert.deepEqual(readPredictRequest({ instances: [{ text: 'a' }, { text: { b64: b64('c') } }] }, text), { format: 'row', values: ['a', 'c'] });
  });

  it('columnar format: a list, or an object holding the input name\'s list', () => {
    assert.deepEqual(readPredictRequest({ inputs: ['a', 'b'] }, text), { format: 'columnar', values: ['a', 'b'] });
    assert.deepEqual(readPredictRequest({ inputs: { text: ['a', { b64: b64('z') }] } }, text), { format: 'columnar', values: ['a', 'z'] });
  });

  it('signature_name: absent, empty or serving_default; any other → TF Serving\'s "not found in signature def"', () => {
    for (const signature_name of ['', 'serving_default']) readPredictRequest({ signature_name, instances: ['a'] }, text);
    assert.equal(refused({ signature_name: 'classify', instances: ['a'] }), 'Serving signature name: "classify" not found in signature def');
  });

  it('exactly one of instances / inputs, with TF Serving\'s messages', () => {
    assert.equal(refused({}), "Missing 'inputs' or 'instances' key");
    assert.equal(refused({ instances: ['a'], inputs: ['a'] }), "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist");
    assert.equal(refused({ instances: 'a' }), "Expecting 'instances' to be an list/array");
    assert.equal(refused({ instances: [] }), "No values in 'instances' array");
    assert.equal(refused({ inputs: [] }), "No values in 'inputs' list");
    assert.equal(refused({ inputs: { text: [] } }), "No values in 'inputs' list");
    assert.match(refused({ inputs: 'a' }), /^Expecting 'inputs' to be a list of "text" values/);
    assert.match(refused({ inputs: { b64: b64('a') } }), /^Expecting 'inputs' to be a list/);
  });

  it('row format: all plain values or all objects, as the first instance decides', () => {
    assert.equal(refused({ instances: ['a', { text: 'b' }] }), 'Expecting value/list but got object at item 1 of input list');
    assert.equal(refused({ instances: [{ text: 'a' }, 'b'] }), 'Expecting object but got list at item 1 of input list');
    assert.equal(refused({ instances: [{ text: 'a' }, { b64: b64('b') }] }), 'Expecting object but got list at item 1 of input list');
  });

  it('named inputs must be exactly the signature\'s input names', () => {
    assert.equal(refused({ instances: [{ text: 'a' }, { txt: 'b' }] }), "Failed to process element: 1 key: txt of 'instances' list. Error: JSON object: does not have named input: txt");
    assert.equal(refused({ instances: [{ text: 'a', extra: 1 }] }), "Failed to process element: 0 key: extra of 'instances' list. Error: JSON object: does not have named input: extra");
    assert.equal(refused({ instances: [{}] }), "Failed to process element: 0 of 'instances' list. JSON object: {} keys must be equal to: text");
    assert.equal(refused({ inputs: { txt: ['a'] } }), "Missing named input: text in 'inputs' object.");
    assert.match(refused({ inputs: { text: ['a'], extra: ['b'] } }), /named input the signature does not have: extra/);
  });

  it('{"b64"}: strict base64 and UTF-8 for text; kept for an image model; refused for a number tensor', () => {
    assert.match(refused({ instances: [{ b64: '!!' }] }), /instances\[0\]\.b64": not standard base64/);
    assert.match(refused({ instances: ['ok', { b64: 'abcde' }] }), /instances\[1\]\.b64": not standard base64/);
    assert.match(refused({ inputs: [{ b64: b64(Buffer.from([0xff, 0xfe])) }] }), /inputs\[0\]\.b64": the decoded bytes are not valid UTF-8/);
    assert.match(refused({ instances: [{ text: { b64: 'a=b=' } }] }), /instances\[0\]\.b64": not standard base64/);
    const picture = { b64: b64('not decoded here') };
    assert.deepEqual(readPredictRequest({ instances: [picture, picture] }, image).values, [picture, picture]);
    assert.deepEqual(readPredictRequest({ instances: [{ image: picture }] }, image).values, [picture]);
    assert.match(refused({ instances: [{ b64: b64('ab') }] }, floats), /instances\[0\]": JSON Value: \{"b64":"YWI="\} Type: Object is not of expected type: float32/);
    // An object with b64 and another key is not {"b64"}: it names inputs.
    assert.match(refused({ instances: [{ b64: b64('a'), x: 1 }] }), /does not have named input: b64/);
  });

  it('leaves the values themselves (numbers, NaN) to the native checks', () => {
    assert.deepEqual(readPredictRequest({ instances: [[NaN, Infinity]] }, floats).values, [[NaN, Infinity]]);
    assert.deepEqual(readPredictRequest({ instances: [5] }, text).values, [5]);
  });
});
