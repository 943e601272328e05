import { InferlineError, type ModelConfig, type TensorSpec } from '@inferline/shared';
import { type OipDatatype, type RequestTensor, type ResponseTensor } from '../oip-tensors.ts';
import { PREDICT_METHOD, TF_DTYPES } from '../routes/models.ts';
import { SERVING_SIGNATURE } from '../tfserving-request.ts';

/**
 * TensorFlow's `TensorProto` (tensorflow/core/framework/tensor.proto) to and from the protocol-neutral
 * tensors of oip-tensors.ts, for TF Serving's gRPC Predict. DT_STRING carries text (UTF-8) or encoded
 * images in `string_val`; DT_FLOAT / DT_INT32 carry numbers in `float_val` / `int_val` or, little-endian,
 * in `tensor_content` (what `tf.make_tensor_proto` writes). The first dimension is the batch.
 * A `json` output (coco-detect's detections) is DT_STRING with one JSON text per row.
 */

/** A `TensorProto` as proto-loader gives it (defaults on). */
export interface TensorProto {
  dtype: string;
  tensor_shape: { dim: { size: number; name?: string }[]; unknown_rank?: boolean } | null;
  tensor_content?: Buffer;
  float_val?: number[];
  int_val?: number[];
  string_val?: Buffer[];
}

/** OIP datatype of each TF dtype this server takes. */
const OIP_OF_TF: Record<string, OipDatatype> = { DT_STRING: 'BYTES', DT_FLOAT: 'FP32', DT_INT32: 'INT32' };

/**
 * One `PredictRequest.inputs` entry as a request tensor.
 * @throws InferlineError `invalid_input` for a dtype other than the signature's or a tensor without a
 *   known shape.
 */
export function fromTensorProto(name: string, proto: TensorProto, config: ModelConfig): RequestTensor {
  const spec = config.signature.inputs.find((s) => s.name === name);
  // An unknown name is refused by tensorRows, with the signature's names.
  const expected = spec ? TF_DTYPES[spec.dtype] : proto.dtype;
  if (proto.dtype !== expected) throw new InferlineError('invalid_input', `input "${name}": dtype ${proto.dtype}, expected ${expected}`);
  if (!proto.tensor_shape || proto.tensor_shape.unknown_rank === true) throw new InferlineError('invalid_input', `input "${name}": tensor_shape is required`);
  const shape = proto.tensor_shape.dim.map((dim) => dim.size);
  const datatype = OIP_OF_TF[proto.dtype] ?? proto.dtype;
  if (datatype === 'BYTES') return { name, datatype, shape, data: proto.string_val ?? [] };
  if (proto.tensor_content && proto.tensor_content.length > 0) return { name, datatype, shape, raw: proto.tensor_content };
  return { name, datatype, shape, data: (datatype === 'FP32' ? proto.float_val : proto.int_val) ?? [] };
}

/** A response tensor as a `TensorProto`: DT_FLOAT in `float_val`, DT_INT32 in `int_val`, DT_STRING in `string_val`. */
export function toTensorProto(tensor: ResponseTensor): TensorProto {
  const tensor_shape = { dim: tensor.shape.map((size) => ({ size })) };
  if (tensor.datatype === 'BYTES') return { dtype: 'DT_STRING', tensor_shape, string_val: (tensor.data as string[]).map((text) => Buffer.from(text, 'utf8')) };
  const numbers = (tensor.data as (number | null)[]).map((value) => value ?? Number.NaN);
  return tensor.datatype === 'FP32' ? { dtype: 'DT_FLOAT', tensor_shape, float_val: numbers } : { dtype: 'DT_INT32', tensor_shape, int_val: numbers };
}

/** `TensorInfo` (tensorflow/core/protobuf/meta_graph.proto) of a signature tensor, as this server exchanges it. */
function tensorInfo(spec: TensorSpec) {
  const shape = spec.dtype === 'json' ? [-1] : [-1, ...spec.shape];
  return { name: spec.name, dtype: TF_DTYPES[spec.dtype], tensor_shape: { dim: shape.map((size) => ({ size, name: '' })), unknown_rank: false } };
}

/**
 * The model's `SignatureDefMap` (TF Serving get_model_metadata.proto): one predict signature,
 * `serving_default`, with the signature's inputs and outputs (batch dimension -1 first; `json`
 * outputs DT_STRING [-1]).
 */
export function signatureDefMap(config: ModelConfig) {
  const tensors = (specs: TensorSpec[]) => Object.fromEntries(specs.map((s) => [s.name, tensorInfo(s)]));
  return {
    signature_def: {
      [SERVING_SIGNATURE]: { inputs: tensors(config.signature.inputs), outputs: tensors(config.signature.outputs), method_name: PREDICT_METHOD },
    },
  };
}
