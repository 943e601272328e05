import { InferlineError, type ModelConfig, type TensorSpec } from '@inferline/shared';
import { decodeRawElements, type RawDatatype } from './binary-tensor-data.ts';

/**
 * Tensors of the Open Inference Protocol v2 (KServe `open_inference_rest.yaml`,
 * `grpc_predict_v2.proto`; Triton's HTTP/REST and gRPC protocols) to and from inferline's jobs, for the
 * REST routes and the gRPC service alike. Sources for the conventions: the OIP "Tensor Data Types" and
 * "Tensor Data" sections (row-major data, flat or nested; -1 for a variable dimension).
 *
 * A call carries a whole batch: the first dimension is the batch, each of its rows becomes one job.
 * - text model (`string` input): BYTES of shape `[N]` (or `[N, 1]`), each element UTF-8 text;
 * - image model: BYTES of shape `[N]` (or `[N, 1]`), each element an encoded JPEG/PNG/WebP (raw bytes
 *   in binary data and gRPC; in JSON, its base64 text or `{"b64": ...}`);
 * - tensor model (`float32` / `int32`): FP32 / INT32 of shape `[N, ...signature shape]`.
 * Outputs: `float32` → FP32 `[N, ...]`; `int32` → INT32; `string` (e.g. a label) → BYTES `[N]`;
 * `json` (coco-detect's `detections`) → BYTES `[N]`, each element the JSON text of that row's value
 * (for coco-detect: `[{"label","score","box":[x1,y1,x2,y2]}, ...]`).
 */

/** OIP datatype names this server speaks. */
export type OipDatatype = RawDatatype;

/** OIP datatype of a signature tensor. */
export function oipDatatype(spec: TensorSpec): OipDatatype {
  if (spec.dtype === 'float32') return 'FP32';
  if (spec.dtype === 'int32') return 'INT32';
  return 'BYTES';
}

/** A tensor's metadata (`$metadata_tensor`; gRPC `ModelMetadataResponse.TensorMetadata`). */
export interface OipTensorMetadata {
  name: string;
  datatype: OipDatatype;
  /** Batch dimension first, -1; -1 for any variable dimension. */
  shape: number[];
}

/**
 * Metadata of a signature tensor as this server exchanges it: `[-1, ...shape]`; a `json` output is one
 * BYTES element per row, `[-1]`.
 */
export function tensorMetadata(spec: TensorSpec): OipTensorMetadata {
  return { name: spec.name, datatype: oipDatatype(spec), shape: spec.dtype === 'json' ? [-1] : [-1, ...spec.shape] };
}

/** An input tensor of a request, whichever protocol carried it. */
export interface RequestTensor {
  name: string;
  datatype: string;
  shape: readonly number[];
  /** Elements as JSON `data` or gRPC typed `contents` give them: flat or nested, row-major. */
  data?: readonly unknown[];
  /** Elements in the raw layout (binary extension, gRPC `raw_input_contents`). */
  raw?: Buffer;
}

/** Decodes UTF-8 strictly: invalid text is refused rather than turned into U+FFFD. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Turn a request's input tensors into one job input per batch row, as `admitJobs` takes them: text as a
 * string, an image as its bytes (Buffer) or `{"b64"}`, a tensor row as nested arrays of the signature's
 * shape. The values themselves (text length, image header, finite numbers) are checked by admitJobs.
 * @returns the rows' inputs, in row order.
 * @throws InferlineError `invalid_input` saying what does not fit the signature: not exactly one input,
 *   an unknown input name, a datatype other than the signature's, a shape whose first dimension is
 *   not a batch of at least one row or whose other dimensions differ from the signature, an element
 *   count other than the shape's, an element of the wrong kind (text that is not UTF-8, ...).
 */
export function tensorRows(config: ModelConfig, tensors: readonly RequestTensor[]): unknown[] {
  const spec = config.signature.inputs[0];
  if (!spec) throw new InferlineError('invalid_config', `model "${config.name}" has no input in its signature`);
  const expected = oipDatatype(spec);
  if (tensors.length !== 1) {
    throw new InferlineError('invalid_input', `model "${config.name}" takes one input, "${spec.name}" (${expected}); the request has ${tensors.length}`);
  }
  const tensor = tensors[0] as RequestTensor;
  const field = `input "${tensor.name}"`;
  if (tensor.name !== spec.name) throw new InferlineError('invalid_input', `unknown ${field}: model "${config.name}" takes "${spec.name}" (${expected})`);
  if (tensor.datatype !== expected) throw new InferlineError('invalid_input', `${field}: datatype ${tensor.datatype}, expected ${expected}`);
  const rows = checkShape(tensor.shape, spec, field);
  const count = tensor.shape.reduce((product, dim) => product * dim, 1);
  let elements: unknown[];
  if (tensor.raw !== undefined) elements = decodeRawElements(tensor.raw, expected, field);
  else if (tensor.data !== undefined) elements = tensor.data.flat(Infinity);
  else throw new InferlineError('invalid_input', `${field}: no data`);
  if (elements.length !== count) {
    throw new InferlineError('invalid_input', `${field}: shape [${tensor.shape.join(', ')}] holds ${count} elements, the data has ${elements.length}`);
  }
  if (expected === 'BYTES') {
    const isImage = config.preprocess?.type === 'image';
    return elements.map((element, row) => (isImage ? imageElement(element, `${field} row ${row}`) : textElement(element, `${field} row ${row}`)));
  }
  const rowShape = tensor.shape.slice(1);
  const perRow = count / rows;
  return Array.from({ length: rows }, (_, row) => nest(elements.slice(row * perRow, (row + 1) * perRow), rowShape));
}

/**
 * Check a request shape against the signature: `[N, ...shape]` with N ≥ 1 (a text or image input
 * also `[N, 1]`), non-negative integers, fixed dimensions equal. @returns N.
 */
function checkShape(shape: readonly number[], spec: TensorSpec, field: string): number {
  const expected = `[N, ${spec.shape.map((d) => (d === -1 ? '-1' : String(d))).join(', ')}]`.replace(', ]', ']');
  if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
    throw new InferlineError('invalid_input', `${field}: shape [${shape.join(', ')}] must be non-negative integers`);
  }
  const [rows, ...rest] = shape;
  if (rows === undefined || rows < 1) throw new InferlineError('invalid_input', `${field}: shape [${shape.join(', ')}] must start with a batch of at least one row, ${expected}`);
  const isElement = spec.dtype === 'string' && spec.shape.length === 0;
  const fits = isElement
    ? rest.length === 0 || (rest.length === 1 && rest[0] === 1)
    : rest.length === spec.shape.length && rest.every((dim, i) => spec.shape[i] === -1 || spec.shape[i] === dim);
  if (!fits) throw new InferlineError('invalid_input', `${field}: shape [${shape.join(', ')}], expected ${isElement ? '[N] or [N, 1]' : expected}`);
  return rows;
}

/** Text from a BYTES element: a JSON string as it is, bytes as strict UTF-8. */
function textElement(element: unknown, field: string): string {
  if (typeof element === 'string') return element;
  if (Buffer.isBuffer(element)) {
    try {
      return UTF8.decode(element);
    } catch {
      throw new InferlineError('invalid_input', `${field}: the bytes are not valid UTF-8 text`);
    }
  }
  throw new InferlineError('invalid_input', `${field}: expected text (a BYTES element), got ${element === null ? 'null' : typeof element}`);
}

/** An image from a BYTES element: raw bytes as they are, a JSON string as base64 (readImageInput decodes it). */
function imageElement(element: unknown, field: string): unknown {
  if (Buffer.isBuffer(element)) return element;
  if (typeof element === 'string') return { b64: element };
  if (typeof element === 'object' && element !== null && typeof (element as { b64?: unknown }).b64 === 'string') return element;
  throw new InferlineError('invalid_input', `${field}: expected an encoded image (raw bytes, or base64 text in JSON)`);
}

/** Row-major elements as nested arrays of `shape` (its product is `flat.length`). */
function nest(flat: readonly unknown[], shape: readonly number[]): unknown {
  if (shape.length === 0) return flat[0];
  const [dim = 0, ...rest] = shape;
  const step = dim === 0 ? 0 : flat.length / dim;
  return Array.from({ length: dim }, (_, i) => nest(flat.slice(i * step, (i + 1) * step), rest));
}

/** An output tensor of a response, whichever protocol carries it. */
export interface ResponseTensor {
  name: string;
  datatype: OipDatatype;
  /** `[N, ...]`: batch first. */
  shape: number[];
  /** Row-major elements: numbers for FP32 / INT32 (null for a non-finite value), strings for BYTES. */
  data: (number | null)[] | string[];
}

/**
 * Gather the rows' outputs into response tensors, in the order asked for (else the signature's).
 * @param outputs each row's job output, `{<output name>: value}`, in row order
 * @param requested output names the request asked for; undefined or empty = all
 * @throws InferlineError `invalid_input` for a requested name the signature does not have;
 *   `inference_failed` when an output is missing from a row or rows disagree on its shape.
 */
export function outputTensors(config: ModelConfig, outputs: readonly Record<string, unknown>[], requested?: readonly string[]): ResponseTensor[] {
  return selectOutputs(config, requested).map((spec) => outputTensor(spec, outputs));
}

/**
 * The signature outputs a request asks for, in its order (all, in the signature's order, when it names none).
 * @throws InferlineError `invalid_input` for a name the signature does not have.
 */
export function selectOutputs(config: ModelConfig, requested?: readonly string[]): TensorSpec[] {
  const specs = config.signature.outputs;
  if (!requested || requested.length === 0) return specs;
  return requested.map((name) => {
    const spec = specs.find((s) => s.name === name);
    if (!spec) throw new InferlineError('invalid_input', `unknown output "${name}": model "${config.name}" has ${specs.map((s) => `"${s.name}"`).join(', ')}`);
    return spec;
  });
}

function outputTensor(spec: TensorSpec, outputs: readonly Record<string, unknown>[]): ResponseTensor {
  const values = outputs.map((output, row) => {
    if (!(spec.name in output)) throw new InferlineError('inference_failed', `row ${row} has no output "${spec.name}"`);
    return output[spec.name];
  });
  const datatype = oipDatatype(spec);
  if (spec.dtype === 'json') return { name: spec.name, datatype, shape: [values.length], data: values.map((value) => JSON.stringify(value)) };
  if (spec.dtype === 'string') return { name: spec.name, datatype, shape: [values.length], data: values.map((value) => String(value)) };
  const rowShape = shapeOf(values[0]);
  const data: (number | null)[] = [];
  values.forEach((value, row) => {
    const shape = shapeOf(value);
    if (shape.length !== rowShape.length || shape.some((dim, i) => dim !== rowShape[i])) {
      throw new InferlineError('inference_failed', `output "${spec.name}": row ${row} has shape [${shape.join(', ')}], row 0 [${rowShape.join(', ')}]`);
    }
    for (const element of Array.isArray(value) ? value.flat(Infinity) : [value]) data.push(typeof element === 'number' ? element : null);
  });
  return { name: spec.name, datatype, shape: [values.length, ...rowShape], data };
}

/** Dimensions of nested arrays (a number: []). */
function shapeOf(value: unknown): number[] {
  const shape: number[] = [];
  for (let level = value; Array.isArray(level); level = level[0] as unknown) shape.push(level.length);
  return shape;
}
