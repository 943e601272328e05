import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectRedis, JOB_EVENTS_CHANNEL, type Redis } from '@inferline/shared';
import { startTestRedis, type TestRedis } from '../../../test/harness/redis.ts';
import { JobEvents } from '../src/job-events.ts';
import { silentLogger } from './fixture.ts';

describe('JobEvents', () => {
  let server: TestRedis;
  let publisher: Redis;
  let events: JobEvents;
  before(async () => {
    server = await startTestRedis();
    publisher = connectRedis(server.url, { name: 'publisher' });
    events = new JobEvents(connectRedis(server.url, { name: 'events-under-test' }), silentLogger);
    await events.ready();
  });
  after(async () => {
    await events.close();
    publisher.disconnect();
    await server.stop();
  });

  /** Publish and wait until Redis delivered it to every subscriber. */
  const publish = async (message: string): Promise<void> => {
    assert.equal(await publisher.publish(JOB_EVENTS_CHANNEL, message), 1);
  };

  it('buffers an event that arrives between watch() and next(): no lost wake-up', async () => {
    const watch = events.watch('job-a');
    await publish('job-a\tsucceeded');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(await watch.next(1_000), { jobId: 'job-a', status: 'succeeded' });
    watch.close();
  });

  it('wakes a pending next() with the event of its job only, ignoring other jobs and malformed messages', async () => {
    const watch = events.watch(['job-b', 'job-c']);
    const next = watch.next(2_000);
    await publish('job-z\tsucceeded');
    await publish('no tab here');
    await publish('job-c\trunning');
    assert.deepEqual(await next, { jobId: 'job-c', status: 'running' });
    watch.close();
  });

  it('reads a batch message (one PUBLISH per script call): every event of it, details as bytes', async () => {
    const watch = events.watch(['job-f', 'job-g']);
    const other = 'job-x\tsucceeded\t1\t\t2\t3\tb\t{}';
    const running = 'job-f\trunning';
    const failed = 'job-g\tfailed\t1\t\t2\t2\tb\tinvalid_input\tline\nbreak, tab\tand é';
    await publish(`*${[other, running, failed].map((event) => `${Buffer.byteLength(event)}:${event}`).join('')}`);
    assert.deepEqual(await watch.next(1_000), { jobId: 'job-f', status: 'running' });
    assert.deepEqual(await watch.next(1_000), { jobId: 'job-g', status: 'failed', detail: Buffer.from('1\t\t2\t2\tb\tinvalid_input\tline\nbreak, tab\tand é') });
    // A malformed batch (a length past its end) is dropped from there on; the watch keeps working.
    await publish('*999:job-f\tsucceeded');
    await publish('job-f\tsucceeded');
    assert.deepEqual(await watch.next(1_000), { jobId: 'job-f', status: 'succeeded' });
    watch.close();
  });

  it('a terminalOnly watch skips running and is woken by the terminal event; a plain watch of the same job sees both', async () => {
    const waiter = events.watch('job-t', { terminalOnly: true });
    const stream = events.watch('job-t');
    const next = waiter.next(2_000);
    await publish('*13:job-t\trunning15:job-t\tsucceeded');
    assert.deepEqual(await next, { jobId: 'job-t', status: 'succeeded' });
    assert.deepEqual(await waiter.next(30), { timeout: true }, 'running was not buffered either');
    assert.deepEqual(await stream.next(1_000), { jobId: 'job-t', status: 'running' });
    assert.deepEqual(await stream.next(1_000), { jobId: 'job-t', status: 'succeeded' });
    waiter.close();
    stream.close();
  });

  it('answers timeout when nothing arrives', async () => {
    const watch = events.watch('job-d');
    assert.deepEqual(await watch.next(30), { timeout: true });
    watch.close();
  });

  it('answers closed and detaches on abort or close', async () => {
    const watch = events.watch('job-e');
    const controller = new AbortController();
    const next = watch.next(5_000, controller.signal);
    assert.equal(events.watchedJobs, 1);
    controller.abort();
    assert.deepEqual(await next, { closed: true });
    assert.equal(events.watchedJobs, 0);

    const other = events.watch('job-f');
    const pending = other.next(5_000);
    other.close();
    assert.deepEqual(await pending, { closed: true });
    assert.equal(events.watchedJobs, 0);
  });

  it('two watches of the same job both wake', async () => {
    const one = events.watch('job-g');
    const two = events.watch('job-g');
    const both = Promise.all([one.next(2_000), two.next(2_000)]);
    await publish('job-g\tfailed');
    assert.deepEqual(await both, [
      { jobId: 'job-g', status: 'failed' },
      { jobId: 'job-g', status: 'failed' },
    ]);
    one.close();
    assert.equal(events.watchedJobs, 1);
    two.close();
    assert.equal(events.watchedJobs, 0);
  });

  it('after the subscriber connection is killed it re-subscribes and tells watches to re-read', async () => {
    const watch = events.watch('job-h');
    const clients = await publisher.client('LIST');
    const id = /id=(\d+) [^\n]*name=events-under-test/.exec(String(clients))?.[1];
    assert.ok(id, 'subscriber connection found');
    await publisher.client('KILL', 'ID', id);
    assert.deepEqual(await watch.next(5_000), { resync: true });
    assert.ok(events.subscribed);
    const next = watch.next(2_000);
    await publish('job-h\tsucceeded');
    assert.deepEqual(await next, { jobId: 'job-h', status: 'succeeded' });
    watch.close();
  });

  it('close() closes every watch and rejects nothing afterwards', async () => {
    const local = new JobEvents(connectRedis(server.url, { name: 'short-lived' }), silentLogger);
    await local.ready();
    const watch = local.watch('job-i');
    const next = watch.next(5_000);
    await local.close();
    assert.deepEqual(await next, { closed: true });
    assert.equal(local.watchedJobs, 0);
    assert.deepEqual(await local.watch('job-j').next(10), { closed: true });
  });
});
