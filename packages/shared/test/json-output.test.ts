import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { float32ToJson, outputToJson } from '../src/json-output.ts';

/** Significant digits of a decimal text (`-0.00120e5` → 3). */
function significantDigits(text: string): number {
  const mantissa = text.replace(/^-/, '').replace(/e.*$/i, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.max(1, mantissa.length);
}

/** The fewest digits toPrecision needs to read back as `v` in float32 (the slow, obvious search). */
function shortestDigits(v: number): number {
  for (let p = 1; p <= 9; p++) if (Math.fround(Number(v.toPrecision(p))) === v) return p;
  return 9;
}

describe('float32ToJson', () => {
  it('reads back as the same float32, with no more digits than the shortest such decimal', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (value) => {
        const v = Math.fround(value);
        const text = float32ToJson(v);
        assert.equal(Math.fround(Number(JSON.parse(text))), Object.is(v, -0) ? 0 : v, text);
        if (v !== 0) assert.ok(significantDigits(text) <= shortestDigits(v), `${text} for ${v} (shortest has ${shortestDigits(v)} digits)`);
      }),
      { numRuns: 20_000 },
    );
  });

  it('writes the values people expect', () => {
    assert.deepEqual(
      [0.1, 0.5, -2.5, 1, 100, 123456789, 1e-7, 1.401298464324817e-45].map((x) => float32ToJson(Math.fround(x))),
      ['0.1', '0.5', '-2.5', '1', '100', '123456790', '1e-7', '1e-45'],
    );
    const max = 3.4028234663852886e38; // the largest float32
    assert.equal(Math.fround(Number(float32ToJson(max))), max);
    assert.equal(float32ToJson(Number.NaN), 'null');
    assert.equal(float32ToJson(Number.POSITIVE_INFINITY), 'null');
  });
});

describe('outputToJson', () => {
  it('is valid JSON equal to the plain-array form of the value', () => {
    const value = { embedding: new Float32Array([0.25, 1 / 3]), ids: new Int32Array([1, -2]), label: 'a "b"\n', png: Buffer.from([1, 2, 3]), nested: [{ x: 1.5, skip: undefined }], none: null };
    assert.deepEqual(JSON.parse(outputToJson(value).toString()), {
      embedding: [0.25, Number(float32ToJson(Math.fround(1 / 3)))],
      ids: [1, -2],
      label: 'a "b"\n',
      png: { b64: 'AQID' },
      nested: [{ x: 1.5 }],
      none: null,
    });
    const parsed = JSON.parse(outputToJson(value).toString()) as { embedding: number[] };
    assert.equal(Math.fround(parsed.embedding[1] ?? 0), Math.fround(1 / 3));
  });
});
