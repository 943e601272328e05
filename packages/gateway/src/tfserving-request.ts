import { Type, type Static } from '@sinclair/typebox';
import { InferlineError, type ModelConfig, type TensorSpec } from '@inferline/shared';
import { decodeBase64Text } from './base64.ts';

/**
 * Reading a TF Serving REST predict body (https://www.tensorflow.org/tfx/serving/api_rest#predict_api)
 * into one inferline input per instance. The rules and the error messages follow TF Serving's
 * `FillPredictRequestFromJson` (tensorflow_serving/util/json_tensor.cc) where they apply to a model with
 * one input tensor whose 0-th dimension is the batch; where TF Serving lets a body through that would
 * fail later (an empty list, a columnar value that is not a list, a named input the signature does not
 * have), this refuses it at once with 400.
 */

/** The one signature every model has, under TF Serving's default key. */
export const SERVING_SIGNATURE = 'serving_default';

/** Longest JSON shown of an offending value in an error message, characters. */
const MAX_SHOWN_CHARS = 200;

/** TF Serving's predict body: `instances` (row format) or `inputs` (columnar format). */
export const PredictBody = Type.Object(
  {
    signature_name: Type.Optional(Type.String({ description: `The signature to run; the only one is "${SERVING_SIGNATURE}" (the default).` })),
    instances: Type.Optional(Type.Unknown({ description: 'Row format: a list, one instance per entry (a value, or an object by input name).' })),
    inputs: Type.Optional(Type.Unknown({ description: 'Columnar format: a list of values, or an object by input name of lists.' })),
  },
  { additionalProperties: false, examples: [{ instances: ['Call me Ishmael.', 'The whale!'] }] },
);
export type PredictBody = Static<typeof PredictBody>;

/** A body read: its format (which decides the reply's key) and one input per instance, in order. */
export interface PredictRequest {
  /** `row` (`instances` → `predictions`) or `columnar` (`inputs` → `outputs`). */
  format: 'row' | 'columnar';
  /** One value per instance as `POST /v1/jobs` takes `input`: text decoded from `{"b64"}`, images kept as `{"b64"}`. */
  values: unknown[];
}

/**
 * Read a predict body against the model's signature (its first input).
 * - `signature_name` absent, empty or `serving_default`, else 400 as TF Serving's GetInfoMap answers;
 * - exactly one of `instances` / `inputs`, a non-empty list (columnar: a list, or an object whose keys
 *   are exactly the signature's input names, holding a list);
 * - row format: all instances plain values, or all objects whose keys are exactly the input names
 *   (TF Serving decides by the first instance);
 * - `{"b64": "..."}` (an object with the one key `b64`, TF Serving's `IsValBase64Object`) only for a
 *   string input: for a text model it is decoded strictly (RFC 4648 base64, then UTF-8); for an image
 *   model it is kept for the image check (readImageInput); for a number tensor it is refused.
 * Values themselves are checked later, with the native route's rules (readInputs).
 *
 * @throws InferlineError `invalid_input` with TF Serving's message where it has one.
 */
export function readPredictRequest(body: PredictBody, config: ModelConfig): PredictRequest {
  const signature = body.signature_name;
  if (signature !== undefined && signature !== '' && signature !== SERVING_SIGNATURE) {
    throw new InferlineError('invalid_input', `Serving signature name: "${signature}" not found in signature def`);
  }
  const spec = config.signature.inputs[0] as TensorSpec;
  const isImage = config.preprocess?.type === 'image';
  const { instances, inputs } = body;
  if (instances !== undefined && inputs !== undefined) {
    throw new InferlineError('invalid_input', "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist");
  }
  if (instances !== undefined) {
    if (!Array.isArray(instances)) throw new InferlineError('invalid_input', "Expecting 'instances' to be an list/array");
    if (instances.length === 0) throw new InferlineError('invalid_input', "No values in 'instances' array");
    const named = isNamedInputs(instances[0]);
    const values = instances.map((instance: unknown, i) => {
      if (named !== isNamedInputs(instance)) {
        throw new InferlineError('invalid_input', named ? `Expecting object but got list at item ${i} of input list` : `Expecting value/list but got object at item ${i} of input list`);
      }
      const value = named ? namedValue(instance as Record<string, unknown>, spec, i) : instance;
      return readValue(value, spec, isImage, `instances[${i}]`);
    });
    return { format: 'row', values };
  }
  if (inputs !== undefined) {
    let column: unknown = inputs;
    if (isNamedInputs(inputs)) {
      if (!(spec.name in inputs)) throw new InferlineError('invalid_input', `Missing named input: ${spec.name} in 'inputs' object.`);
      const unknown = Object.keys(inputs).find((key) => key !== spec.name);
      if (unknown !== undefined) throw new InferlineError('invalid_input', `'inputs' object has a named input the signature does not have: ${unknown} (inputs: ${spec.name})`);
      column = inputs[spec.name];
    }
    if (!Array.isArray(column)) {
      throw new InferlineError('invalid_input', `Expecting 'inputs' to be a list of "${spec.name}" values, one per instance (its 0-th dimension is the batch), got ${show(column)}`);
    }
    if (column.length === 0) throw new InferlineError('invalid_input', "No values in 'inputs' list");
    return { format: 'columnar', values: column.map((value: unknown, i) => readValue(value, spec, isImage, `inputs[${i}]`)) };
  }
  throw new InferlineError('invalid_input', "Missing 'inputs' or 'instances' key");
}

/** The input's value of a row-format instance given by name: its keys must be exactly the input names. */
function namedValue(instance: Record<string, unknown>, spec: TensorSpec, i: number): unknown {
  const keys = Object.keys(instance);
  const unknown = keys.find((key) => key !== spec.name);
  if (unknown !== undefined) {
    throw new InferlineError('invalid_input', `Failed to process element: ${i} key: ${unknown} of 'instances' list. Error: JSON object: does not have named input: ${unknown}`);
  }
  if (keys.length === 0) {
    throw new InferlineError('invalid_input', `Failed to process element: ${i} of 'instances' list. JSON object: ${show(instance)} keys must be equal to: ${spec.name}`);
  }
  return instance[spec.name];
}

/** One instance's value: `{"b64"}` decoded or kept as the input's dtype and the model's preprocessing take it. */
function readValue(value: unknown, spec: TensorSpec, isImage: boolean, field: string): unknown {
  if (!isBase64Object(value)) return value;
  if (spec.dtype !== 'string') {
    throw new InferlineError('invalid_input', `field "${field}": JSON Value: ${show(value)} Type: Object is not of expected type: ${spec.dtype} ({"b64"} is for string inputs)`);
  }
  return isImage ? value : decodeBase64Text(value.b64, `${field}.b64`);
}

/** TF Serving's `IsValBase64Object`: an object with the one key `b64`, holding a string. */
export function isBase64Object(value: unknown): value is { b64: string } {
  return isObject(value) && typeof value.b64 === 'string' && Object.keys(value).length === 1;
}

/** An object of named inputs: an object that is not `{"b64"}`. */
function isNamedInputs(value: unknown): value is Record<string, unknown> {
  return isObject(value) && !isBase64Object(value);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A value as JSON for an error message, cut at MAX_SHOWN_CHARS. */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...` : text;
}
