import { Server, ServerCredentials } from '@grpc/grpc-js';
import { inferenceService } from './inference-service.ts';
import { loadServices } from './protos.ts';
import { tfservingServices } from './tfserving-service.ts';
import type { GrpcDeps } from './unary.ts';

/** A listening gRPC server. */
export interface RunningGrpcServer {
  /** The port bound (a free one when 0 was asked for). */
  port: number;
  /**
   * Stop accepting calls and let those in flight finish (waiting ones answer at once once the
   * caller aborted `deps.shutdown`); cut what is left after `graceMs`.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Start the gateway's gRPC server on `host:port` (insecure, as Triton's default): KServe's
 * `inference.GRPCInferenceService` and TF Serving's `tensorflow.serving.PredictionService` and
 * `ModelService`, from the project's protos (packages/gateway/proto). Messages up to
 * `settings.max_body_bytes` are accepted, as on HTTP.
 * @param port the port to bind; 0 here binds a free port (GRPC_PORT=0 disables gRPC before this is called)
 * @throws Error when the address cannot be bound.
 */
export async function startGrpcServer(deps: GrpcDeps, host: string, port: number): Promise<RunningGrpcServer> {
  const services = loadServices();
  const limit = deps.settings.max_body_bytes;
  const server = new Server({ 'grpc.max_receive_message_length': limit, 'grpc.max_send_message_length': limit });
  server.addService(services.inference, inferenceService(deps));
  const tfserving = tfservingServices(deps);
  server.addService(services.prediction, tfserving.prediction);
  server.addService(services.model, tfserving.model);
  const bound = await new Promise<number>((resolve, reject) => {
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  return {
    port: bound,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
