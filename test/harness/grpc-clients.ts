import { credentials, loadPackageDefinition, Metadata, type Client, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_FILES, PROTO_LOADER_OPTIONS } from '../../packages/gateway/src/grpc/protos.ts';

/** gRPC clients of the gateway's three services, generated from the project's protos as a user's would be. */
export interface GrpcClients {
  inference: Client;
  prediction: Client;
  model: Client;
  close(): void;
}

/** Connect clients of `inference.GRPCInferenceService`, `tensorflow.serving.PredictionService` and `ModelService` to `address` (`host:port`). */
export function connectGrpcClients(address: string): GrpcClients {
  const root = loadPackageDefinition(loadSync(PROTO_FILES, PROTO_LOADER_OPTIONS));
  const constructor = (path: string): ServiceClientConstructor => path.split('.').reduce<unknown>((node, part) => (node as GrpcObject)[part], root) as ServiceClientConstructor;
  const make = (path: string): Client => new (constructor(path))(address, credentials.createInsecure());
  const clients = { inference: make('inference.GRPCInferenceService'), prediction: make('tensorflow.serving.PredictionService'), model: make('tensorflow.serving.ModelService') };
  return { ...clients, close: () => Object.values(clients).forEach((client) => client.close()) };
}

/**
 * Make a unary call; resolves with the response, rejects with the ServiceError (its `code`,
 * `details`, `metadata`).
 * @param deadlineMs the call's gRPC deadline from now (default 60 s)
 * @param metadata the call's metadata (e.g. `authorization: Bearer <key>`)
 */
export function unaryCall<T>(client: Client, method: string, request: unknown, deadlineMs = 60_000, metadata = new Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method];
    if (!fn) throw new Error(`no method ${method}`);
    fn.call(client, request, metadata, { deadline: Date.now() + deadlineMs }, (error: ServiceError | null, response: T) => (error ? reject(error) : resolve(response)));
  });
}

/** The gRPC error of a call that must fail. @throws Error when it succeeds. */
export async function grpcError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('expected the call to fail');
}
