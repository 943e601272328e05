import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InferlineError } from '@inferline/shared';
import { loadMobyDickParagraphs } from '../../../bench/corpus.ts';
import { parseVocabulary, toIds, tokenIds, tokenize } from '../src/pipelines/glove-tokenizer.ts';

const REFERENCE = /[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]/g;

test('lower-cases and splits words from punctuation', () => {
  assert.deepEqual(tokenize('Call me Ishmael. Some years ago—never mind how long precisely—'), [
    'call', 'me', 'ishmael', '.', 'some', 'years', 'ago', '—', 'never', 'mind', 'how', 'long', 'precisely', '—',
  ]);
});

test("keeps one 's or n't style suffix attached to its word", () => {
  assert.deepEqual(tokenize("The whale's jaw, don't it? Rock'n'roll 'tis"), [
    'the', "whale's", 'jaw', ',', "don't", 'it', '?', "rock'n", "'", 'roll', "'", 'tis',
  ]);
});

test('keeps numbers, and splits a letter-digit run only at punctuation', () => {
  assert.deepEqual(tokenize('In 1851, 3.5 tons; mp3 at $12'), ['in', '1851', ',', '3', '.', '5', 'tons', ';', 'mp3', 'at', '$', '12']);
});

test('an empty or blank text has no tokens', () => {
  assert.deepEqual(tokenize(''), []);
  assert.deepEqual(tokenize(' \n\t '), []);
});

test('keeps the first 256 tokens by default, or max_tokens', () => {
  const text = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ');
  const tokens = tokenize(text);
  assert.equal(tokens.length, 256);
  assert.equal(tokens[255], 'w255');
  assert.deepEqual(tokenize(text, 3), ['w0', 'w1', 'w2']);
});

test('matches text.toLowerCase().match(regex) on every Moby Dick paragraph', () => {
  for (const paragraph of loadMobyDickParagraphs()) {
    assert.deepEqual(tokenize(paragraph, Infinity), paragraph.toLowerCase().match(REFERENCE) ?? []);
  }
});

test('matches the reference regex on arbitrary strings (property)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.integer({ min: 1, max: 300 }), (text, max) => {
      assert.deepEqual(tokenize(text, max), (text.toLowerCase().match(REFERENCE) ?? []).slice(0, max));
    }),
  );
});

test('toIds maps known tokens to rows and drops unknown ones', () => {
  const vocab = parseVocabulary('the\n,\nwhale\n');
  assert.deepEqual([...toIds(tokenize('The white whale, the'), vocab)], [0, 2, 1, 0]);
  assert.deepEqual([...toIds(['zzqx', 'ahab'], vocab)], []);
});

test('a vocabulary rejects empty and repeated tokens', () => {
  assert.equal(parseVocabulary('a\nb').size, 2);
  assert.throws(() => parseVocabulary('a\n\nb\n'), InferlineError);
  assert.throws(() => parseVocabulary('a\nb\na\n'), InferlineError);
});

test('tokenizes a paragraph in tens of microseconds', () => {
  const paragraphs = loadMobyDickParagraphs();
  const vocab = parseVocabulary([...new Set(paragraphs.flatMap((p) => tokenize(p, Infinity)))].join('\n'));
  for (let i = 0; i < 2000; i++) toIds(tokenize(paragraphs[i % paragraphs.length] as string), vocab);
  const started = performance.now();
  for (const paragraph of paragraphs) toIds(tokenize(paragraph), vocab);
  const perParagraphUs = ((performance.now() - started) * 1000) / paragraphs.length;
  console.log(`tokenize + toIds: ${perParagraphUs.toFixed(1)} µs per paragraph (${paragraphs.length} paragraphs)`);
  assert.ok(perParagraphUs < 500, `${perParagraphUs} µs per paragraph`);
});

test('tokenIds gives toIds(tokenize()) on every Moby Dick paragraph, with half of its tokens known', () => {
  const paragraphs = loadMobyDickParagraphs();
  const all = [...new Set(paragraphs.flatMap((p) => tokenize(p, Infinity)))];
  const vocab = parseVocabulary(all.filter((_, i) => i % 2 === 0).join('\n'));
  for (const paragraph of paragraphs) {
    for (const max of [256, 7]) assert.deepEqual([...tokenIds(paragraph, vocab, max)], [...toIds(tokenize(paragraph, max), vocab)]);
  }
});

test('tokenIds gives toIds(tokenize()) on arbitrary strings and vocabularies (property)', () => {
  // Unicode spaces, apostrophes, digits and letters often, so that every branch of the scan is taken.
  const unit = fc.oneof(
    fc.constantFrom(' ', '\t', '\n', '\u00a0', '\u2003', '\u3000', '\ufeff', '\u200b', "'", 'a', 'z', 'A', '0', '9', '.', 'İ', '\ud83d'),
    fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
  );
  fc.assert(
    fc.property(
      fc.array(unit, { maxLength: 120 }).map((units) => units.join('')),
      fc.array(fc.string({ unit, minLength: 1, maxLength: 6 }).filter((token) => !/\s/.test(token)), { maxLength: 30 }),
      fc.integer({ min: 1, max: 80 }),
      (text, extra, max) => {
        // Known: some of the text's own tokens and a few others (absent tokens, near misses).
        const tokens = [...new Set([...tokenize(text, Infinity).filter((_, i) => i % 3 !== 1), ...extra])];
        const vocab = parseVocabulary(tokens.join('\n'));
        assert.deepEqual([...tokenIds(text, vocab, max)], [...toIds(tokenize(text, max), vocab)]);
      },
    ),
    { numRuns: 3000 },
  );
});
