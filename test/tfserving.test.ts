import assert from 'node:assert/strict';
import { readFile, rm, symlink, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadMobyDickParagraphs } from '../bench/corpus.ts';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { gloveRepository, gloveVersionDir } from './harness/repository.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

/**
 * TF Serving REST conformance (https://www.tensorflow.org/tfx/serving/api_rest) of the `:predict`,
 * model status and metadata routes, against a gateway process, a worker process, a real Redis and the
 * real glove-embed model. Predictions are compared with what the native `POST /v1/jobs` answers for the
 * same texts.
 */

const MODEL = 'glove-embed';
/** A model in the repository that no worker serves: admission answers 503. */
const IDLE_MODEL = 'glove-idle';
/** glove-embed's max_queue_size here: a call with more instances is refused whole with 429. */
const MAX_QUEUE_SIZE = 50;
const TOLERANCE = 1e-6;

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown>;
}

/** POST raw bytes (a Uint8Array body gets no Content-Type from fetch unless one is given). */
async function post(url: string, path: string, body: string, contentType?: string): Promise<Reply> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    body: Buffer.from(body),
    ...(contentType === undefined ? {} : { headers: { 'content-type': contentType } }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: JSON.parse(text) as Record<string, unknown> };
}

/** The TF Serving error shape: exactly `{"error": "<message>"}`; answers the message. */
function tfError(reply: Reply, status: number): string {
  assert.equal(reply.status, status, reply.text);
  assert.deepEqual(Object.keys(reply.json), ['error'], reply.text);
  assert.equal(typeof reply.json.error, 'string', reply.text);
  return reply.json.error as string;
}

function assertClose(actual: unknown, expected: number[][], what: string): void {
  const rows = actual as number[][];
  assert.equal(rows.length, expected.length, what);
  rows.forEach((row, i) => {
    assert.equal(row.length, expected[i]?.length, `${what} ${i}`);
    row.forEach((value, d) => assert.ok(Math.abs(value - (expected[i]?.[d] ?? NaN)) <= TOLERANCE, `${what} ${i} dim ${d}: ${value} vs ${expected[i]?.[d]}`));
  });
}

describe('TF Serving REST API: gateway + worker + real Redis + glove-embed', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  const texts = loadMobyDickParagraphs().slice(0, 12);
  /** The native API's embeddings of `texts`, in order. */
  let native: number[][];

  before(async () => {
    redis = await startTestRedis();
    repository = await gloveRepository({ batching: { max_queue_size: MAX_QUEUE_SIZE } });
    const config = JSON.parse(await readFile(join(repository, MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    await mkdir(join(repository, IDLE_MODEL));
    await writeFile(join(repository, IDLE_MODEL, 'config.json'), JSON.stringify({ ...config, name: IDLE_MODEL }));
    await symlink(gloveVersionDir(1), join(repository, IDLE_MODEL, '1'));
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env, [MODEL]);
    const { status, json } = await callGateway<{ jobs: { id: string }[] }>(gateway.url, 'POST', '/v1/jobs', { model: MODEL, inputs: texts });
    assert.equal(status, 202);
    // The bulk reply is queued; read each job to its end.
    native = [];
    for (const job of json.jobs) {
      const view = await callGateway<{ status: string; output: { embedding: number[] } }>(gateway.url, 'GET', `/v1/jobs/${job.id}?wait=30`);
      assert.equal(view.json.status, 'succeeded');
      native.push(view.json.output.embedding);
    }
  });

  after(async () => {
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
    if (repository) await rm(repository, { recursive: true, force: true });
  });

  test("TF Serving's documented curl -d (application/x-www-form-urlencoded), no Content-Type and text/plain: predictions equal the native outputs", async () => {
    const body = JSON.stringify({ instances: texts });
    for (const contentType of ['application/x-www-form-urlencoded', undefined, 'text/plain', 'application/json']) {
      const reply = await post(gateway.url, `/v1/models/${MODEL}:predict`, body, contentType);
      assert.equal(reply.status, 200, `${contentType}: ${reply.text}`);
      assertClose(reply.json.predictions, native, `predictions (${contentType ?? 'no content type'})`);
    }
  });

  test('columnar inputs (a list, or by input name), named instances, {"b64"} text and the versions path answer the same embeddings', async () => {
    const columnar = await post(gateway.url, `/v1/models/${MODEL}:predict`, JSON.stringify({ inputs: { text: texts } }));
    assertClose(columnar.json.outputs, native, 'outputs');
    const list = await post(gateway.url, `/v1/models/${MODEL}/versions/1:predict`, JSON.stringify({ signature_name: 'serving_default', inputs: texts }));
    assertClose(list.json.outputs, native, 'outputs (versions/1)');
    const named = await post(gateway.url, `/v1/models/${MODEL}:predict`, JSON.stringify({ instances: texts.map((text) => ({ text })) }));
    assertClose(named.json.predictions, native, 'named instances');
    const b64 = await post(gateway.url, `/v1/models/${MODEL}:predict`, JSON.stringify({ instances: texts.map((text) => ({ b64: Buffer.from(text).toString('base64') })) }));
    assertClose(b64.json.predictions, native, '{"b64"} instances');
  });

  test('every malformed request → 400 {"error": "<message>"} (TF Serving messages), and nothing is answered 200', async () => {
    const path = `/v1/models/${MODEL}:predict`;
    const cases: [string, RegExp][] = [
      ['', /^JSON Parse error: The document is empty$/],
      ['{"instances": [', /^JSON Parse error/],
      ['{"instances": ["a"], "signature_name": "classify"}', /^Serving signature name: "classify" not found in signature def$/],
      ['{"instances": ["a"], "inputs": ["a"]}', /only one of 'inputs' or 'instances' keys/],
      ['{"signature_name": "serving_default"}', /^Missing 'inputs' or 'instances' key$/],
      ['{"instances": []}', /^No values in 'instances' array$/],
      ['{"inputs": []}', /^No values in 'inputs' list$/],
      ['{"instances": ["a", {"text": "b"}]}', /^Expecting value\/list but got object at item 1 of input list$/],
      ['{"instances": [{"text": "a"}, "b"]}', /^Expecting object but got list at item 1 of input list$/],
      ['{"instances": [{"sentence": "a"}]}', /does not have named input: sentence/],
      ['{"inputs": {"sentence": ["a"]}}', /^Missing named input: text in 'inputs' object\.$/],
      ['{"inputs": {"text": ["a"], "extra": ["b"]}}', /named input the signature does not have: extra/],
      ['{"instances": [{"b64": "!!"}]}', /instances\[0\]\.b64": not standard base64/],
      [`{"instances": [{"b64": "${Buffer.from([0xc3, 0x28]).toString('base64')}"}]}`, /instances\[0\]\.b64": the decoded bytes are not valid UTF-8/],
      ['{"instances": [NaN, "a"]}', /^Failed to process element: 0 of 'instances' list\. Error: .*got a number/],
      ['{"instances": [["a"]]}', /^Failed to process element: 0 of 'instances' list\. Error: .*got an array/],
    ];
    for (const [body, message] of cases) {
      assert.match(tfError(await post(gateway.url, path, body, 'application/x-www-form-urlencoded'), 400), message, body);
    }
  });

  test('unknown model, version or label → 404; a call over max_queue_size → 429; a model no worker serves → 503; Retry-After on both', async () => {
    const body = JSON.stringify({ instances: ['a'] });
    assert.match(tfError(await post(gateway.url, '/v1/models/half:predict', body), 404), /"half"/);
    assert.match(tfError(await post(gateway.url, `/v1/models/${MODEL}/versions/9:predict`, body), 404), /version 9/);
    assert.match(tfError(await post(gateway.url, `/v1/models/${MODEL}/labels/canary:predict`, body), 404), /label "canary"/);
    const full = await post(gateway.url, `/v1/models/${MODEL}:predict`, JSON.stringify({ instances: Array.from({ length: MAX_QUEUE_SIZE + 1 }, (_, i) => `text ${i}`) }));
    assert.match(tfError(full, 429), /queue/);
    assert.equal(full.headers.get('retry-after'), '1');
    const idle = await post(gateway.url, `/v1/models/${IDLE_MODEL}:predict`, body);
    assert.match(tfError(idle, 503), /not loaded by any live worker/);
    assert.equal(idle.headers.get('retry-after'), '1');
  });

  test("GET .../metadata is TF Serving's GetModelMetadata JSON; status and its errors are TF Serving's too", async () => {
    const expectedDef = {
      serving_default: {
        inputs: { text: { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: '-1', name: '' }], unknown_rank: false }, name: 'text' } },
        outputs: {
          embedding: {
            dtype: 'DT_FLOAT',
            tensor_shape: {
              dim: [
                { size: '-1', name: '' },
                { size: '100', name: '' },
              ],
              unknown_rank: false,
            },
            name: 'embedding',
          },
        },
        method_name: 'tensorflow/serving/predict',
      },
    };
    for (const path of [`/v1/models/${MODEL}/metadata`, `/v1/models/${MODEL}/versions/1/metadata`]) {
      const { status, json } = await callGateway<unknown>(gateway.url, 'GET', path);
      assert.equal(status, 200, path);
      assert.deepEqual(json, { model_spec: { name: MODEL, signature_name: '', version: '1' }, metadata: { signature_def: { signature_def: expectedDef } } }, path);
    }
    const model = await callGateway<unknown>(gateway.url, 'GET', `/v1/models/${MODEL}`);
    assert.deepEqual(model.json, { model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] });
    const missing = await fetch(`${gateway.url}/v1/models/half/metadata`);
    assert.equal(missing.status, 404);
    const body = (await missing.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body), ['error']);
    assert.equal(typeof body.error, 'string');
  });
});
