import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from '@inferline/shared';
import gatewayPackage from '../package.json' with { type: 'json' };

/** Where Swagger UI is served; the OpenAPI document is at `${DOCS_PREFIX}/json` (and `/yaml`). */
export const DOCS_PREFIX = '/docs';

/** Tags of the operations, in the order Swagger UI lists them. */
const TAGS = [
  { name: 'Jobs', description: 'Native, asynchronous: one job per input; poll, long-poll or stream its state.' },
  { name: 'Groups', description: 'Many inputs, one reduced output.' },
  { name: 'Models', description: "inferline's model list." },
  { name: 'TF Serving', description: 'TF Serving REST compatible routes (https://www.tensorflow.org/tfx/serving/api_rest): synchronous predict, model status and metadata.' },
  { name: 'Operations', description: 'Liveness, readiness, Prometheus metrics.' },
];

/**
 * Register the OpenAPI 3 document built from every route's schemas (`@fastify/swagger`, served at
 * `GET /docs/json`) and Swagger UI over it (`@fastify/swagger-ui`, `GET /docs`; its assets come from the
 * package, nothing is fetched from elsewhere, and the online spec validator is off).
 *
 * Call it on the root instance before any route is registered: the document collects routes through
 * an `onRoute` hook, so every route added afterwards, in any plugin, appears. Operations carry the
 * `summary`, `description` and `tags` of their route schema.
 */
export function registerOpenApi(app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger, TypeBoxTypeProvider>): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'inferline gateway',
        description: 'Queue-backed, distributed inference for TensorFlow.js models. Native errors are `{"error":{"code","message"}}`; the TF Serving routes answer `{"error": "<message>"}`.',
        version: gatewayPackage.version,
      },
      tags: TAGS,
      // With API keys configured every route but the probes needs `Authorization: Bearer <key>`;
      // Swagger UI's "Authorize" button takes the key and "Try it out" sends it.
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key (`inferline keys create`); needed when the gateway has keys configured.' } } },
      security: [{ bearerAuth: [] }],
    },
  });
  void app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { docExpansion: 'list', deepLinking: true, validatorUrl: null, tryItOutEnabled: false },
    staticCSP: true,
    // The gateway is served over plain HTTP too: `upgrade-insecure-requests` would send the page's own
    // requests (assets, /docs/json, Try it out) to https and break it; the online validator is off.
    transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, '').replace(' validator.swagger.io', ''),
  });
}
