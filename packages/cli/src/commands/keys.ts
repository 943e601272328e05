import type { Writable } from 'node:stream';
import { hashApiKey, newApiKey, newCallbackSecret, parseApiKeyEntries, type ApiKeyEntry } from '@inferline/shared';

/** Options of `inferline keys create`. */
export interface KeysCreateOptions {
  tenant: string;
  /** The tenant's `rate_limit_rps` (requests per second); absent = no limit. */
  rateLimitRps?: number;
  /** The tenant's `max_queued` (requests waiting or running per model); absent = no cap. */
  maxQueued?: number;
  /** Also make a `callback_secret` for the tenant's callbacks. */
  callbackSecret?: boolean;
  stdout: Writable;
}

/**
 * `inferline keys create --tenant T`: make a new random API key (256 bits, api-keys.ts), print it once
 * (nothing stores it), and the JSON line to add to `API_KEYS_FILE` (the key's SHA-256, the tenant, the
 * quotas given). With `--callback-secret` the line carries a fresh `callback_secret`: the receiver of
 * the tenant's callbacks verifies their signature with it.
 * @returns the entry printed.
 * @throws InferlineError `invalid_config` for a tenant name outside `[A-Za-z0-9_.-]{1,64}`.
 */
export function createKey(options: KeysCreateOptions): ApiKeyEntry {
  const key = newApiKey();
  const entry: ApiKeyEntry = {
    tenant: options.tenant,
    key_sha256: hashApiKey(key),
    ...(options.rateLimitRps === undefined ? {} : { rate_limit_rps: options.rateLimitRps }),
    ...(options.maxQueued === undefined ? {} : { max_queued: options.maxQueued }),
    ...(options.callbackSecret ? { callback_secret: newCallbackSecret() } : {}),
  };
  // The entry must load as the gateway will load it.
  parseApiKeyEntries(JSON.stringify(entry), 'the new entry');
  options.stdout.write(
    `API key of tenant "${entry.tenant}" (printed once, not stored anywhere: keep it now):\n${key}\n\n` +
      `Add this line to API_KEYS_FILE (JSON lines) and restart the gateway:\n${JSON.stringify(entry)}\n`,
  );
  return entry;
}
