import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { outputToJson, parseJobRecord, type JobRecord } from '@inferline/shared';
import { jobViewJson, toJobView, toJson } from '../src/job-view.ts';

const raw = (fields: Record<string, string | Buffer>): Record<string, Buffer> =>
  Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v)]));
const record = (fields: Record<string, string | Buffer>): JobRecord => {
  const parsed = parseJobRecord(raw(fields));
  assert.ok(parsed);
  return parsed;
};

describe('parseJobRecord + toJobView', () => {
  it('an empty record is no job', () => {
    assert.equal(parseJobRecord({}), undefined);
  });

  it('maps a queued record, created_at as ISO 8601', () => {
    const view = toJobView(record({ id: 'm~j1', model: 'm', version: '2', status: 'queued', created_at: '1700000000000', entry: '1-0' }));
    assert.deepEqual(view, { id: 'm~j1', model: 'm', version: 2, status: 'queued', created_at: '2023-11-14T22:13:20.000Z' });
  });

  it('parses a succeeded output written by the worker (outputToJson) and adds timings', () => {
    const output = outputToJson({ embedding: new Float32Array([0.5, 0.25, 0.1]), label: 'x', ids: new Int32Array([3]) });
    const view = toJobView(
      record({ id: 'm~j2', model: 'm', version: '1', status: 'succeeded', created_at: '0', output, queue_ms: '5', inference_ms: '2', batch_size: '8', batch_id: 'w1-7' }),
    );
    assert.deepEqual(view.output, { embedding: [0.5, 0.25, 0.1], label: 'x', ids: [3] });
    assert.deepEqual(view.timings, { queue_ms: 5, inference_ms: 2, batch_size: 8, batch_id: 'w1-7' });
  });

  it('a failed record (dead-lettered: no timings) carries its error', () => {
    const view = toJobView(record({ id: 'm~j3', model: 'm', version: '1', status: 'failed', created_at: '0', error_code: 'poison', error_message: 'delivered 5 times' }));
    assert.deepEqual(view.error, { code: 'poison', message: 'delivered 5 times' });
    assert.equal(view.timings, undefined);
    assert.equal(view.output, undefined);
  });
});

describe('jobViewJson', () => {
  it('is the JSON of toJobView for every kind of record, the output spliced in as stored', () => {
    const records = [
      record({ id: 'm~q', model: 'm', version: '3', status: 'running', created_at: '1700000000000' }),
      record({ id: 'm~s', model: 'm', version: '1', status: 'succeeded', created_at: '5', output: outputToJson({ e: new Float32Array([1 / 3]), s: 'a "quoted" \\ text' }), queue_ms: '1.5', inference_ms: '0.25', batch_size: '4', batch_id: 'b-1' }),
      record({ id: 'm~f', model: 'm', version: '1', status: 'failed', created_at: '5', error_code: 'invalid_input', error_message: 'line\nbreak "q"', queue_ms: '1', inference_ms: '2', batch_size: '1', batch_id: 'b' }),
      record({ id: 'm~odd', model: 'm', version: '1', status: 'bogus', created_at: '0' }),
    ];
    for (const r of records) assert.deepEqual(JSON.parse(jobViewJson(r).toString()), JSON.parse(JSON.stringify(toJobView(r))));
    assert.equal(jobViewJson(records[0] as JobRecord).toString(), JSON.stringify(toJobView(records[0] as JobRecord)));
  });
});

describe('toJson', () => {
  it('turns bytes into {b64} and leaves plain values alone', () => {
    assert.deepEqual(toJson({ png: Buffer.from([1, 2, 3]), n: 1, s: 'a', list: [new Float64Array([1.5])] }), {
      png: { b64: 'AQID' },
      n: 1,
      s: 'a',
      list: [[1.5]],
    });
  });
});
