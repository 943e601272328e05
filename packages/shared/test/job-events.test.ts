import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { jobEventsMessage, jobEventsOf } from '../src/protocol/job-events.ts';

describe('job event messages', () => {
  test('jobEventsOf reads back every event jobEventsMessage puts in a message, any bytes in the detail', () => {
    const event = fc.record({ head: fc.stringMatching(/^[a-z0-9~-]{1,30}\t(succeeded|failed|running)\t?$/), tail: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 20 }), (events) => {
        const parts = events.flatMap(({ head, tail }) => [Buffer.from(head), Buffer.from(tail)]);
        const read = jobEventsOf(jobEventsMessage(parts)).map((bytes) => Buffer.from(bytes));
        assert.deepEqual(read, events.map(({ head, tail }) => Buffer.concat([Buffer.from(head), Buffer.from(tail)])));
      }),
    );
  });

  test('one event is sent as it is, more as a batch message of byte lengths', () => {
    assert.equal(jobEventsMessage([Buffer.from('a~1\tsucceeded\t'), Buffer.from('[1]')]).toString(), 'a~1\tsucceeded\t[1]');
    assert.equal(jobEventsMessage([Buffer.from('a\tfailed\t'), Buffer.from('é'), Buffer.from('b\trunning'), Buffer.alloc(0)]).toString(), '*11:a\tfailed\té9:b\trunning');
    assert.equal(jobEventsMessage([]).length, 0);
  });
});
