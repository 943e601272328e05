import { createLogger, DEFAULT_REDIS_URL, loadSettings } from '@inferline/shared';
import { startGateway } from '@inferline/gateway';
import { aborted, trapStopSignals } from '../signals.ts';

/** IPC message a forked gateway sends its supervisor (`inferline start`) once it listens. */
export interface GatewayReadyMessage {
  type: 'gateway-ready';
  /** `http://host:port` */
  address: string;
  /** `host:port` of the gRPC server; absent when GRPC_PORT is 0. */
  grpcAddress?: string;
}

/**
 * `inferline gateway`: serve the HTTP API (and gRPC on GRPC_PORT) against `REDIS_URL` (default {@link DEFAULT_REDIS_URL})
 * until SIGINT/SIGTERM, then close it (finish in-flight requests, close Redis).
 */
export async function runGateway(): Promise<void> {
  const settings = loadSettings();
  const logger = createLogger('gateway');
  const signal = trapStopSignals({ onStop: (cause) => logger.info({ cause }, 'stopping gateway') });
  const gateway = await startGateway({ ...settings, redis_url: settings.redis_url ?? DEFAULT_REDIS_URL }, logger);
  if (process.send && process.connected) {
    const ready: GatewayReadyMessage = { type: 'gateway-ready', address: gateway.address, ...(gateway.grpcAddress === undefined ? {} : { grpcAddress: gateway.grpcAddress }) };
    process.send(ready);
  }
  await aborted(signal);
  await gateway.close();
  logger.info('gateway stopped');
}
