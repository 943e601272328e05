import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { createErrorHandler, messageErrorBody } from './error-handler.ts';
import type { RouteContext } from './route-context.ts';
import { parseTfServingJson } from './tfserving-json.ts';

/** TF Serving's error reply: `{"error": "<message>"}`. */
export const TfServingErrorReply = Type.Object({ error: Type.String() }, { description: 'TF Serving\'s error shape: `{"error": "<message>"}`.' });

/** The error replies of a TF Serving route, for its response schema. */
export const TF_SERVING_ERRORS = { '4xx': TfServingErrorReply, '5xx': TfServingErrorReply } as const;

/**
 * Give the routes of an encapsulated fastify scope (a plugin registered without fastify-plugin) TF
 * Serving's REST conventions (https://www.tensorflow.org/tfx/serving/api_rest):
 * - every body is read as JSON whatever its `Content-Type`, or with none: TF Serving never looks at it,
 *   and its documented `curl -d '{...}'` sends `application/x-www-form-urlencoded`, Python's
 *   `requests.post(url, data=json_string)` none. `NaN`, `Infinity`, `-Infinity` parse (parseTfServingJson).
 *   The body limit (`bodyLimit`, `max_body_bytes`) applies as to every route;
 * - errors are `{"error": "<message>"}` with the status of their code (400, 404, 413, 429, 503, 504, 500),
 *   `Retry-After` kept on 429 and 503.
 * Nothing changes outside the scope: the native routes keep JSON-only bodies and `{"error":{"code","message"}}`.
 */
export function useTfServingConventions(app: FastifyInstance, ctx: RouteContext): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseTfServingJson(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  // A Content-Type fastify cannot even parse (say `json`) would be refused with 415 before any parser
  // runs: the header is dropped here, so every body reaches the catch-all parser above.
  app.addHook('onRequest', (request, _reply, done) => {
    delete request.headers['content-type'];
    done();
  });
  app.setErrorHandler(createErrorHandler(ctx.redis, ctx.settings.max_body_bytes, messageErrorBody));
}
