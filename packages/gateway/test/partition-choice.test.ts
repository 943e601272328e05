import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idempotencyPartition, shardName } from '@inferline/shared';
import { chooseShard } from '../src/partition-choice.ts';

describe('chooseShard: the partition one call goes to', () => {
  it('a model with one partition always gets its own name (the keys it always had)', () => {
    for (let i = 0; i < 5; i++) assert.equal(chooseShard({ name: 'solo', partitions: 1 }), 'solo');
    assert.equal(chooseShard({ name: 'solo', partitions: 1 }, { tenant: 't', key: 'k' }), 'solo');
  });

  it('calls without an Idempotency-Key take the partitions in turn', () => {
    const config = { name: 'busy', partitions: 3 };
    const shards = Array.from({ length: 6 }, () => chooseShard(config));
    assert.deepEqual(shards, ['busy', 'busy~1', 'busy~2', 'busy', 'busy~1', 'busy~2']);
  });

  it('a call with an Idempotency-Key goes where its tenant and key hash to, every time', () => {
    const config = { name: 'keyed', partitions: 4 };
    for (const key of ['order-1', 'order-2', 'x']) {
      const expected = shardName('keyed', idempotencyPartition('acme', key, 4));
      for (let i = 0; i < 3; i++) assert.equal(chooseShard(config, { tenant: 'acme', key }), expected);
    }
  });
});
