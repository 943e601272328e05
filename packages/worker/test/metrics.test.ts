import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkerMetrics, serveMetrics } from '../src/metrics.ts';

/** The value of one sample line `name{labels} value` in Prometheus text. */
function sample(text: string, line: string): number {
  const found = text.split('\n').find((candidate) => candidate.startsWith(`${line} `));
  assert.ok(found, `no sample ${line} in:\n${text}`);
  return Number(found.slice(line.length + 1));
}

test('counts requests run and forward passes separately, so their ratio is the mean batch size', async () => {
  const metrics = new WorkerMetrics('wasm');
  const ok = { ok: true as const, output: {} };
  const failed = { ok: false as const, code: 'inference_failed' as const, message: 'x' };
  metrics.observeBatch('m', 1, [ok, ok, ok], [1, 2, 3], 4);
  metrics.observeBatch('m', 1, [ok, failed], [5, 6], 2);
  const text = await metrics.registry.metrics();
  assert.equal(sample(text, 'inferline_inference_count_total{model="m",version="1"}'), 5);
  assert.equal(sample(text, 'inferline_batch_executions_total{model="m",version="1"}'), 2);
  assert.equal(sample(text, 'inferline_requests_total{model="m",version="1",status="succeeded"}'), 4);
  assert.equal(sample(text, 'inferline_requests_total{model="m",version="1",status="inference_failed"}'), 1);
  assert.equal(sample(text, 'inferline_batch_size_sum{model="m",version="1"}'), 5);
  assert.equal(sample(text, 'inferline_queue_duration_seconds_count{model="m",version="1"}'), 5);
  assert.ok(Math.abs(sample(text, 'inferline_compute_duration_seconds_sum{model="m",version="1"}') - 0.006) < 1e-9);
  assert.equal(sample(text, 'inferline_backend_info{backend="wasm"}'), 1);
});

test('serves the registry on GET /metrics and 404 elsewhere', async () => {
  const metrics = new WorkerMetrics('cpu');
  const server = await serveMetrics(metrics.registry, 0, '127.0.0.1');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /inferline_backend_info\{backend="cpu"\} 1/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
  } finally {
    server.close();
  }
});
