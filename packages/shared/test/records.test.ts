import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEntry, parseJobRecord, settledRecord, type JobRecord } from '../src/protocol/records.ts';

const known: JobRecord = { id: 'm~a', model: 'm', version: 2, status: 'running', created_at: 1_700_000_000_000 };

describe('settledRecord (the detail of settle.lua terminal events)', () => {
  it('a success carries timings and the output bytes, and keeps what was known', () => {
    const record = settledRecord(known, 'succeeded', '1.500\t\t0.250\t8\tw-1-3\t{"embedding":[0.5,1]}');
    assert.deepEqual(record, {
      ...known,
      status: 'succeeded',
      timings: { queue_ms: 1.5, inference_ms: 0.25, batch_size: 8, batch_id: 'w-1-3' },
      output: Buffer.from('{"embedding":[0.5,1]}'),
    });
  });

  it('a failure splits code and message at the first tab only (messages may hold tabs)', () => {
    const record = settledRecord(known, 'failed', '1\t\t2\t1\tb\tinvalid_input\ttext\twith\ttabs');
    assert.deepEqual(record?.error, { code: 'invalid_input', message: 'text\twith\ttabs' });
    assert.equal(record?.output, undefined);
  });

  it('a job that waited for its version to load carries load_ms', () => {
    const record = settledRecord(known, 'succeeded', '900\t850.5\t2\t4\tw-1-1\t{}');
    assert.deepEqual(record?.timings, { queue_ms: 900, load_ms: 850.5, inference_ms: 2, batch_size: 4, batch_id: 'w-1-1' });
  });

  it('a detail given as received bytes gives the same record; the output is a copy, not a view of the message', () => {
    const message = Buffer.from('1.500\t\t0.250\t8\tw-1-3\t{"text":"é"}');
    const record = settledRecord(known, 'succeeded', message);
    assert.deepEqual(record, settledRecord(known, 'succeeded', message.toString()));
    message.fill(0);
    assert.equal(record?.output?.toString(), '{"text":"é"}');
    assert.deepEqual(settledRecord(known, 'failed', Buffer.from('1\t\t2\t1\tb\tinvalid_input\tné\ttab'))?.error, { code: 'invalid_input', message: 'né\ttab' });
  });

  it('a detail of another shape is not a settle event', () => {
    assert.equal(settledRecord(known, 'failed', 'poison'), undefined);
  });
});

describe('parseEntry and parseJobRecord', () => {
  const b = (text: string): Buffer => Buffer.from(text);
  it('an entry is a job or a member, exactly one, or nothing', () => {
    assert.deepEqual(parseEntry([b('5-1'), [b('job'), b('m~x'), b('input'), b('\xa1a')]]), { kind: 'job', entryId: '5-1', jobId: 'm~x', input: b('\xa1a'), level: 1 });
    assert.deepEqual(parseEntry([b('5-2'), [b('group'), b('g'), b('index'), b('3'), b('input'), b('i')]]), { kind: 'member', entryId: '5-2', groupId: 'g', index: 3, input: b('i'), level: 1 });
    assert.equal(parseEntry([b('5-3'), [b('group'), b('g'), b('index'), b('-1')]]), null);
    assert.equal(parseEntry([b('5-4'), [b('other'), b('x')]]), null);
  });

  it('a job hash reads into typed fields; an empty one is no job', () => {
    assert.equal(parseJobRecord({}), undefined);
    assert.deepEqual(parseJobRecord({ id: b('m~x'), model: b('m'), version: b('3'), status: b('queued'), created_at: b('42'), entry: b('1-0') }), {
      id: 'm~x', model: 'm', version: 3, status: 'queued', created_at: 42,
    });
  });
});
