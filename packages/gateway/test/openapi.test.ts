import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyPluginCallback } from 'fastify';
import { buildApp } from '../src/server.ts';
import { startFixture, silentLogger, type Fixture } from './fixture.ts';

type Operation = { summary?: string; tags?: string[]; operationId?: string };
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const METHODS = new Set(['get', 'post', 'put', 'delete', 'patch']);

/** A fastify route URL as an OpenAPI path: `:name(^regex)` and `:id` → `{name}`, `{id}`; `::` → `:`. */
function openApiPath(url: string): string {
  return url
    .split('::')
    .map((part) => part.replace(/:([A-Za-z_]+)(\([^)]*\))?/g, '{$1}'))
    .join(':');
}

describe('openapi: /docs/json and /docs', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture();
  });
  after(async () => {
    await f.close();
  });

  it('/docs/json is a valid OpenAPI 3 document listing every route, each with a summary and a tag', async () => {
    const res = await f.app.inject({ url: '/docs/json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json<Document>();
    assert.match(doc.openapi, /^3\./);
    await SwaggerParser.validate(structuredClone(doc) as never);
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([method]) => METHODS.has(method))
        .map(([method, op]) => ({ id: `${method.toUpperCase()} ${path}`, op })),
    );
    const ids = new Set(operations.map((o) => o.id));
    for (const id of [
      'POST /v1/jobs',
      'GET /v1/jobs/{id}',
      'POST /v1/groups',
      'GET /v1/models',
      'GET /v1/models/{name}',
      'GET /v1/models/{name}/versions/{version}/metadata',
      'POST /v1/models/{name}:predict',
      'POST /v1/models/{name}/versions/{version}:predict',
      'POST /v1/models/{name}/labels/{label}:predict',
      'GET /healthz',
      'GET /metrics',
    ]) {
      assert.ok(ids.has(id), `${id} is listed`);
    }
    for (const { id, op } of operations) {
      assert.ok(op.summary && op.summary.length > 0, `${id} has a summary`);
      assert.ok(op.tags && op.tags.length > 0, `${id} has a tag`);
    }
    assert.ok(!ids.has('GET /docs/json'), 'the docs routes are hidden');
  });

  it('every route the app serves is in the document, a route registered after the app factory (another plugin) too', async () => {
    const app = buildApp({ redis: f.appRedis, events: f.events, models: f.models, settings: f.settings, logger: silentLogger });
    const served: string[] = [];
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) if (method !== 'HEAD' && !route.url.startsWith('/docs')) served.push(`${method} ${openApiPath(route.url)}`);
    });
    const later: FastifyPluginCallback = (scope, _options, done) => {
      scope.get('/v9/later', { schema: { summary: 'A route of a later plugin', tags: ['Operations'] } }, () => ({ later: true }));
      done();
    };
    void app.register(later);
    await app.ready();
    const doc = (await app.inject({ url: '/docs/json' })).json<Document>();
    assert.ok(served.length > 20, `${served.length} routes`);
    for (const id of served) {
      const [method, path] = id.split(' ') as [string, string];
      // A prefix's root (`/v2`) is served with and without its trailing slash; the document lists it once.
      const listed = doc.paths[path] ?? doc.paths[path.endsWith('/') ? path.slice(0, -1) : `${path}/`];
      assert.ok(listed?.[method.toLowerCase() as 'get'], `${id} is in the document`);
    }
    assert.equal(doc.paths['/v9/later']?.get?.summary, 'A route of a later plugin');
    await app.close();
  });

  it('/docs serves Swagger UI and its assets from the package', async () => {
    const page = await f.app.inject({ url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /text\/html/);
    assert.match(page.body, /swagger-ui/i);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /upgrade-insecure-requests|validator\.swagger\.io/, 'plain HTTP keeps working; nothing points outside');
    const scripts = [...page.body.matchAll(/src="([^"]+)"/g)].map((m) => m[1] ?? '');
    assert.ok(scripts.length > 0);
    for (const src of scripts) {
      assert.ok(!/^https?:/.test(src), `${src} is served by the gateway`);
      const asset = await f.app.inject({ url: new URL(src, 'http://gateway/docs/').pathname });
      assert.equal(asset.statusCode, 200, src);
    }
  });
});
