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

/** Longest text {@link writeFloat32} writes: `-` + 21 integer digits (fixed notation up to 10^21). */
const MAX_FLOAT32_TEXT = 24;
/** log10(2), to estimate a decimal exponent from a binary one. */
const LOG10_2 = Math.log10(2);
/** Bytes written into a {@link JsonBytes} scratch before the result is copied out at its exact size. */
const SCRATCH_BYTES = 4096;

/**
 * Appends JSON bytes to a growing buffer: the output goes to Redis as bytes, so digits are written as
 * ASCII without building a string per number. Starts in a scratch buffer shared by every call (one
 * call writes at a time: nothing here awaits) and hands out an exact-size copy.
 */
class JsonBytes {
  static #scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  bytes = JsonBytes.#scratch;
  length = 0;

  reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.bytes.length * 2, this.length + extra));
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

  /** The bytes written, in a buffer of their own (the scratch is reused by the next call). */
  done(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.bytes.copy(out, 0, 0, this.length);
    return out;
  }
}

/**
 * Write the shortest decimal that reads back as the float32 `v` (`v` must be a float32 value, as read
 * from a Float32Array): the fewest significant digits for which some decimal lies inside the interval
 * of reals that round to `v` (half-way to each neighbouring float32), as Ryū and Schubfach define
 * "shortest" (https://dl.acm.org/doi/10.1145/3192366.3192369), in JavaScript's own number notation.
 * Of the decimals with that many digits inside the interval, the smallest is written.
 */
function writeFloat32(out: JsonBytes, v: number): void {
  out.reserve(MAX_FLOAT32_TEXT);
  if (v === 0) {
    out.bytes[out.length++] = ASCII_0;
    return;
  }
  if (!Number.isFinite(v)) return out.text('null');
  const negative = v < 0;
  const a = negative ? -v : v;
  f32[0] = a;
  const bits = f32Bits[0] as number;
  f32Bits[0] = bits + 1;
  const up = f32[0];
  f32Bits[0] = bits - 1;
  const down = f32[0];
  // Exactly representable in float64: float32 neighbours differ by one unit of a 24-bit mantissa.
  const lo = (a + down) / 2;
  const hi = Number.isFinite(up) ? (a + up) / 2 : a * (1 + 2 ** -25);
  // floor(log10(a)): from the binary exponent for normal values (one step short at most), else log10.
  const binaryExponent = (bits >>> 23) - 127;
  let decimalExponent = binaryExponent > -127 ? Math.floor(binaryExponent * LOG10_2) : Math.floor(Math.log10(a));
  if (a >= (POW10[decimalExponent + 351] as number)) decimalExponent++;
  // Scale so that the interval is in units of the 9th significant digit (9 always suffice for float32).
  const k = 8 - decimalExponent;
  const scale = POW10[k + 350] as number;
  const loScaled = lo * scale;
  const hiScaled = hi * scale;
  // A decimal with 9 - t digits fits for every t up to some t*, then none does (a fit with fewer digits
  // is also one with more, padded with a zero). An interval wider than 10^t holds a multiple of it, so
  // t* is at least the largest such t: look from there up and keep the last fit.
  const width = (hiScaled - loScaled) * (1 - EDGE_MARGIN);
  let t = width > 100 ? 2 : width > 10 ? 1 : 0;
  let found = fitIn(loScaled, hiScaled, POW10[t + 350] as number, v, t - k);
  while (found < 0 && t > 0) {
    t--;
    found = fitIn(loScaled, hiScaled, POW10[t + 350] as number, v, t - k);
  }
  if (found < 0) {
    out.text(String(Number(v.toPrecision(9))));
    return;
  }
  for (; t < 8; t++) {
    const n = fitIn(loScaled, hiScaled, POW10[t + 351] as number, v, t + 1 - k);
    if (n < 0) break;
    found = n;
  }
  writeDecimal(out, found, t - k, negative);
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

/** Decimal digits of a positive integer below 2^31. */
function digitCount(n: number): number {
  if (n < 1e5) return n < 10 ? 1 : n < 100 ? 2 : n < 1e3 ? 3 : n < 1e4 ? 4 : 5;
  return n < 1e6 ? 6 : n < 1e7 ? 7 : n < 1e8 ? 8 : n < 1e9 ? 9 : 10;
}

/** Write the last `count` decimal digits of the integer `n` (0 ≤ n < 2^31; leading zeros included) to `bytes[end - count, end)`. */
function putDigits(bytes: Buffer, end: number, n: number, count: number): void {
  let rest = n | 0;
  for (let at = end - 1; at >= end - count; at--) {
    const next = (rest / 10) | 0;
    bytes[at] = ASCII_0 + rest - next * 10;
    rest = next;
  }
}

/**
 * `n × 10^q` (n a positive integer below 2^31, room for MAX_FLOAT32_TEXT bytes reserved) in
 * JavaScript's number notation, as bytes: plain digits from 10^-6 to below 10^21, else `d.ddde±x`.
 */
function writeDecimal(out: JsonBytes, n: number, q: number, negative: boolean): void {
  let m = n | 0;
  for (let next = (m / 10) | 0; next * 10 === m; next = (m / 10) | 0) {
    m = next;
    q++;
  }
  const count = digitCount(m);
  const point = count + q; // value = 0.<digits> × 10^point
  const bytes = out.bytes;
  let at = out.length;
  if (negative) bytes[at++] = 45;
  if (q >= 0 && point <= 21) {
    putDigits(bytes, at + count, m, count);
    for (let i = at + count; i < at + point; i++) bytes[i] = ASCII_0;
    at += point;
  } else if (q < 0 && point > 0) {
    const divisor = POW10[-q + 350] as number;
    const whole = (m / divisor) | 0;
    putDigits(bytes, at + point, whole, point);
    bytes[at + point] = 46;
    putDigits(bytes, at + count + 1, m - whole * divisor, -q);
    at += count + 1;
  } else if (point <= 0 && point > -6) {
    bytes[at++] = ASCII_0;
    bytes[at++] = 46;
    for (let i = point; i < 0; i++) bytes[at++] = ASCII_0;
    putDigits(bytes, at + count, m, count);
    at += count;
  } else {
    // Scientific notation: d[.ddd]e±x, x = point - 1.
    const lead = (m / (POW10[count - 1 + 350] as number)) | 0;
    bytes[at++] = ASCII_0 + lead;
    if (count > 1) {
      bytes[at++] = 46;
      putDigits(bytes, at + count - 1, m, count - 1);
      at += count - 1;
    }
    bytes[at++] = 101;
    const exponent = point - 1;
    bytes[at++] = exponent < 0 ? 45 : 43;
    const magnitude = exponent < 0 ? -exponent : exponent;
    const digits = digitCount(magnitude);
    putDigits(bytes, at + digits, magnitude, digits);
    at += digits;
  }
  out.length = at;
}

/** {@link writeDecimal} as a string (the rare path: edge checks). */
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
      // Room for the comma and the longest number, so that neither checks again.
      out.reserve(MAX_FLOAT32_TEXT + 1);
      if (i > 0) out.bytes[out.length++] = 44;
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
