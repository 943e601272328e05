import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { apiKeysOf, parseApiKeyEntries, tenantOfKey } from '@inferline/shared';
import { createKey } from '../src/commands/keys.ts';

/** Run `keys create` and answer what it printed. */
function run(options: Omit<Parameters<typeof createKey>[0], 'stdout'>): string {
  const stdout = new PassThrough();
  createKey({ ...options, stdout });
  return String(stdout.read());
}

describe('inferline keys create', () => {
  it('prints a new key once and a line that, added to API_KEYS_FILE, makes the key authenticate as the tenant', () => {
    const text = run({ tenant: 'acme', maxQueued: 50, rateLimitRps: 20, callbackSecret: true });
    const key = /^(il_[A-Za-z0-9_-]{43})$/m.exec(text)?.[1];
    assert.ok(key, text);
    const line = text.trim().split('\n').at(-1) ?? '';
    const entries = parseApiKeyEntries(line, 'the printed line');
    assert.equal(entries.length, 1);
    assert.ok(!line.includes(key), 'the line holds the key\'s hash, not the key');
    const tenant = tenantOfKey(apiKeysOf(entries), key);
    assert.equal(tenant?.name, 'acme');
    assert.equal(tenant.max_queued, 50);
    assert.equal(tenant.rate_limit_rps, 20);
    assert.ok((tenant.callback_secret?.length ?? 0) >= 32);
    assert.notEqual(/^(il_\S+)$/m.exec(run({ tenant: 'acme' }))?.[1], key, 'each run makes another key');
  });

  it('refuses a tenant name the gateway would not load', () => {
    assert.throws(() => run({ tenant: 'two words' }), /tenant/);
  });
});
