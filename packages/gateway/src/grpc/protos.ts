import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** The folder of the project's .proto files (the include root their imports are relative to). */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

/**
 * The .proto files served, relative to {@link PROTO_DIR}: KServe's `grpc_predict_v2.proto` (package
 * `inference`) and TF Serving's PredictionService and ModelService (package `tensorflow.serving`,
 * with the TensorFlow messages they import).
 */
export const PROTO_FILES = ['grpc_predict_v2.proto', 'tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'];

/**
 * How messages reach the handlers (proto-loader options): field names as in the .proto, int64 as JS
 * numbers, enums by name, absent scalars and lists as their defaults, bytes as Buffers, the set
 * member of a oneof named in the oneof's field.
 */
export const PROTO_LOADER_OPTIONS: Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] };

/** The services of {@link PROTO_FILES}, ready for `server.addService`. */
export interface ServiceDefinitions {
  inference: ServiceDefinition;
  prediction: ServiceDefinition;
  model: ServiceDefinition;
}

/** Load the project's protos once (services for grpc-js). */
export function loadServices(): ServiceDefinitions {
  const grpcObject = loadPackageDefinition(loadSync(PROTO_FILES, PROTO_LOADER_OPTIONS));
  const service = (path: string): ServiceDefinition => {
    const found = path.split('.').reduce<unknown>((node, part) => (node as GrpcObject | undefined)?.[part], grpcObject) as { service?: ServiceDefinition } | undefined;
    if (!found?.service) throw new Error(`proto service ${path} not found in ${PROTO_FILES.join(', ')}`);
    return found.service;
  };
  return { inference: service('inference.GRPCInferenceService'), prediction: service('tensorflow.serving.PredictionService'), model: service('tensorflow.serving.ModelService') };
}

let root: protobuf.Root | undefined;

/**
 * The messages of {@link PROTO_FILES} as protobufjs types, for what gRPC does not encode itself: the
 * `google.protobuf.Any` of GetModelMetadata holds a serialized `tensorflow.serving.SignatureDefMap`.
 */
export function protoRoot(): protobuf.Root {
  if (root) return root;
  const loaded = new protobuf.Root();
  loaded.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : `${PROTO_DIR}${target}`);
  loaded.loadSync(PROTO_FILES, { keepCase: true });
  loaded.resolveAll();
  root = loaded;
  return loaded;
}
