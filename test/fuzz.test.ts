import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { gloveRepository } from './harness/repository.ts';

/** Requests the fuzz sends (bounded so the suite stays well under a minute). */
const RUNS = 300;
/** A valid request is interleaved after every this many fuzzed ones, and must succeed. */
const VALID_EVERY = 10;

/** One HTTP request as the fuzz builds it. */
interface FuzzRequest {
  method: 'POST' | 'GET' | 'DELETE';
  path: string;
  contentType?: string;
  body?: string;
}

const PATHS = [
  '/v1/jobs',
  '/v1/groups',
  '/v1/models/glove-embed:predict',
  '/v1/models/glove-embed/versions/1:predict',
  '/v1/models/glove-embed/labels/stable:predict',
  '/v2/models/glove-embed/infer',
  '/v2/models/glove-embed/versions/1/infer',
];

/** JSON values that stress a validator: huge, tiny, negative, fractional numbers, odd strings, nesting. */
const nasty = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(1e308, -1e308, 2 ** 53 + 1, -0, 0.5, -1, 0, 4096, 2 ** 31, '', '\u0000', '\ud800', 'glove-embed', 'x'.repeat(70_000)),
  fc.record({ b64: fc.oneof(fc.string(), fc.constantFrom('!!!not base64!!!', '====', 'aGVsbG8', '/9j/4AAQ', 'A'.repeat(5))) }),
  fc.array(fc.oneof(fc.string(), fc.double(), fc.record({ b64: fc.string() })), { maxLength: 5 }),
);

/** A valid body of each path, with fields replaced, dropped or added by the fuzz. */
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  '/v1/jobs': { model: 'glove-embed', input: 'Call me Ishmael.', priority: 1, timeout_ms: 60_000 },
  '/v1/groups': { model: 'glove-embed', inputs: ['a whale', 'a ship'], reduce: 'mean' },
  ':predict': { instances: ['Call me Ishmael.'] },
  infer: { inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['Call me Ishmael.'] }] },
};

function validBodyOf(path: string): Record<string, unknown> {
  if (path.endsWith(':predict')) return VALID_BODIES[':predict'] ?? {};
  if (path.endsWith('/infer')) return VALID_BODIES.infer ?? {};
  return VALID_BODIES[path] ?? {};
}

/** A mutated valid body: some fields replaced by nasty values, some dropped, some unknown ones added. */
const mutatedBody = (path: string) =>
  fc
    .tuple(fc.dictionary(fc.constantFrom(...Object.keys(validBodyOf(path)), 'extra', 'model', 'version', 'inputs', 'instances', 'input'), nasty, { maxKeys: 3 }), fc.subarray(Object.keys(validBodyOf(path))))
    .map(([replaced, dropped]) => {
      const body: Record<string, unknown> = { ...validBodyOf(path), ...replaced };
      for (const key of dropped) if (!(key in replaced)) delete body[key];
      return JSON.stringify(body);
    });

const malformedText = fc.oneof(
  fc.string(),
  fc.constantFrom('{', '{"model":', '[1,2', 'null', '"text"', '{"model":"glove-embed","input":"x","version":1e400}', '{"model":"glove-embed","input":"x"}}', '\ufeff{}'),
);

const multipart = fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 200 })).map(([boundary, text]) => ({
  contentType: `multipart/form-data; boundary=${boundary || 'x'}`,
  body: text.includes('--') ? text : `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nglove-embed\r\n--${boundary}\r\n${text}`,
}));

const fuzzRequest: fc.Arbitrary<FuzzRequest> = fc.oneof(
  fc.constantFrom(...PATHS).chain((path) => mutatedBody(path).map((body): FuzzRequest => ({ method: 'POST', path, contentType: 'application/json', body }))),
  fc.tuple(fc.constantFrom(...PATHS), malformedText, fc.constantFrom('application/json', 'text/plain', 'application/octet-stream', 'application/json; charset=latin1')).map(
    ([path, body, contentType]): FuzzRequest => ({ method: 'POST', path, contentType, body }),
  ),
  fc.tuple(fc.constantFrom('/v1/jobs', '/v1/models/glove-embed:predict'), multipart).map(([path, part]): FuzzRequest => ({ method: 'POST', path, ...part })),
  fc.tuple(fc.constantFrom<'GET' | 'DELETE'>('GET', 'DELETE'), fc.constantFrom('/v1/jobs/', '/v1/groups/'), fc.string({ maxLength: 140 }), fc.constantFrom('', '?wait=-1', '?wait=1e9', '?wait=abc', '?wait=0'))
    .map(([method, prefix, id, query]): FuzzRequest => ({ method, path: `${prefix}${encodeURIComponent(id)}${query}` })),
);

describe('HTTP API fuzz (fast-check) against a gateway + worker + real Redis', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: (RoleProcess & { url: string }) | undefined;
  let worker: RoleProcess | undefined;

  before(async () => {
    redis = await startTestRedis();
    repository = await gloveRepository({ fields: { version_labels: { stable: 1 } } });
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
    await rm(repository, { recursive: true, force: true });
  });

  test(`${RUNS} malformed or odd requests never get a 5xx, and valid requests interleaved all succeed`, async () => {
    const url = gateway?.url ?? '';
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fuzzRequest, async (request) => {
        const response = await fetch(`${url}${request.path}`, {
          method: request.method,
          ...(request.body === undefined ? {} : { body: request.body, headers: { 'content-type': request.contentType ?? 'application/json' } }),
        });
        const text = await response.text();
        assert.ok(response.status < 500, `${request.method} ${request.path} ${request.contentType ?? ''} ${request.body?.slice(0, 300) ?? ''} → ${response.status} ${text.slice(0, 300)}`);
        if (++sent % VALID_EVERY === 0) {
          const valid = await fetch(`${url}/v1/jobs`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', prefer: 'wait=30' },
            body: JSON.stringify({ model: 'glove-embed', input: `valid request ${sent}` }),
          });
          const job = (await valid.json()) as { status: string; output?: { embedding?: number[] } };
          assert.equal(valid.status, 200, JSON.stringify(job));
          assert.equal(job.status, 'succeeded');
          assert.equal(job.output?.embedding?.length, 100);
        }
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 20_240_601) },
    );
    assert.ok(!/"level":50/.test(gateway?.output() ?? ''), 'the gateway logged no request error (level 50)');
  });
});
