import { InferlineError, TextPreprocessConfig, type ModelConfig, type TensorSpec } from '@inferline/shared';

/** `max_text_bytes` when a text model's config has no `preprocess` section: the schema's default. */
const DEFAULT_MAX_TEXT_BYTES = TextPreprocessConfig.properties.max_text_bytes.default as number;

/**
 * Check one request input against the model's signature (its first input), before anything is stored.
 *
 * - text model (dtype `string`): a JSON string of at most `preprocess.max_text_bytes` UTF-8 bytes;
 * - tensor model (`float32` / `int32`): nested arrays of numbers (integers for `int32`; `NaN` and
 *   ±`Infinity` for `float32`, as TF Serving's JSON mapping takes them for DT_FLOAT, where a parser
 *   produced them) whose rank and fixed dimensions match the per-request `shape` (-1 = any length).
 *
 * @throws InferlineError `invalid_input` saying what is wrong.
 */
export function validateInput(config: ModelConfig, input: unknown): void {
  const spec = config.signature.inputs[0];
  if (!spec) throw new InferlineError('invalid_config', `model "${config.name}" has no input in its signature`);
  if (spec.dtype === 'string') {
    validateText(config, spec, input);
    return;
  }
  validateTensor(spec, input, 0, 'input');
}

function validateText(config: ModelConfig, spec: TensorSpec, input: unknown): void {
  if (typeof input !== 'string') {
    throw new InferlineError(
      'invalid_input',
      `field "input": model "${config.name}" takes text ("${spec.name}") as a JSON string, got ${describeType(input)}`,
    );
  }
  const limit = config.preprocess?.type === 'glove-tokenizer' ? config.preprocess.max_text_bytes : DEFAULT_MAX_TEXT_BYTES;
  const bytes = Buffer.byteLength(input, 'utf8');
  if (bytes > limit) {
    throw new InferlineError('invalid_input', `field "input": text is ${bytes} UTF-8 bytes, more than the ${limit} model "${config.name}" accepts`);
  }
}

function validateTensor(spec: TensorSpec, value: unknown, depth: number, path: string): void {
  if (depth === spec.shape.length) {
    const float = spec.dtype === 'float32';
    const ok = typeof value === 'number' && (float || Number.isFinite(value)) && (spec.dtype !== 'int32' || Number.isInteger(value));
    if (!ok) throw new InferlineError('invalid_input', `field "${path}": expected ${float ? 'a float32 number' : `a finite ${spec.dtype} number`}, got ${describeType(value)}`);
    return;
  }
  if (!Array.isArray(value)) {
    throw new InferlineError(
      'invalid_input',
      `field "${path}": expected an array (tensor "${spec.name}" has shape [${spec.shape.join(', ')}]), got ${describeType(value)}`,
    );
  }
  const dim = spec.shape[depth] ?? -1;
  if (dim !== -1 && value.length !== dim) {
    throw new InferlineError('invalid_input', `field "${path}": expected ${dim} elements (shape [${spec.shape.join(', ')}]), got ${value.length}`);
  }
  value.forEach((item, i) => validateTensor(spec, item, depth + 1, `${path}[${i}]`));
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
