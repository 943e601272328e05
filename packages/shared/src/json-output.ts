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
 * How far inside its rounding interval a candidate decimal must lie, relative: the divisions below
 * round (≤ 2^-53 each), so a candidate this close to an edge is not trusted and a longer one is taken.
 */
const EDGE_MARGIN = 4e-16;

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * The shortest decimal text that reads back as the float32 `v` (`v` must be a float32 value, as read
 * from a Float32Array). Finds the fewest significant digits p (1..9, 9 always suffice for float32)
 * for which some p-digit decimal lies strictly inside the interval of reals that round to `v`
 * (half-way to each neighbouring float32), as Ryū and Schubfach define "shortest"
 * (https://dl.acm.org/doi/10.1145/3192366.3192369).
 */
export function float32ToJson(v: number): string {
  if (v === 0) return '0';
  if (!Number.isFinite(v)) return 'null';
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
  const exponent = Math.floor(Math.log10(a));
  for (let digits = 1; digits <= 9; digits++) {
    const k = exponent - digits + 1;
    const scale = POW10[k + 350] as number;
    // The smallest m·10^k at or above lo, then the next one (when the first is a tie that rounds away).
    const first = Math.ceil((lo / scale) * (1 - EDGE_MARGIN));
    for (let m = first; m <= first + 1; m++) {
      const candidate = m * scale;
      if (candidate >= hi * (1 + EDGE_MARGIN)) break;
      const text = formatDecimal(m, k, negative);
      // Strictly inside: it rounds to v. Near an edge (a tie that round-half-even may give to v, or a
      // rounding error of the divisions above), parse to be sure.
      if ((candidate > lo * (1 + EDGE_MARGIN) && candidate < hi * (1 - EDGE_MARGIN)) || Math.fround(Number(text)) === v) return text;
    }
  }
  return String(Number(v.toPrecision(9)));
}

/** `m × 10^k` (m a positive integer below 10^10) as a JSON number in JavaScript's own notation. */
function formatDecimal(m: number, k: number, negative: boolean): string {
  let digits = String(m);
  let end = digits.length;
  while (end > 1 && digits.charCodeAt(end - 1) === 48) end--;
  k += digits.length - end;
  digits = digits.slice(0, end);
  const n = digits.length;
  const point = n + k; // value = 0.<digits> × 10^point
  let text: string;
  if (k >= 0) text = point <= 21 ? digits + '0'.repeat(k) : scientific(digits, point - 1);
  else if (point > 0) text = `${digits.slice(0, point)}.${digits.slice(point)}`;
  else if (point > -6) text = `0.${'0'.repeat(-point)}${digits}`;
  else text = scientific(digits, point - 1);
  return negative ? `-${text}` : text;
}

function scientific(digits: string, exponent: number): string {
  return `${digits[0] ?? '0'}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${exponent < 0 ? '-' : '+'}${Math.abs(exponent)}`;
}

/**
 * JSON text of a model output value (postprocess results: objects, arrays, typed arrays, numbers,
 * strings, bytes). Float32Array values use {@link float32ToJson}; Uint8Array/Buffer → `{"b64": ...}`.
 */
export function outputToJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'bigint':
      return String(value);
    case 'object':
      break;
    default:
      return 'null';
  }
  if (value instanceof Float32Array) {
    let text = '[';
    for (let i = 0; i < value.length; i++) text += (i === 0 ? '' : ',') + float32ToJson(value[i] as number);
    return `${text}]`;
  }
  if (value instanceof Uint8Array) return `{"b64":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"}`;
  if (ArrayBuffer.isView(value)) {
    if (value instanceof DataView) return `{"b64":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"}`;
    return `[${Array.from(value as unknown as ArrayLike<number | bigint>, (item) => outputToJson(item)).join(',')}]`;
  }
  if (Array.isArray(value)) return `[${value.map((item) => outputToJson(item)).join(',')}]`;
  const entries = value instanceof Map ? [...value].map(([k, v]) => [String(k), v] as const) : Object.entries(value);
  let text = '{';
  for (const [k, v] of entries) {
    if (v === undefined) continue;
    text += `${text.length > 1 ? ',' : ''}${JSON.stringify(k)}:${outputToJson(v)}`;
  }
  return `${text}}`;
}
