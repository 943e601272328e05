import { createHmac, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { Queue } from 'bullmq';
import ipaddr from 'ipaddr.js';
import type { Redis } from './redis.ts';
import { InferlineError } from './errors.ts';
import { BULLMQ_PREFIX, CALLBACKS_QUEUE } from './keys.ts';

/**
 * Callbacks (DESIGN.md section 8): when a job or group with a `callback_url` reaches a terminal state,
 * its terminal view (as `GET /v1/jobs/:id` or `GET /v1/groups/:id` shows it) is POSTed there as JSON,
 * signed, and retried with exponential backoff until it is answered 2xx.
 *
 * Signature header, after Stripe's webhook signature scheme:
 *
 *     Inferline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *
 * The timestamp is signed with the body, so a receiver that refuses old timestamps (say, older than
 * 5 minutes: {@link verifyCallbackSignature}) cannot be fed a replayed delivery. The secret is the
 * tenant's `callback_secret`, else the global `CALLBACK_SECRET`. `Inferline-Delivery` names the job or
 * group (`job:<id>` / `group:<id>`): delivery is at least once, so a receiver deduplicates on it.
 */

/** Header of the signature. */
export const SIGNATURE_HEADER = 'inferline-signature';
/** Header naming what a delivery is about (`job:<id>`, `group:<id>`): the receiver's deduplication key. */
export const DELIVERY_HEADER = 'inferline-delivery';

/** Data of a job on the BullMQ queue {@link CALLBACKS_QUEUE}: the job or group whose terminal view to deliver. */
export interface CallbackJobData {
  kind: 'job' | 'group';
  id: string;
}

/** The BullMQ queue `callbacks` on an existing connection (see createReduceQueue for the error listener). */
export function createCallbacksQueue(connection: Redis, onError: (error: Error) => void): Queue<CallbackJobData> {
  const queue = new Queue<CallbackJobData>(CALLBACKS_QUEUE, { connection, prefix: BULLMQ_PREFIX });
  queue.on('error', onError);
  return queue;
}

/** The hex HMAC-SHA256 of `<timestampS>.<body>` under `secret`. */
function signatureOf(secret: string, timestampS: number, body: Buffer | string): string {
  return createHmac('sha256', secret).update(`${timestampS}.`).update(body).digest('hex');
}

/**
 * The `Inferline-Signature` value of a body: `t=<timestampS>,v1=<hex>`.
 * @param timestampS unix time, seconds
 */
export function signCallback(secret: string, body: Buffer | string, timestampS: number): string {
  return `t=${timestampS},v1=${signatureOf(secret, timestampS, body)}`;
}

/**
 * Whether an `Inferline-Signature` header signs `body` under `secret`, with a timestamp within
 * `toleranceS` of `nowS` (either side). Any `v1=` element of the header may match (a sender rotating
 * its secret sends one per secret); the comparison is constant-time.
 */
export function verifyCallbackSignature(secret: string, header: string, body: Buffer | string, nowS: number, toleranceS = 300): boolean {
  const elements = header.split(',').map((part) => part.trim().split('='));
  const t = elements.find(([name]) => name === 't')?.[1];
  if (t === undefined || !/^\d{1,12}$/.test(t)) return false;
  const timestampS = Number(t);
  if (Math.abs(nowS - timestampS) > toleranceS) return false;
  const expected = Buffer.from(signatureOf(secret, timestampS, body), 'hex');
  let matched = false;
  for (const [name, value] of elements) {
    if (name !== 'v1' || value === undefined || !/^[0-9a-f]{64}$/.test(value)) continue;
    if (timingSafeEqual(Buffer.from(value, 'hex'), expected)) matched = true;
  }
  return matched;
}

/** Longest accepted callback_url, characters. */
export const MAX_CALLBACK_URL_LENGTH = 2048;

/**
 * Check a callback_url before it is stored, and again before each delivery (a name may resolve
 * elsewhere by then): an absolute `http:` or `https:` URL without credentials whose host resolves
 * (every address of it) to public unicast addresses only. Loopback, private (RFC 1918, fc00::/7),
 * link-local (169.254/16 with cloud metadata services, fe80::/10), carrier-grade NAT, multicast,
 * unspecified and reserved ranges are refused unless `allowPrivate` (ipaddr.js `range()` other than
 * `unicast`; IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry).
 * @returns the parsed URL.
 * @throws InferlineError `invalid_callback_url` (400) saying why.
 */
export async function checkCallbackUrl(text: string, allowPrivate: boolean): Promise<URL> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InferlineError('invalid_callback_url', 'callback_url: not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InferlineError('invalid_callback_url', `callback_url: scheme ${url.protocol} is not http: or https:`);
  if (url.username !== '' || url.password !== '') throw new InferlineError('invalid_callback_url', 'callback_url: credentials in the URL are not accepted');
  if (text.length > MAX_CALLBACK_URL_LENGTH) throw new InferlineError('invalid_callback_url', `callback_url: longer than ${MAX_CALLBACK_URL_LENGTH} characters`);
  if (allowPrivate) return url;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  try {
    addresses = ipaddr.isValid(host) ? [host] : (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address);
  } catch (error) {
    throw new InferlineError('invalid_callback_url', `callback_url: host ${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  for (const address of addresses) {
    let parsed = ipaddr.parse(address);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
    const range = parsed.range();
    if (range !== 'unicast') {
      throw new InferlineError('invalid_callback_url', `callback_url: host ${host} resolves to ${address} (${range}), not a public address; CALLBACK_ALLOW_PRIVATE=true accepts it`);
    }
  }
  return url;
}
