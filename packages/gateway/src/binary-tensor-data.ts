import { InferlineError } from '@inferline/shared';

/**
 * Triton's binary tensor data extension (triton-inference-server/server
 * `docs/protocol/extension_binary_data.md`) and the raw tensor layout it shares with OIP gRPC's
 * `raw_input_contents` / `raw_output_contents` (KServe `grpc_predict_v2.proto`): elements little-endian,
 * row-major, no stride or padding; a BYTES element is a 4-byte little-endian unsigned length followed
 * by its bytes. An HTTP body carrying binary tensors is the JSON inference header, whose length is the
 * `Inference-Header-Content-Length` header, followed by the tensors' bytes in the order of the JSON's
 * inputs (or outputs), each `parameters.binary_data_size` bytes long.
 */

/** The HTTP header giving the JSON part's length, bytes, of a body with binary tensors. */
export const INFERENCE_HEADER_CONTENT_LENGTH = 'inference-header-content-length';

/** Bytes of a BYTES element's length prefix (uint32 little-endian). */
const BYTES_LENGTH_PREFIX = 4;

/** Datatypes with a raw layout here: the ones inferline's signatures use. */
export type RawDatatype = 'BYTES' | 'FP32' | 'INT32';

/**
 * Split an inference request body: the JSON header (`headerLength` bytes when the
 * `Inference-Header-Content-Length` header is given, else the whole body) and the binary part after it.
 * @param headerLength the header's value as received (a decimal byte count), or undefined
 * @throws InferlineError `invalid_input` when the length is not a whole number within the body, or
 *   the JSON part does not parse.
 */
export function splitInferenceBody(body: Buffer, headerLength: string | undefined): { header: unknown; binary: Buffer } {
  let jsonLength = body.length;
  if (headerLength !== undefined) {
    if (!/^[0-9]+$/.test(headerLength.trim()) || Number(headerLength) > body.length) {
      throw new InferlineError('invalid_input', `Inference-Header-Content-Length "${headerLength}" is not a byte count within the ${body.length}-byte body`);
    }
    jsonLength = Number(headerLength);
  }
  const text = body.subarray(0, jsonLength).toString('utf8');
  if (text.trim() === '') throw new InferlineError('invalid_input', 'body is empty; a JSON inference request is expected');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    throw new InferlineError('invalid_input', 'the inference request header is not valid JSON');
  }
  return { header, binary: body.subarray(jsonLength) };
}

/**
 * Cut the binary part of a request into the inputs' raw tensors: in input order, each input whose
 * `parameters.binary_data_size` is set takes that many bytes.
 * @returns one entry per input: its bytes, or undefined when it carries JSON `data`.
 * @throws InferlineError `invalid_input` when a size is not a non-negative integer, an input has both
 *   `data` and a binary size, or the sizes do not add up to the binary part's length.
 */
export function takeBinaryInputs(
  inputs: readonly { name: string; data?: unknown; parameters?: Record<string, unknown> }[],
  binary: Buffer,
): (Buffer | undefined)[] {
  let offset = 0;
  const taken = inputs.map((input) => {
    const size = input.parameters?.binary_data_size;
    if (size === undefined) return undefined;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new InferlineError('invalid_input', `input "${input.name}": parameters.binary_data_size must be a non-negative integer`);
    }
    if (input.data !== undefined) throw new InferlineError('invalid_input', `input "${input.name}": give either "data" or parameters.binary_data_size, not both`);
    if (offset + size > binary.length) {
      throw new InferlineError('invalid_input', `input "${input.name}": binary_data_size ${size} runs past the ${binary.length} bytes after the JSON header`);
    }
    const bytes = binary.subarray(offset, offset + size);
    offset += size;
    return bytes;
  });
  if (offset !== binary.length) {
    throw new InferlineError('invalid_input', `${binary.length - offset} bytes after the JSON header belong to no input (binary_data_size adds up to ${offset})`);
  }
  return taken;
}

/**
 * Decode a raw tensor's elements.
 * @param field names the tensor in errors (`input "text"`)
 * @returns numbers for FP32 / INT32, one Buffer (a view of `raw`) per BYTES element.
 * @throws InferlineError `invalid_input` when the length is not a whole number of elements, or a
 *   BYTES length prefix runs past the end.
 */
export function decodeRawElements(raw: Buffer, datatype: RawDatatype, field: string): number[] | Buffer[] {
  if (datatype === 'BYTES') return decodeBytesElements(raw, field);
  if (raw.length % 4 !== 0) throw new InferlineError('invalid_input', `${field}: ${raw.length} bytes is not a whole number of 4-byte ${datatype} elements`);
  const values = new Array<number>(raw.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = datatype === 'FP32' ? raw.readFloatLE(i * 4) : raw.readInt32LE(i * 4);
  return values;
}

/**
 * Split serialized BYTES elements (each a uint32 little-endian length, then that many bytes).
 * @throws InferlineError `invalid_input` when a prefix or an element runs past the end.
 */
export function decodeBytesElements(raw: Buffer, field: string): Buffer[] {
  const elements: Buffer[] = [];
  let offset = 0;
  while (offset < raw.length) {
    if (offset + BYTES_LENGTH_PREFIX > raw.length) throw new InferlineError('invalid_input', `${field}: a BYTES length prefix is cut off at byte ${offset}`);
    const length = raw.readUInt32LE(offset);
    offset += BYTES_LENGTH_PREFIX;
    if (offset + length > raw.length) throw new InferlineError('invalid_input', `${field}: a BYTES element of ${length} bytes runs past the end of the tensor`);
    elements.push(raw.subarray(offset, offset + length));
    offset += length;
  }
  return elements;
}

/** Serialize BYTES elements (strings as UTF-8): each a uint32 little-endian length, then its bytes. */
export function encodeBytesElements(values: readonly (string | Uint8Array)[]): Buffer {
  const parts = values.map((value) => (typeof value === 'string' ? Buffer.from(value, 'utf8') : value));
  const out = Buffer.allocUnsafe(parts.reduce((sum, part) => sum + BYTES_LENGTH_PREFIX + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    offset = out.writeUInt32LE(part.length, offset);
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** A tensor's elements in the raw layout: FP32 / INT32 little-endian 4 bytes each, BYTES length-prefixed. */
export function encodeRawElements(datatype: RawDatatype, data: readonly (number | null | string | Uint8Array)[]): Buffer {
  if (datatype === 'BYTES') return encodeBytesElements(data as readonly (string | Uint8Array)[]);
  const out = Buffer.allocUnsafe(data.length * 4);
  data.forEach((value, i) => {
    // Non-finite outputs are stored as JSON null: NaN is their only FP32 spelling.
    const number = typeof value === 'number' ? value : Number.NaN;
    if (datatype === 'FP32') out.writeFloatLE(number, i * 4);
    else out.writeInt32LE(number, i * 4);
  });
  return out;
}

/**
 * Frame an inference response with binary outputs: the JSON header, then the outputs' bytes in order.
 * @returns the body and the JSON part's length (the reply's `Inference-Header-Content-Length`).
 */
export function frameInferenceResponse(header: unknown, binaries: readonly Buffer[]): { body: Buffer; headerLength: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return { body: Buffer.concat([json, ...binaries]), headerLength: json.length };
}
