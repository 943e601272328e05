import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InferlineError } from '@inferline/shared';
import { parseTfServingJson } from '../src/tfserving-json.ts';

function parseError(text: string): string {
  try {
    parseTfServingJson(text);
  } catch (error) {
    assert.ok(error instanceof InferlineError);
    assert.equal(error.code, 'invalid_input');
    return error.message;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

describe('parseTfServingJson', () => {
  it('parses strict JSON as JSON.parse does', () => {
    const text = JSON.stringify({ instances: ['a', { b64: 'YQ==' }], n: [1.5, -2e-3, 0], s: 'NaN Infinity' });
    assert.deepEqual(parseTfServingJson(text), JSON.parse(text));
  });

  it('takes the NaN, Infinity and -Infinity tokens, and leaves the same words inside strings alone', () => {
    const value = parseTfServingJson('{"inputs": [[1.0, NaN, Infinity, -Infinity]], "tag": "NaN"}') as { inputs: number[][]; tag: string };
    assert.equal(value.inputs[0]?.[0], 1);
    assert.ok(Number.isNaN(value.inputs[0]?.[1]));
    assert.equal(value.inputs[0]?.[2], Number.POSITIVE_INFINITY);
    assert.equal(value.inputs[0]?.[3], Number.NEGATIVE_INFINITY);
    assert.equal(value.tag, 'NaN');
  });

  it('refuses an empty or malformed body with TF Serving\'s "JSON Parse error" prefix', () => {
    assert.equal(parseError(''), 'JSON Parse error: The document is empty');
    assert.equal(parseError('  \n'), 'JSON Parse error: The document is empty');
    assert.match(parseError('{"instances": ['), /^JSON Parse error: /);
    assert.match(parseError('{"instances": [nan]}'), /^JSON Parse error: /);
    assert.match(parseError('instances=a'), /^JSON Parse error: /);
  });

  it('refuses prototype poisoning in strict JSON and in a body with NaN alike', () => {
    assert.match(parseError('{"__proto__": {"polluted": true}}'), /^JSON Parse error: .*prototype/);
    assert.match(parseError('{"a": NaN, "__proto__": {"polluted": true}}'), /^JSON Parse error: .*prototype/);
    assert.match(parseError('{"a": NaN, "constructor": {"prototype": {"polluted": true}}}'), /^JSON Parse error: .*prototype/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
