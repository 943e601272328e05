import gatewayPackage from '../package.json' with { type: 'json' };

/** Server name in OIP server metadata (`GET /v2`, gRPC ServerMetadata). */
export const OIP_SERVER_NAME = 'inferline';

/** Server version in OIP server metadata: the gateway package's version. */
export const OIP_SERVER_VERSION: string = gatewayPackage.version;
