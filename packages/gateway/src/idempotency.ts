import { createHash } from 'node:crypto';
import stringify from 'safe-stable-stringify';
import { InferlineError } from '@inferline/shared';

/**
 * The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header, section 2): a
 * Structured Field string (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, RFC 8941 section 3.3.3); a bare
 * token is taken as it is too, as most clients send one. On `POST /v1/jobs` and `POST /v1/groups` a
 * retry with the same key (per tenant, per model) and the same body answers the first request's
 * job(s) or group; with another body it is refused 422 `idempotency_key_reused` (section 2.7).
 * The key is remembered the model's `result_ttl_s` from the first request.
 */

/** Longest accepted key, characters. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/**
 * The key of an `Idempotency-Key` header, or undefined when absent.
 * @throws InferlineError `invalid_input` for an empty key, a longer one than
 *   {@link MAX_IDEMPOTENCY_KEY_LENGTH}, or one with characters outside printable ASCII.
 */
export function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const text = (Array.isArray(header) ? header.join(',') : header).trim();
  const key = text.length >= 2 && text.startsWith('"') && text.endsWith('"') ? text.slice(1, -1).replace(/\\(["\\])/g, '$1') : text;
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x20-\x7e]+$/.test(key)) {
    throw new InferlineError('invalid_input', `Idempotency-Key: 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters expected`);
  }
  return key;
}

/**
 * The fingerprint of a request's content (draft section 2.4): hex SHA-256 of the parsed body as
 * canonical JSON (object keys sorted, `safe-stable-stringify`), prefixed by the route, so the same
 * content sent with other whitespace or key order is the same request.
 */
export function requestFingerprint(route: string, body: unknown): string {
  return createHash('sha256').update(route).update('\n').update(stringify(body) ?? '').digest('hex');
}
