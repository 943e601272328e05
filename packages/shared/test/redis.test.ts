import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cluster, Redis } from 'ioredis';
import { connectRedis, isCluster, keySlot, parseClusterUrl } from '../src/redis.ts';
import { loadSettings } from '../src/settings.ts';

describe('Redis URLs: one server or a cluster', () => {
  it('reads redis+cluster:// seed nodes, credentials and TLS', () => {
    assert.deepEqual(parseClusterUrl('redis+cluster://10.0.0.1:7000,10.0.0.2:7001'), {
      nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 7001 }],
      tls: false,
    });
    assert.deepEqual(parseClusterUrl('rediss+cluster://app:s%40cret@redis-a:6380,[::1]:6381/'), {
      nodes: [{ host: 'redis-a', port: 6380 }, { host: '::1', port: 6381 }],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
    assert.equal(parseClusterUrl('redis://127.0.0.1:6379'), undefined);
    assert.throws(() => parseClusterUrl('redis+cluster://no-port'), /host:port/);
  });

  it('connectRedis gives a Cluster for a cluster URL and a Redis otherwise, scripts defined on both', () => {
    const cluster = connectRedis('redis+cluster://127.0.0.1:1,127.0.0.1:2', { name: 't', lazyConnect: true });
    const single = connectRedis('redis://127.0.0.1:1', { name: 't', lazyConnect: true });
    try {
      assert.ok(cluster instanceof Cluster && isCluster(cluster));
      assert.ok(single instanceof Redis && !isCluster(single));
      for (const client of [cluster, single]) assert.equal(typeof (client as unknown as Record<string, unknown>).il_enqueue, 'function');
    } finally {
      cluster.disconnect();
      single.disconnect();
    }
  });

  it('REDIS_CLUSTER_NODES becomes a redis+cluster:// REDIS_URL; both at once is refused', () => {
    assert.equal(loadSettings({ REDIS_CLUSTER_NODES: 'a:7000,b:7001' }).redis_url, 'redis+cluster://a:7000,b:7001');
    assert.throws(() => loadSettings({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'redis://a:6379' }), /set one, not both/);
    assert.throws(() => loadSettings({ REDIS_CLUSTER_NODES: 'a' }), /REDIS_CLUSTER_NODES/);
  });

  it('keySlot follows the hash tag (cluster spec): a shard\'s keys share a slot', () => {
    assert.equal(keySlot('il:{m:glove-embed~1}:v1:requests'), keySlot('il:{m:glove-embed~1}:job:x'));
    assert.equal(keySlot('123456789'), 12739);
  });
});
