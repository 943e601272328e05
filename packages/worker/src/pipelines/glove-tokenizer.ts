import { readFile } from 'node:fs/promises';
import { InferlineError } from '@inferline/shared/errors';

/**
 * The `glove-tokenizer` preprocessing of text models (config `preprocess.type`): lower-case, split into
 * words (letters/digits, with one `'suffix` kept attached: `don't`, `whale's`) and single punctuation
 * characters, the way GloVe's training corpus was tokenized closely enough for lookup
 * (https://nlp.stanford.edu/projects/glove/). Tokens map to table rows through the version's vocab file.
 */

/** Default `preprocess.max_tokens`: tokens kept per text, the rest ignored. */
export const DEFAULT_MAX_TOKENS = 256;

/** A word (`[a-z0-9]+`, optionally `'` + letters) or any single non-space, non-word character. */
const TOKEN = /[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]/g;

/**
 * Split a text into at most `maxTokens` tokens: exactly
 * `text.toLowerCase().match(/[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]/g) ?? []`, first `maxTokens` kept
 * (scanning stops there, so a long text costs no more than its first tokens).
 * Example: `"The whale's jaw, 1851!"` → `["the", "whale's", "jaw", ",", "1851", "!"]`.
 */
export function tokenize(text: string, maxTokens = DEFAULT_MAX_TOKENS): string[] {
  const lower = text.toLowerCase();
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (tokens.length < maxTokens) {
    const match = TOKEN.exec(lower);
    if (match === null) break;
    tokens.push(match[0]);
  }
  return tokens;
}

/** Token → table row, from a vocab file (line n = row n). */
export type Vocabulary = ReadonlyMap<string, number>;

/**
 * Parse a vocab file's text: one token per line, line n (from 0) = row n; a final newline is optional.
 * @throws InferlineError `invalid_config` when a token is empty or repeated (the row would be ambiguous).
 */
export function parseVocabulary(text: string, source = 'vocab'): Vocabulary {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const vocab = new Map<string, number>();
  for (const [row, token] of lines.entries()) {
    if (token === '' || vocab.has(token)) {
      throw new InferlineError('invalid_config', `${source}: line ${row + 1}: token ${JSON.stringify(token)} is empty or repeated`);
    }
    vocab.set(token, row);
  }
  return vocab;
}

/**
 * Read and parse a vocab file (see {@link parseVocabulary}).
 * @throws InferlineError `invalid_config` when it cannot be read or is malformed.
 */
export async function loadVocabulary(path: string): Promise<Vocabulary> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InferlineError('invalid_config', `${path}: cannot read: ${(error as Error).message}`);
  }
  return parseVocabulary(text, path);
}

/** FNV-1a (32 bits) offset basis and prime (http://www.isthe.com/chongo/tech/comp/fnv/). */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * A vocabulary as an open-addressing hash table over its tokens' UTF-16 code units (FNV-1a, linear
 * probing): a token is looked up from a range of a text, without cutting it out as a string and
 * without V8 hashing a fresh string per token.
 */
class VocabularyIndex {
  /** Every token's code units, one after the other; token `row` is `units[starts[row], starts[row + 1])`. */
  readonly #units: Uint16Array;
  readonly #starts: Int32Array;
  /** Slot → row + 1; 0 = empty. Twice the token count at least, a power of two. */
  readonly #slots: Int32Array;
  readonly #mask: number;

  /** @throws InferlineError `invalid_config` when a row is not in 0..size-1 (parseVocabulary never gives one). */
  constructor(vocab: Vocabulary) {
    const byRow = new Array<string>(vocab.size);
    let total = 0;
    for (const [token, row] of vocab) {
      if (!Number.isInteger(row) || row < 0 || row >= vocab.size) throw new InferlineError('invalid_config', `vocabulary row ${row} of ${JSON.stringify(token)} is not in 0..${vocab.size - 1}`);
      byRow[row] = token;
      total += token.length;
    }
    this.#starts = new Int32Array(vocab.size + 1);
    this.#units = new Uint16Array(total);
    let at = 0;
    for (let row = 0; row < byRow.length; row++) {
      const token = byRow[row] ?? '';
      this.#starts[row] = at;
      for (let i = 0; i < token.length; i++) this.#units[at++] = token.charCodeAt(i);
    }
    this.#starts[byRow.length] = at;
    let size = 1;
    while (size < vocab.size * 2) size *= 2;
    this.#slots = new Int32Array(size);
    this.#mask = size - 1;
    for (let row = 0; row < byRow.length; row++) {
      const token = byRow[row] ?? '';
      let slot = hashRange(token, 0, token.length) & this.#mask;
      while (this.#slots[slot] !== 0) slot = (slot + 1) & this.#mask;
      this.#slots[slot] = row + 1;
    }
  }

  /** The row of `text[start, end)`, or -1 when it is not a token of the vocabulary. */
  rowOf(text: string, start: number, end: number): number {
    const units = this.#units;
    const starts = this.#starts;
    const length = end - start;
    for (let slot = hashRange(text, start, end) & this.#mask; ; slot = (slot + 1) & this.#mask) {
      const entry = this.#slots[slot] as number;
      if (entry === 0) return -1;
      const row = entry - 1;
      const from = starts[row] as number;
      if ((starts[entry] as number) - from !== length) continue;
      let i = 0;
      while (i < length && units[from + i] === text.charCodeAt(start + i)) i++;
      if (i === length) return row;
    }
  }
}

/** FNV-1a of the code units `text[start, end)`, as an unsigned 32-bit integer. */
function hashRange(text: string, start: number, end: number): number {
  let hash = FNV_OFFSET;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), FNV_PRIME);
  return hash >>> 0;
}

/** Character codes the scanner of {@link tokenIds} tests. */
const CODE_0 = 0x30;
const CODE_9 = 0x39;
const CODE_A = 0x61;
const CODE_Z = 0x7a;
const CODE_APOSTROPHE = 0x27;

/** `[a-z]` */
function isLetter(code: number): boolean {
  return code >= CODE_A && code <= CODE_Z;
}

/** `[a-z0-9]` */
function isWordCode(code: number): boolean {
  return (code >= CODE_A && code <= CODE_Z) || (code >= CODE_0 && code <= CODE_9);
}

/**
 * `\s` of a JavaScript regular expression: WhiteSpace and LineTerminator (ECMA-262, sections 12.2
 * and 12.3: tab, LF, VT, FF, CR, space, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F,
 * U+205F, U+3000, U+FEFF).
 */
function isSpace(code: number): boolean {
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0xa0) return false;
  return (
    code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) || code === 0x2028 || code === 0x2029 ||
    code === 0x202f || code === 0x205f || code === 0x3000 || code === 0xfeff
  );
}

/**
 * End (exclusive) of the token of {@link TOKEN} that starts at `start` of a lower-cased text (`start`
 * not a space): a word `[a-z0-9]+(?:'[a-z]+)?`, greedy, or else that one UTF-16 code unit.
 */
function tokenEnd(lower: string, start: number): number {
  const length = lower.length;
  if (!isWordCode(lower.charCodeAt(start))) return start + 1;
  let end = start + 1;
  while (end < length && isWordCode(lower.charCodeAt(end))) end++;
  if (end + 1 < length && lower.charCodeAt(end) === CODE_APOSTROPHE && isLetter(lower.charCodeAt(end + 1))) {
    end += 2;
    while (end < length && isLetter(lower.charCodeAt(end))) end++;
  }
  return end;
}

/** The index of each vocabulary, built on its first {@link tokenIds}. */
const indexes = new WeakMap<Vocabulary, VocabularyIndex>();

/**
 * `toIds(tokenize(text, maxTokens), vocab)` without a string or a match object per token: a scan over
 * the lower-cased text's character codes finds the tokens {@link TOKEN} would (the first
 * `maxTokens`), and each is looked up where it lies.
 * @returns the rows of the known tokens, in order (unknown tokens dropped).
 */
export function tokenIds(text: string, vocab: Vocabulary, maxTokens = DEFAULT_MAX_TOKENS): Int32Array {
  let index = indexes.get(vocab);
  if (!index) indexes.set(vocab, (index = new VocabularyIndex(vocab)));
  const lower = text.toLowerCase();
  const ids = new Int32Array(Math.min(maxTokens, lower.length));
  let n = 0;
  for (let at = 0, tokens = 0; at < lower.length && tokens < maxTokens; ) {
    if (isSpace(lower.charCodeAt(at))) {
      at++;
      continue;
    }
    const end = tokenEnd(lower, at);
    const row = index.rowOf(lower, at, end);
    if (row >= 0) ids[n++] = row;
    tokens++;
    at = end;
  }
  return n === ids.length ? ids : ids.subarray(0, n);
}

/** Rows of the known tokens, in order; unknown tokens are dropped (so the result may be empty). */
export function toIds(tokens: readonly string[], vocab: Vocabulary): Int32Array {
  const ids = new Int32Array(tokens.length);
  let n = 0;
  for (const token of tokens) {
    const row = vocab.get(token);
    if (row !== undefined) ids[n++] = row;
  }
  return n === ids.length ? ids : ids.subarray(0, n);
}
