import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { keys } from '@inferline/shared';
import type { ModelList, ModelMetadataReply, ModelStatusReply } from '../src/model-schemas.ts';
import { MODEL, startFixture, type Fixture } from './fixture.ts';

describe('routes/models', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ versions: [1, 2], versionPolicy: { all: {} }, versionLabels: { stable: 1, canary: 2 }, noWorker: true });
  });
  after(async () => {
    await f.close();
  });
  beforeEach(async () => {
    await f.reset();
  });

  async function heartbeat(version: number, state: 'LOADING' | 'AVAILABLE' | 'END' = 'AVAILABLE', error?: string): Promise<void> {
    await f.announce([version], state, error);
  }

  it('GET /v1/models lists each model with served versions, state, platform, signature and live workers', async () => {
    const before = (await f.app.inject({ url: '/v1/models' })).json<ModelList>();
    assert.equal(before.models.length, 1);
    const [model] = before.models;
    assert.equal(model?.name, MODEL);
    assert.equal(model?.platform, 'embedding-bag');
    assert.equal(model?.default_version, 2);
    assert.deepEqual(model?.signature.inputs, [{ name: 'text', dtype: 'string', shape: [] }]);
    assert.deepEqual(model?.versions, [
      { version: 1, state: 'START' },
      { version: 2, state: 'START' },
    ]);
    assert.equal(model?.workers, 0);

    await heartbeat(2);
    await f.redis.zadd(keys.workers(MODEL), Date.now() - 10 * f.settings.heartbeat_interval_ms, 'worker-gone');
    const after = (await f.app.inject({ url: '/v1/models' })).json<ModelList>();
    assert.equal(after.models[0]?.workers, 1, 'a stale heartbeat does not count');
    assert.deepEqual(after.models[0]?.versions, [
      { version: 1, state: 'START' },
      { version: 2, state: 'AVAILABLE' },
    ]);
  });

  it('GET /v1/models/:name answers TF Serving model_version_status: START until a worker heartbeats, then its state', async () => {
    const start = await f.app.inject({ url: `/v1/models/${MODEL}` });
    assert.equal(start.statusCode, 200);
    assert.deepEqual(start.json<ModelStatusReply>(), {
      model_version_status: [
        { version: '1', state: 'START', status: { error_code: 'OK', error_message: '' } },
        { version: '2', state: 'START', status: { error_code: 'OK', error_message: '' } },
      ],
    });
    await heartbeat(1);
    const one = (await f.app.inject({ url: `/v1/models/${MODEL}/versions/1` })).json<ModelStatusReply>();
    assert.deepEqual(one.model_version_status, [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }]);
    const stable = (await f.app.inject({ url: `/v1/models/${MODEL}/labels/stable` })).json<ModelStatusReply>();
    assert.deepEqual(stable.model_version_status, one.model_version_status, 'a label answers for its version');
    assert.equal((await f.app.inject({ url: `/v1/models/${MODEL}/labels/beta` })).statusCode, 404);
  });

  it('a failed load shows END with its error; LOADING shows while a worker loads', async () => {
    await heartbeat(2, 'LOADING');
    const loading = (await f.app.inject({ url: `/v1/models/${MODEL}/versions/2` })).json<ModelStatusReply>();
    assert.equal(loading.model_version_status[0]?.state, 'LOADING');
    await heartbeat(2, 'END', 'weights shard missing');
    const failed = (await f.app.inject({ url: `/v1/models/${MODEL}/versions/2` })).json<ModelStatusReply>();
    assert.deepEqual(failed.model_version_status, [{ version: '2', state: 'END', status: { error_code: 'UNKNOWN', error_message: 'weights shard missing' } }]);
  });

  it('GET /v1/models/:name/metadata derives TF Serving signature_def from config.signature', async () => {
    const res = await f.app.inject({ url: `/v1/models/${MODEL}/metadata` });
    assert.equal(res.statusCode, 200);
    const body = res.json<ModelMetadataReply>();
    assert.deepEqual(body.model_spec, { name: MODEL, signature_name: '', version: '2' });
    const def = body.metadata.signature_def.signature_def.serving_default;
    assert.equal(def?.method_name, 'tensorflow/serving/predict');
    assert.deepEqual(def?.inputs.text, { dtype: 'DT_STRING', tensor_shape: { dim: [{ size: '-1', name: '' }], unknown_rank: false }, name: 'text' });
    assert.deepEqual(def?.outputs.embedding?.tensor_shape.dim, [
      { size: '-1', name: '' },
      { size: '100', name: '' },
    ]);
    assert.equal(def?.outputs.embedding?.dtype, 'DT_FLOAT');
    const v1 = (await f.app.inject({ url: `/v1/models/${MODEL}/versions/1/metadata` })).json<ModelMetadataReply>();
    assert.equal(v1.model_spec.version, '1');
    const canary = (await f.app.inject({ url: `/v1/models/${MODEL}/labels/canary/metadata` })).json<ModelMetadataReply>();
    assert.equal(canary.model_spec.version, '2');
  });

  it('unknown model, version or label → 404 in TF Serving\'s error shape {"error": "<message>"}', async () => {
    for (const [url, message] of [
      ['/v1/models/nope', /model "nope" is not in the model repository/],
      ['/v1/models/nope/metadata', /model "nope" is not in the model repository/],
      [`/v1/models/${MODEL}/versions/9`, /no version 9/],
      [`/v1/models/${MODEL}/versions/9/metadata`, /does not serve version 9/],
      [`/v1/models/${MODEL}/labels/beta/metadata`, /no version label "beta"/],
    ] as const) {
      const res = await f.app.inject({ url });
      assert.equal(res.statusCode, 404, url);
      const body = res.json<Record<string, unknown>>();
      assert.deepEqual(Object.keys(body), ['error'], url);
      assert.match(String(body.error), message, url);
    }
    // GET /v1/models is inferline's own: its errors keep inferline's shape (a bad query, say).
    const list = await f.app.inject({ method: 'POST', url: '/v1/models' });
    assert.equal(list.json<{ error: { code: string } }>().error.code, 'not_found');
  });
});
