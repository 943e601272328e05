import { Packr } from 'msgpackr';

/**
 * Binary codec for request inputs and job outputs stored in Redis (MessagePack, https://msgpack.org).
 * Typed arrays round-trip as typed arrays (`Float32Array` in, `Float32Array` out), so a `[100] float32`
 * embedding costs 400 bytes plus a few bytes of header, not a decimal string.
 */
const packr = new Packr({ useRecords: false, moreTypes: true });

/** Encode a value to MessagePack bytes. */
export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

/** Decode MessagePack bytes written by {@link encode}. Throws on malformed input. */
export function decode<T = unknown>(bytes: Buffer | Uint8Array): T {
  return packr.unpack(bytes) as T;
}
