/**
 * Model outputs as JSON text, written once by the worker when it settles a job, so the gateway answers
 * with the stored text as it is (no decode, no re-serialization on the gateway's single thread).
 *
 * Float32 tensors are written with the shortest decimal that reads back as the same float32 (about 9
 * characters a value where float64 digits take 19): every value `v` of a `Float32Array` satisfies
 * `Math.fround(Number(text)) === v`. Bytes become `{"b64": ...}` (TF Serving's convention), other
 * typed arrays plain arrays; non-finite numbers are `null`, as in `JSON.stringify`.
 */

/** 10^k for k = -350..350 as doubles (index k + 350): exact up to 10^22, correctly rounded beyond. */
const POW10 = Array.from({ length: 701 }, (_, i) => Number(`1e${i - 350}`));
/**
 * How far inside its rounding interval a candidate decimal must lie, relative: the scaling below rounds
 * (≤ 2^-53 a step), so a candidate this close to an edge is checked by parsing it instead.
 */
const EDGE_MARGIN = 4e-16;
const ASCII_0 = 48;

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * Appends JSON bytes to a growing buffer: the output goes to Redis as bytes, so digits are written as
 * ASCII without building a string per number.
 */
class JsonBytes {
  bytes = Buffer.allocUnsafe(1024);
  length = 0;

  reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + extra));
    this.bytes.copy(grown, 0, 0, this.length);
    this.bytes = grown;
  }

  byte(value: number): void {
    this.reserve(1);
    this.bytes[this.length++] = value;
  }

  text(value: string): void {
    this.reserve(value.length * 3);
    this.length += this.bytes.write(value, this.length, 'utf8');
  }

  /** The digits of a non-negative integer below 10^16. */
  integer(value: number): void {
    const digits = digitCount(value);
    this.reserve(digits);
    let at = this.length + digits - 1;
    for (let rest = value; at >= this.length; at--) {
      const digit = rest % 10;
      this.bytes[at] = ASCII_0 + digit;
      rest = (rest - digit) / 10;
    }
    this.length += digits;
  }

  zeros(count: number): void {
    this.reserve(count);
    this.bytes.fill(ASCII_0, this.length, this.length + count);
    this.length += count;
  }

  done(): Buffer {
    return this.bytes.subarray(0, this.length);
  }
}

/**
 * Write the shortest decimal that reads back as the float32 `v` (`v` must be a float32 value, as read
 * from a Float32Array): the fewest significant digits for which some decimal lies inside the interval
 * of reals that round to `v` (half-way to each neighbouring float32), as Ryū and Schubfach define
 * "shortest" (https://dl.acm.org/doi/10.1145/3192366.3192369), in JavaScript's own number notation.
 */
function writeFloat32(out: JsonBytes, v: number): void {
  if (v === 0) return out.byte(ASCII_0);
  if (!Number.isFinite(v)) return out.text('null');
  const negative = v < 0;
  const a = negative ? -v : v;
  f32[0] = a;
  const bits = f32Bits[0] as number;
  f32Bits[0] = bits + 1;
  const up = f32[0];
  f32Bits[0] = bits - 1;
  const down = bits === 0 ? 0 : (f32[0]);
  // Exactly representable in float64: float32 neighbours differ by one unit of a 24-bit mantissa.
  const lo = (a + down) / 2;
  const hi = Number.isFinite(up) ? (a + up) / 2 : a * (1 + 2 ** -25);
  // Scale so that the interval is in units of the 9th significant digit (9 always suffice for float32).
  const k = 8 - Math.floor(Math.log10(a));
  const scale = POW10[k + 350] as number;
  const loScaled = lo * scale;
  const hiScaled = hi * scale;
  // A decimal with 9 - t digits fits for every t up to some t*, then none does (a fit with fewer digits
  // is also one with more, padded with a zero): so look from 9 digits down and keep the last fit.
  let found = -1;
  let foundT = 0;
  for (let t = 0; t <= 8; t++) {
    const n = fitIn(loScaled, hiScaled, POW10[t + 350] as number, v, t - k);
    if (n < 0) break;
    found = n;
    foundT = t;
  }
  if (found >= 0) return writeDecimal(out, found, foundT - k, negative);
  out.text(String(Number(v.toPrecision(9))));
}

/**
 * The integer n such that n × step is strictly inside (lo, hi) (checked by parsing when near an edge,
 * where ties and the scaling's rounding decide), trying the smallest multiple at or above lo and the
 * next one; -1 when neither fits. The decimal is n × 10^q.
 */
function fitIn(lo: number, hi: number, step: number, v: number, q: number): number {
  const first = Math.ceil((lo / step) * (1 - EDGE_MARGIN));
  for (let n = first; n <= first + 1; n++) {
    const candidate = n * step;
    if (candidate >= hi * (1 + EDGE_MARGIN)) return -1;
    if (candidate > lo * (1 + EDGE_MARGIN) && candidate < hi * (1 - EDGE_MARGIN)) return n;
    if (Math.fround(Number(decimalText(n, q, false))) === Math.abs(v)) return n;
  }
  return -1;
}

/** Decimal digits of a non-negative integer below 10^16 (0 has 1). */
function digitCount(value: number): number {
  if (value < 1e8) {
    if (value < 1e4) return value < 10 ? 1 : value < 100 ? 2 : value < 1000 ? 3 : 4;
    return value < 1e5 ? 5 : value < 1e6 ? 6 : value < 1e7 ? 7 : 8;
  }
  let digits = 9;
  for (let bound = 1e9; value >= bound && digits < 16; bound *= 10) digits++;
  return digits;
}

/** `n × 10^q` (n a positive integer below 10^10) in JavaScript's number notation, as bytes. */
function writeDecimal(out: JsonBytes, n: number, q: number, negative: boolean): void {
  while (n % 10 === 0) {
    n /= 10;
    q++;
  }
  const point = digitCount(n) + q; // value = 0.<digits> × 10^point
  if (negative) out.byte(45);
  if (q >= 0 && point <= 21) {
    out.integer(n);
    out.zeros(q);
  } else if (q < 0 && point > 0) {
    const scale = POW10[-q + 350] as number;
    const whole = Math.floor(n / scale);
    out.integer(whole);
    out.byte(46);
    const fraction = n - whole * scale;
    out.zeros(-q - digitCount(fraction));
    out.integer(fraction);
  } else if (point <= 0 && point > -6) {
    out.byte(ASCII_0);
    out.byte(46);
    out.zeros(-point);
    out.integer(n);
  } else {
    out.text(decimalText(n, q, false).replace(/^-/, ''));
  }
}

/** {@link writeDecimal} as a string (the rare paths: scientific notation, edge checks). */
function decimalText(n: number, q: number, negative: boolean): string {
  const text = Number(`${n}e${q}`).toString();
  return negative ? `-${text}` : text;
}

/** The text {@link writeFloat32} writes for `v` (tests, and one-off values). */
export function float32ToJson(v: number): string {
  const out = new JsonBytes();
  writeFloat32(out, v);
  return out.done().toString();
}

function writeValue(out: JsonBytes, value: unknown): void {
  if (value === null || value === undefined) return out.text('null');
  switch (typeof value) {
    case 'number':
      return out.text(Number.isFinite(value) ? String(value) : 'null');
    case 'string':
    case 'boolean':
      return out.text(JSON.stringify(value));
    case 'bigint':
      return out.text(String(value));
    case 'object':
      break;
    default:
      return out.text('null');
  }
  if (value instanceof Float32Array) {
    out.byte(91);
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.byte(44);
      writeFloat32(out, value[i] as number);
    }
    return out.byte(93);
  }
  if (value instanceof Uint8Array || value instanceof DataView) {
    return out.text(`{"b64":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"}`);
  }
  if (ArrayBuffer.isView(value) || Array.isArray(value)) {
    const items = value as unknown as ArrayLike<unknown>;
    out.byte(91);
    for (let i = 0; i < items.length; i++) {
      if (i > 0) out.byte(44);
      writeValue(out, items[i]);
    }
    return out.byte(93);
  }
  const entries = value instanceof Map ? [...value].map(([k, v]) => [String(k), v] as const) : Object.entries(value);
  out.byte(123);
  let first = true;
  for (const [k, v] of entries) {
    if (v === undefined) continue;
    if (!first) out.byte(44);
    first = false;
    out.text(JSON.stringify(k));
    out.byte(58);
    writeValue(out, v);
  }
  out.byte(125);
}

/**
 * JSON bytes (UTF-8) of a model output value (postprocess results: objects, arrays, typed arrays,
 * numbers, strings, bytes). Float32Array values are written shortest ({@link float32ToJson});
 * Uint8Array/Buffer → `{"b64": ...}`; other typed arrays → number arrays; non-finite numbers → null.
 */
export function outputToJson(value: unknown): Buffer {
  const out = new JsonBytes();
  writeValue(out, value);
  return out.done();
}
