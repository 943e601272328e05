import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode } from '@inferline/shared';
import { toJobView, toJson } from '../src/job-view.ts';

const record = (fields: Record<string, string | Buffer>): Record<string, Buffer> =>
  Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(v)]));

describe('toJobView', () => {
  it('returns undefined for an empty record', () => {
    assert.equal(toJobView({}), undefined);
  });

  it('maps a queued record, created_at as ISO 8601', () => {
    const view = toJobView(record({ id: 'j1', model: 'm', version: '2', status: 'queued', created_at: '1700000000000', entry: '1-0' }));
    assert.deepEqual(view, { id: 'j1', model: 'm', version: 2, status: 'queued', created_at: '2023-11-14T22:13:20.000Z' });
  });

  it('decodes a succeeded output into plain number arrays and adds timings', () => {
    const view = toJobView(
      record({
        id: 'j2', model: 'm', version: '1', status: 'succeeded', created_at: '0',
        output: encode({ embedding: new Float32Array([0.5, 0.25]), label: 'x', ids: new Int32Array([3]) }),
        queue_ms: '5', inference_ms: '2', batch_size: '8', batch_id: 'w1-7',
      }),
    );
    assert.deepEqual(view?.output, { embedding: [0.5, 0.25], label: 'x', ids: [3] });
    assert.ok(Array.isArray(view?.output?.embedding));
    assert.deepEqual(view?.timings, { queue_ms: 5, inference_ms: 2, batch_size: 8, batch_id: 'w1-7' });
    assert.equal(JSON.stringify(view?.output), '{"embedding":[0.5,0.25],"label":"x","ids":[3]}');
  });

  it('a failed record (dead-lettered: no timings) carries its error', () => {
    const view = toJobView(record({ id: 'j3', model: 'm', version: '1', status: 'failed', created_at: '0', error_code: 'poison', error_message: 'delivered 5 times' }));
    assert.deepEqual(view?.error, { code: 'poison', message: 'delivered 5 times' });
    assert.equal(view?.timings, undefined);
    assert.equal(view?.output, undefined);
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
