import { InferlineError, type ModelConfig, type ReducerName, type TensorSpec } from '@inferline/shared';
import { WHOLE_OUTPUT } from './group-view.ts';

const NUMERIC: ReadonlySet<string> = new Set(['float32', 'int32']);

/**
 * Which member output a group's reducer reads, checked against the model's signature before the group
 * is created:
 * - `mean`, `sum`, `max`, `min`: a float32/int32 tensor output; default the model's first one;
 * - `collect`: any output; default the whole output object ({@link WHOLE_OUTPUT});
 * - `labels`, `vote`: a string output; default `label`;
 * - `boxes`: a `json` output of detections (`[{label, score, box}]`) of an image model; default the
 *   first `json` output.
 * @throws InferlineError `invalid_reduce` when the model has no such output.
 */
export function resolveReduceOutput(config: ModelConfig, reduce: ReducerName, output?: string): string {
  const outputs = config.signature.outputs;
  const named = (name: string): TensorSpec => {
    const spec = outputs.find((candidate) => candidate.name === name);
    if (!spec) throw invalid(`model "${config.name}" has no output "${name}" (outputs: ${outputs.map((o) => o.name).join(', ')})`);
    return spec;
  };
  const pick = (accept: (spec: TensorSpec) => boolean, fallback: string | undefined, what: string): string => {
    const spec = output !== undefined ? named(output) : (fallback !== undefined ? outputs.find((o) => o.name === fallback) : undefined) ?? outputs.find(accept);
    if (!spec || !accept(spec)) {
      throw invalid(`reduce "${reduce}" reads ${what}; model "${config.name}" ${spec ? `output "${spec.name}" is ${spec.dtype}` : 'has none'}`);
    }
    return spec.name;
  };
  switch (reduce) {
    case 'mean':
    case 'sum':
    case 'max':
    case 'min':
      return pick((spec) => NUMERIC.has(spec.dtype), undefined, 'a float32 or int32 tensor output');
    case 'collect':
      return output === undefined ? WHOLE_OUTPUT : named(output).name;
    case 'labels':
    case 'vote':
      return pick((spec) => spec.dtype === 'string', 'label', 'a string output (a label)');
    case 'boxes':
      if (config.preprocess?.type !== 'image') throw invalid(`reduce "boxes" draws on input images; model "${config.name}" does not take images`);
      return pick((spec) => spec.dtype === 'json', undefined, 'a json output of detections');
  }
}

function invalid(message: string): InferlineError {
  return new InferlineError('invalid_reduce', message);
}
