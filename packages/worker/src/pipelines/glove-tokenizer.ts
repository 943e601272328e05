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
