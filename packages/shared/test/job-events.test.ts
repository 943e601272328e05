import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { jobEventsMessage, jobEventsOf } from '../src/protocol/job-events.ts';

describe('job event messages', () => {
  test('jobEventsOf reads back every event jobEventsMessage puts in a message, any bytes in the detail; each tail is where it says', () => {
    const event = fc.record({ head: fc.stringMatching(/^[a-z0-9~-]{1,30}\t(succeeded|failed|running)\t?$/), tail: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 20 }), (events) => {
        const parts = events.flatMap(({ head, tail }) => [Buffer.from(head), Buffer.from(tail)]);
        const { message, eventOffsets, tailOffsets } = jobEventsMessage(parts);
        const read = jobEventsOf(message).map((bytes) => Buffer.from(bytes));
        assert.deepEqual(read, events.map(({ head, tail }) => Buffer.concat([Buffer.from(head), Buffer.from(tail)])));
        assert.deepEqual(
          events.map(({ tail }, i) => Buffer.from(message.subarray(tailOffsets[i], (tailOffsets[i] ?? 0) + tail.length))),
          events.map(({ tail }) => Buffer.from(tail)),
        );
        assert.deepEqual(
          events.map(({ head, tail }, i) => Buffer.from(message.subarray(eventOffsets[i], (eventOffsets[i] ?? 0) + Buffer.byteLength(head) + tail.length))),
          read,
        );
      }),
    );
  });

  test('one event is sent as it is, more as a batch message of byte lengths', () => {
    assert.deepEqual(jobEventsMessage([Buffer.from('a~1\tsucceeded\t'), Buffer.from('[1]')]), { message: Buffer.from('a~1\tsucceeded\t[1]'), eventOffsets: [0], tailOffsets: [14] });
    const two = jobEventsMessage([Buffer.from('a\tfailed\t'), Buffer.from('é'), Buffer.from('b\trunning'), Buffer.alloc(0)]);
    assert.equal(two.message.toString(), '*11:a\tfailed\té9:b\trunning');
    assert.deepEqual([two.eventOffsets, two.tailOffsets], [[4, 17], [13, 26]]);
    assert.equal(jobEventsMessage([]).message.length, 0);
  });
});
