import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkCallbackUrl, signCallback, verifyCallbackSignature } from '../src/callbacks.ts';
import { InferlineError } from '../src/errors.ts';

const refused = (pattern: RegExp) => (error: unknown) => error instanceof InferlineError && error.code === 'invalid_callback_url' && pattern.test(error.message);

describe('callback signatures (Inferline-Signature: t=<unix>,v1=<hex HMAC-SHA256>)', () => {
  const secret = fc.string({ minLength: 16, maxLength: 64 });
  const body = fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes));
  const now = fc.integer({ min: 1_000_000_000, max: 4_000_000_000 });

  it('a signature verifies under its secret, body and a time within the tolerance', () => {
    fc.assert(
      fc.property(secret, body, now, fc.integer({ min: -300, max: 300 }), (s, b, t, skew) => verifyCallbackSignature(s, signCallback(s, b, t), b, t + skew, 300)),
    );
  });

  it('fails for another secret, a changed body, a stale timestamp, or a tampered signature', () => {
    fc.assert(
      fc.property(secret, secret, body, now, (s, other, b, t) => {
        fc.pre(s !== other);
        const header = signCallback(s, b, t);
        const tampered = header.replace(/v1=(.)/, (_m, c: string) => `v1=${c === '0' ? '1' : '0'}`);
        return (
          !verifyCallbackSignature(other, header, b, t) &&
          !verifyCallbackSignature(s, header, Buffer.concat([b, Buffer.from('x')]), t) &&
          !verifyCallbackSignature(s, header, b, t + 301, 300) &&
          !verifyCallbackSignature(s, tampered, b, t) &&
          !verifyCallbackSignature(s, header.replace(/t=\d+/, `t=${t + 1}`), b, t)
        );
      }),
    );
  });

  it('accepts any v1 element that matches (a sender rotating secrets sends two); garbage verifies nothing', () => {
    const header = signCallback('old-secret-0123456789', '{}', 1_700_000_000);
    const both = `${header},v1=${signCallback('new-secret-0123456789', '{}', 1_700_000_000).split('v1=')[1] ?? ''}`;
    assert.ok(verifyCallbackSignature('new-secret-0123456789', both, '{}', 1_700_000_000));
    assert.ok(verifyCallbackSignature('old-secret-0123456789', both, '{}', 1_700_000_000));
    fc.assert(fc.property(fc.string(), (garbage) => !verifyCallbackSignature('s', garbage, '{}', 1_700_000_000)));
  });
});

describe('callback_url checks', () => {
  it('refuses loopback, private, link-local, CGNAT, unspecified and IPv4-mapped private addresses; accepts public ones', async () => {
    for (const url of ['http://127.0.0.1/x', 'http://10.1.2.3/', 'http://192.168.0.1/', 'http://172.16.5.5/', 'http://169.254.169.254/latest/meta-data', 'http://100.64.0.1/', 'http://0.0.0.0/', 'http://[::1]/', 'http://[fe80::1]/', 'http://[fd00::1]/', 'http://[::ffff:127.0.0.1]/', 'http://localhost/']) {
      await assert.rejects(checkCallbackUrl(url, false), refused(/not a public address/), url);
    }
    for (const url of ['https://93.184.215.14/hook', 'http://[2606:4700::1111]/x']) assert.equal((await checkCallbackUrl(url, false)).href, url);
    assert.equal((await checkCallbackUrl('http://127.0.0.1:9/x', true)).port, '9', 'allowed with CALLBACK_ALLOW_PRIVATE');
  });

  it('refuses other schemes, relative URLs, credentials and unresolvable hosts', async () => {
    await assert.rejects(checkCallbackUrl('file:///etc/passwd', true), refused(/scheme file:/));
    await assert.rejects(checkCallbackUrl('/relative', true), refused(/not an absolute URL/));
    await assert.rejects(checkCallbackUrl('https://u:p@example.com/', true), refused(/credentials/));
    await assert.rejects(checkCallbackUrl('http://name.invalid/', false), refused(/does not resolve/));
  });
});
