import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { InferlineError } from './errors.ts';

/**
 * API keys and tenants. A key is presented as `Authorization: Bearer <key>` (RFC 6750 section 2.1) and
 * stored at rest only as the hex SHA-256 of its text. A key is 256 random bits
 * ({@link newApiKey}): a fast hash is enough, since nobody can search 2^256 candidates for a preimage;
 * slow hashes (bcrypt, scrypt, Argon2) exist to protect low-entropy passwords from such a search, and
 * would cost milliseconds of CPU on every request here for no gain.
 *
 * Every key belongs to one tenant; jobs and groups belong to the tenant of the key that created them.
 * Quotas are per tenant: when several entries name one tenant, they must not disagree on a quota or
 * on the callback secret (an entry may leave a field out).
 */

/** One entry of `API_KEYS_FILE` / `API_KEYS`. */
export const ApiKeyEntry = Type.Object(
  {
    /** Tenant name: `[A-Za-z0-9_.-]`, 1..64 characters. */
    tenant: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
    /** Lower-case hex SHA-256 of the key's text (`inferline keys create` prints it). */
    key_sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** Requests per second the tenant may send to the HTTP gateway (each gateway-wide, counted in Redis); absent = no limit. */
    rate_limit_rps: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Requests of the tenant that may wait or run at once in one model's queue (jobs and group members); absent = no cap. */
    max_queued: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Secret of the HMAC-SHA256 signature of the tenant's callbacks; absent = `CALLBACK_SECRET`. */
    callback_secret: Type.Optional(Type.String({ minLength: 16 })),
  },
  { additionalProperties: false },
);
export type ApiKeyEntry = Static<typeof ApiKeyEntry>;

/** What is known of one tenant: its quotas and callback secret (from its entries). */
export interface Tenant {
  name: string;
  rate_limit_rps?: number;
  max_queued?: number;
  callback_secret?: string;
}

/** The configured keys; `enabled` false = no key configured, the gateway is open. */
export interface ApiKeys {
  enabled: boolean;
  tenants: ReadonlyMap<string, Tenant>;
  /** The key hashes, as bytes, each with its tenant. */
  entries: readonly { hash: Buffer; tenant: string }[];
}

/** Prefix of every key {@link newApiKey} makes: tells a leaked secret apart in logs and scanners. */
export const API_KEY_PREFIX = 'il_';

/** A fresh key: `il_` + 32 random bytes, base64url (43 characters). */
export function newApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** A fresh callback secret: 32 random bytes, base64url. */
export function newCallbackSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Lower-case hex SHA-256 of a key's UTF-8 text (what an entry stores as `key_sha256`). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Parse the entries of a keys file or `API_KEYS`: a JSON array of entries, or JSON lines (one entry
 * per non-empty line, `#` lines are comments).
 * @param source names the source in errors (`API_KEYS_FILE <path>`, `API_KEYS`)
 * @throws InferlineError `invalid_config` naming the source, the entry and the field.
 */
export function parseApiKeyEntries(text: string, source: string): ApiKeyEntry[] {
  const trimmed = text.trim();
  let values: unknown[];
  try {
    values = trimmed.startsWith('[')
      ? (JSON.parse(trimmed) as unknown[])
      : trimmed.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#')).map((line) => JSON.parse(line) as unknown);
  } catch (error) {
    throw new InferlineError('invalid_config', `${source}: not a JSON array or JSON lines: ${(error as Error).message}`);
  }
  return values.map((value, i) => {
    const first = Value.Errors(ApiKeyEntry, value).First();
    if (first) throw new InferlineError('invalid_config', `${source}: entry ${i + 1}${first.path || ''}: ${first.message}`);
    return value as ApiKeyEntry;
  });
}

/**
 * Load the keys of `api_keys_file` and `api_keys` (both may be set; their entries add up).
 * @throws InferlineError `invalid_config` on an unreadable file, a malformed entry, a key hash listed
 *   twice, or two entries of one tenant that disagree on a quota or its callback secret.
 */
export function loadApiKeys(settings: { api_keys_file?: string | undefined; api_keys?: string | undefined }): ApiKeys {
  const entries: ApiKeyEntry[] = [];
  if (settings.api_keys_file) {
    let text: string;
    try {
      text = readFileSync(settings.api_keys_file, 'utf8');
    } catch (error) {
      throw new InferlineError('invalid_config', `API_KEYS_FILE ${settings.api_keys_file}: ${(error as Error).message}`);
    }
    entries.push(...parseApiKeyEntries(text, `API_KEYS_FILE ${settings.api_keys_file}`));
  }
  if (settings.api_keys) entries.push(...parseApiKeyEntries(settings.api_keys, 'API_KEYS'));
  return apiKeysOf(entries);
}

/** The {@link ApiKeys} of a list of entries. @throws InferlineError as {@link loadApiKeys}. */
export function apiKeysOf(entries: readonly ApiKeyEntry[]): ApiKeys {
  const tenants = new Map<string, Tenant>();
  const seen = new Set<string>();
  for (const entry of entries) {
    if (seen.has(entry.key_sha256)) throw new InferlineError('invalid_config', `API keys: key_sha256 ${entry.key_sha256.slice(0, 12)}... is listed twice`);
    seen.add(entry.key_sha256);
    const tenant = tenants.get(entry.tenant) ?? { name: entry.tenant };
    for (const field of ['rate_limit_rps', 'max_queued', 'callback_secret'] as const) {
      const value = entry[field];
      if (value === undefined) continue;
      if (tenant[field] !== undefined && tenant[field] !== value) throw new InferlineError('invalid_config', `API keys: tenant "${entry.tenant}" has two different ${field} values`);
      (tenant as unknown as Record<string, unknown>)[field] = value;
    }
    tenants.set(entry.tenant, tenant);
  }
  return { enabled: entries.length > 0, tenants, entries: entries.map((entry) => ({ hash: Buffer.from(entry.key_sha256, 'hex'), tenant: entry.tenant })) };
}

/**
 * The tenant of a presented key, or undefined when no entry matches. The key's hash is compared with
 * every entry's in constant time (`crypto.timingSafeEqual`, no early exit), so the time taken tells
 * nothing about which entry, or which bytes, came close.
 */
export function tenantOfKey(keys: ApiKeys, key: string): Tenant | undefined {
  const hash = createHash('sha256').update(key, 'utf8').digest();
  let found: string | undefined;
  for (const entry of keys.entries) {
    if (timingSafeEqual(entry.hash, hash)) found = entry.tenant;
  }
  return found === undefined ? undefined : keys.tenants.get(found);
}

/**
 * The token of an `Authorization: Bearer <token>` header (RFC 6750 section 2.1; the scheme is
 * case-insensitive, RFC 7235 section 2.1), or undefined when the header is absent or of another scheme.
 */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const text = Array.isArray(header) ? header[0] : header;
  const match = text === undefined ? null : /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(text);
  return match?.[1];
}
