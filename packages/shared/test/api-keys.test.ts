import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { apiKeysOf, bearerToken, hashApiKey, loadApiKeys, newApiKey, parseApiKeyEntries, tenantOfKey } from '../src/api-keys.ts';
import { InferlineError } from '../src/errors.ts';

const invalidConfig = (pattern: RegExp) => (error: unknown) => error instanceof InferlineError && error.code === 'invalid_config' && pattern.test(error.message);

describe('api keys', () => {
  it('a new key is il_ + 43 base64url characters (256 bits), each one different', () => {
    const made = new Set(Array.from({ length: 100 }, () => newApiKey()));
    assert.equal(made.size, 100);
    for (const key of made) assert.match(key, /^il_[A-Za-z0-9_-]{43}$/);
  });

  it('finds the tenant of every listed key and of no other string', () => {
    const keys = Array.from({ length: 5 }, () => newApiKey());
    const config = apiKeysOf(keys.map((key, i) => ({ tenant: `t${i % 2}`, key_sha256: hashApiKey(key) })));
    keys.forEach((key, i) => assert.equal(tenantOfKey(config, key)?.name, `t${i % 2}`));
    fc.assert(fc.property(fc.string(), (other) => keys.includes(other) || tenantOfKey(config, other) === undefined));
  });

  it('reads JSON lines (with comments) and a JSON array alike, from a file and the environment together', async () => {
    const [a, b] = [newApiKey(), newApiKey()];
    const dir = await mkdtemp(join(tmpdir(), 'inferline-keys-'));
    try {
      const file = join(dir, 'keys.jsonl');
      await writeFile(file, `# tenants\n${JSON.stringify({ tenant: 'acme', key_sha256: hashApiKey(a), max_queued: 10 })}\n\n`);
      const config = loadApiKeys({ api_keys_file: file, api_keys: JSON.stringify([{ tenant: 'beta', key_sha256: hashApiKey(b), rate_limit_rps: 5 }]) });
      assert.equal(config.enabled, true);
      assert.deepEqual(tenantOfKey(config, a), { name: 'acme', max_queued: 10 });
      assert.deepEqual(tenantOfKey(config, b), { name: 'beta', rate_limit_rps: 5 });
      assert.throws(() => loadApiKeys({ api_keys_file: join(dir, 'missing') }), invalidConfig(/API_KEYS_FILE .*missing/));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(loadApiKeys({}).enabled, false);
  });

  it('refuses a malformed entry naming it and its field, a key listed twice, and a tenant whose entries disagree', () => {
    assert.throws(() => parseApiKeyEntries('{"tenant":"a","key_sha256":"abc"}', 'API_KEYS'), invalidConfig(/API_KEYS: entry 1\/key_sha256/));
    assert.throws(() => parseApiKeyEntries('{"tenant":"a b","key_sha256":"' + hashApiKey('x') + '"}', 'API_KEYS'), invalidConfig(/entry 1\/tenant/));
    assert.throws(() => parseApiKeyEntries('{"tenant":"a","key_sha256":"' + hashApiKey('x') + '","key":"x"}', 'API_KEYS'), invalidConfig(/entry 1/));
    assert.throws(() => parseApiKeyEntries('not json', 'API_KEYS'), invalidConfig(/not a JSON array or JSON lines/));
    const hash = hashApiKey('k');
    assert.throws(() => apiKeysOf([{ tenant: 'a', key_sha256: hash }, { tenant: 'b', key_sha256: hash }]), invalidConfig(/listed twice/));
    assert.throws(
      () => apiKeysOf([{ tenant: 'a', key_sha256: hashApiKey('1'), max_queued: 1 }, { tenant: 'a', key_sha256: hashApiKey('2'), max_queued: 2 }]),
      invalidConfig(/tenant "a" has two different max_queued/),
    );
    assert.deepEqual(apiKeysOf([{ tenant: 'a', key_sha256: hashApiKey('1'), max_queued: 1 }, { tenant: 'a', key_sha256: hashApiKey('2') }]).tenants.get('a'), { name: 'a', max_queued: 1 });
  });

  it('reads the token of an Authorization: Bearer header (scheme case-insensitive), nothing of another scheme', () => {
    assert.equal(bearerToken('Bearer il_abc-_'), 'il_abc-_');
    assert.equal(bearerToken('bearer   tok=='), 'tok==');
    assert.equal(bearerToken('Basic dXNlcjpwdw=='), undefined);
    assert.equal(bearerToken('Bearer'), undefined);
    assert.equal(bearerToken(undefined), undefined);
    fc.assert(fc.property(fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,60}$/), (token) => bearerToken(`Bearer ${token}`) === token));
  });
});
