import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { InferlineError, readLiveVersions } from '@inferline/shared';
import type { VersionSelector } from '../model-catalog.ts';
import { knownVersions, labelVersion } from '../routes/models.ts';
import { SERVING_SIGNATURE } from '../tfserving-request.ts';
import { runTensorJobs } from '../sync-jobs.ts';
import { protoRoot } from './protos.ts';
import { fromTensorProto, signatureDefMap, toTensorProto, type TensorProto } from './tensor-proto.ts';
import { unary, type GrpcDeps } from './unary.ts';

/** `ModelSpec` (tensorflow_serving/apis/model.proto) as proto-loader gives it. */
interface ModelSpec {
  name: string;
  version: { value: number } | null;
  version_label: string;
  signature_name: string;
  version_choice?: 'version' | 'version_label';
}

/** The only metadata field TF Serving's GetModelMetadata serves. */
const SIGNATURE_DEF_FIELD = 'signature_def';
/** `type_url` of the Any that carries it. */
const SIGNATURE_DEF_MAP_TYPE_URL = 'type.googleapis.com/tensorflow.serving.SignatureDefMap';

/**
 * TF Serving's gRPC API (tensorflow_serving/apis/prediction_service.proto, model_service.proto):
 * - `PredictionService.Predict`: the signature's input by name, first dimension the batch: each row is
 *   one job; waits until the call's deadline, at most `max_wait_s`; `output_filter` picks outputs;
 * - `PredictionService.GetModelMetadata` with `metadata_field: ["signature_def"]`: the
 *   `serving_default` signature, as a `SignatureDefMap` in a `google.protobuf.Any`;
 * - `ModelService.GetModelStatus`: each version's state as the live workers announce it (the model
 *   routes' rule).
 * A ModelSpec names a version, a label (`version_label`), or neither; `signature_name` is empty or
 * `serving_default`. Status codes as grpc-status.ts maps them.
 */
export function tfservingServices(deps: GrpcDeps): { prediction: UntypedServiceImplementation; model: UntypedServiceImplementation } {
  const prediction: UntypedServiceImplementation = {
    Predict: unary(deps, 'Predict', async (request: { model_spec: ModelSpec | null; inputs: Record<string, TensorProto>; output_filter: string[] }, call) => {
      const spec = requireSpec(request.model_spec);
      const selector = selectorOf(spec);
      const target = await deps.models.resolve(spec.name, selector);
      const tensors = Object.entries(request.inputs).map(([name, proto]) => fromTensorProto(name, proto, target.config));
      const { target: served, tensors: tensorsOut } = await runTensorJobs(deps, {
        model: spec.name,
        selector,
        target,
        tensors,
        requested: request.output_filter,
        waitMs: call.waitMs,
        signal: call.signal,
        ...(call.tenant ? { tenant: call.tenant } : {}),
      });
      return {
        model_spec: { name: served.config.name, version: { value: served.version }, signature_name: SERVING_SIGNATURE },
        outputs: Object.fromEntries(tensorsOut.map((tensor) => [tensor.name, toTensorProto(tensor)])),
      };
    }),
    GetModelMetadata: unary(deps, 'GetModelMetadata', (request: { model_spec: ModelSpec | null; metadata_field: string[] }) => {
      const spec = requireSpec(request.model_spec);
      if (request.metadata_field.length === 0) throw new InferlineError('invalid_input', 'GetModelMetadataRequest must name at least one metadata_field ("signature_def")');
      const unsupported = request.metadata_field.find((field) => field !== SIGNATURE_DEF_FIELD);
      if (unsupported !== undefined) throw new InferlineError('invalid_input', `metadata field "${unsupported}" is not supported; only "${SIGNATURE_DEF_FIELD}"`);
      const { config, version } = deps.models.resolveNow(spec.name, selectorOf(spec), { requireAvailable: false, ignoreTraffic: true });
      const type = protoRoot().lookupType('tensorflow.serving.SignatureDefMap');
      const value = Buffer.from(type.encode(type.fromObject(signatureDefMap(config))).finish());
      return Promise.resolve({
        model_spec: { name: config.name, version: { value: version }, signature_name: '' },
        metadata: { [SIGNATURE_DEF_FIELD]: { type_url: SIGNATURE_DEF_MAP_TYPE_URL, value } },
      });
    }),
  };
  const model: UntypedServiceImplementation = {
    GetModelStatus: unary(deps, 'GetModelStatus', async (request: { model_spec: ModelSpec | null }) => {
      const spec = requireSpec(request.model_spec, false);
      const repositoryModel = deps.models.require(spec.name);
      const { versions: live } = await readLiveVersions(deps.redis, spec.name, deps.settings.heartbeat_interval_ms);
      const known = knownVersions(repositoryModel, live);
      let versions = known;
      if (spec.version_choice !== undefined) {
        const version = spec.version_choice === 'version' ? spec.version?.value : labelVersion(repositoryModel, spec.version_label);
        if (version === undefined || !known.includes(version)) {
          throw new InferlineError('version_not_found', `model "${spec.name}" has no version ${spec.version_choice === 'version' ? version : `labelled "${spec.version_label}"`} (versions: ${known.join(', ') || 'none'})`);
        }
        versions = [version];
      }
      return {
        model_version_status: versions.map((version) => {
          const held = live.get(version);
          const failed = held?.state === 'END' && held.error !== undefined;
          return {
            version,
            state: held?.state ?? 'START',
            status: failed ? { error_code: 'UNKNOWN', error_message: held.error ?? '' } : { error_code: 'OK', error_message: '' },
          };
        }),
      };
    }),
  };
  return { prediction, model };
}

/**
 * A request's ModelSpec: a name, and a signature this server has.
 * @throws InferlineError `invalid_input` without a model name or for another signature.
 */
function requireSpec(spec: ModelSpec | null, checkSignature = true): ModelSpec {
  if (!spec || spec.name === '') throw new InferlineError('invalid_input', 'model_spec.name is required');
  if (checkSignature && spec.signature_name !== '' && spec.signature_name !== SERVING_SIGNATURE) {
    throw new InferlineError('invalid_input', `serving signature "${spec.signature_name}" not found; model "${spec.name}" has "${SERVING_SIGNATURE}"`);
  }
  return spec;
}

function selectorOf(spec: ModelSpec): VersionSelector {
  if (spec.version_choice === 'version' && spec.version) return { version: spec.version.value };
  if (spec.version_choice === 'version_label') return { label: spec.version_label };
  return {};
}
