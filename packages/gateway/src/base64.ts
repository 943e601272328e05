import { InferlineError } from '@inferline/shared';

/**
 * Standard base64 (RFC 4648 section 4): groups of 4 characters, the last group of 2 or 3 characters
 * with its `=` padding optional (TF Serving's clients send it padded; some encoders drop it). A
 * length of 4n + 1, a character outside the alphabet, or padding in the middle is invalid.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** Decodes UTF-8 strictly: an invalid sequence throws instead of becoming U+FFFD. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decode `{"b64": ...}` bytes strictly (whitespace, as MIME line breaks, is ignored).
 * @param field where the value came from, for the error (`input.b64`, `instances[3].b64`)
 * @throws InferlineError `invalid_input` when `text` is not standard base64.
 */
export function decodeBase64(text: string, field: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (!BASE64.test(compact)) throw new InferlineError('invalid_input', `field "${field}": not standard base64 (RFC 4648)`);
  return Buffer.from(compact, 'base64');
}

/**
 * Decode `{"b64": ...}` that stands for text: strict base64, then strict UTF-8.
 * @throws InferlineError `invalid_input` when it is not standard base64 or not valid UTF-8.
 */
export function decodeBase64Text(text: string, field: string): string {
  const bytes = decodeBase64(text, field);
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new InferlineError('invalid_input', `field "${field}": the decoded bytes are not valid UTF-8 text`);
  }
}
