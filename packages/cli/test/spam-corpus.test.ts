import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { tokenize } from '@inferline/worker';
import {
  emailText,
  groupLabel,
  HELD_OUT_FRACTION,
  isHeldOut,
  keyHash,
  readSpamCorpus,
  splitCorpus,
  SPAM_CORPUS_FILE_LIST,
  truncateToTokens,
} from '../src/models/spam-corpus.ts';

const key = fc.stringMatching(/^(easy-ham-1|spam-2)\/\d{5}\.[0-9a-f]{8}$/);

describe('splitCorpus', () => {
  test('the same parts in the same order whatever the input order', () => {
    fc.assert(
      fc.property(fc.uniqueArray(key, { minLength: 1, maxLength: 60 }), fc.integer(), (keys, seed) => {
        const messages = keys.map((k) => ({ key: k }));
        const shuffled = [...messages].sort((a, b) => keyHash(`${seed}${a.key}`) - keyHash(`${seed}${b.key}`));
        const first = splitCorpus(messages);
        const second = splitCorpus(shuffled);
        assert.deepEqual(second, first);
        assert.equal(first.train.length + first.heldOut.length, keys.length);
        assert.ok(first.heldOut.every((m) => isHeldOut(m.key)) && first.train.every((m) => !isHeldOut(m.key)));
        for (const part of [first.train, first.heldOut]) {
          for (let i = 1; i < part.length; i++) assert.ok(keyHash((part[i - 1] as { key: string }).key) <= keyHash((part[i] as { key: string }).key));
        }
      }),
    );
  });

  test('holds out about HELD_OUT_FRACTION of the messages, by a hash of the key', () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `spam-1/${String(i).padStart(5, '0')}`);
    const held = keys.filter(isHeldOut).length / keys.length;
    assert.ok(Math.abs(held - HELD_OUT_FRACTION) < 0.02, `held out ${held}`);
    // The first 32 bits of `printf %s <key> | sha256sum`: the split is a fixed function of the key.
    assert.equal(keyHash('spam-1/00001.7848dde101aa985090474a91ec93fcf0'), 0x02d7a728 / 2 ** 32);
  });
});

describe('emailText', () => {
  test('subject and decoded body, headers stripped', async () => {
    const raw = [
      'From: a@example.com',
      'To: b@example.com',
      'Subject: =?utf-8?q?Caf=C3=A9_meeting?=',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'See you at the caf=C3=A9 at 10=',
      ' tomorrow.',
    ].join('\r\n');
    assert.equal(await emailText(raw, 256), 'Café meeting\n\nSee you at the café at 10 tomorrow.');
  });

  test('an HTML-only body becomes its text, without links and images', async () => {
    const raw = [
      'Subject: WIN',
      'Content-Type: text/html',
      '',
      '<html><body><p>Claim your <b>FREE</b> prize <a href="http://x.example/claim">here</a>!</p><img src="http://x.example/p.gif"></body></html>',
    ].join('\n');
    assert.equal(await emailText(raw, 256), 'WIN\n\nClaim your FREE prize here!');
  });

  test('the text a multipart message gives is its plain-text part', async () => {
    const raw = [
      'Subject: hi',
      'Content-Type: multipart/alternative; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '',
      'plain words',
      '--b',
      'Content-Type: text/html',
      '',
      '<p>html words</p>',
      '--b--',
    ].join('\n');
    assert.equal(await emailText(raw, 256), 'hi\n\nplain words');
  });

  test('truncated to the tokens the model reads', async () => {
    const text = await emailText(`Subject: s\n\n${'word, '.repeat(500)}`, 10);
    assert.deepEqual(tokenize(text, 1000), ['s', ...Array.from({ length: 9 }, (_, i) => (i % 2 === 0 ? 'word' : ','))]);
  });
});

describe('truncateToTokens', () => {
  test('keeps exactly the first maxTokens tokens of the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'B', '1', "'", ' ', '\n', ',', '!', 'é', 'x') }), fc.integer({ min: 1, max: 20 }), (text, max) => {
        const cut = truncateToTokens(text, max);
        assert.ok(text.startsWith(cut));
        assert.deepEqual(tokenize(cut, Infinity), tokenize(text, max));
      }),
    );
  });
});

describe('readSpamCorpus', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferline-spam-corpus-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads every listed message with its label by group', async () => {
    const files = ['easy-ham-1/00001.aa.txt', 'hard-ham-1/00002.bb.txt', 'spam-2/00001.cc.txt'];
    await mkdir(join(dir, 'data'), { recursive: true });
    await writeFile(join(dir, SPAM_CORPUS_FILE_LIST), JSON.stringify(files));
    for (const [i, file] of files.entries()) {
      const group = file.slice(0, file.indexOf('/'));
      await mkdir(join(dir, 'data', group), { recursive: true });
      await writeFile(join(dir, 'data', file.replace(/\.txt$/, '.json')), JSON.stringify({ id: `0000${i}`, group, text: `Subject: ${i}\n\nbody ${i}` }));
    }
    const messages = await readSpamCorpus(dir);
    assert.deepEqual(
      messages.map((m) => [m.key, m.label, m.raw]),
      [
        ['easy-ham-1/00001.aa', 'ham', 'Subject: 0\n\nbody 0'],
        ['hard-ham-1/00002.bb', 'ham', 'Subject: 1\n\nbody 1'],
        ['spam-2/00001.cc', 'spam', 'Subject: 2\n\nbody 2'],
      ],
    );
  });

  test('an unknown group or a malformed file list is invalid_input', async () => {
    assert.throws(() => groupLabel('maybe-1'), { code: 'invalid_input' });
    const bad = join(dir, 'bad');
    await mkdir(join(bad, 'data'), { recursive: true });
    await writeFile(join(bad, SPAM_CORPUS_FILE_LIST), JSON.stringify([3]));
    await assert.rejects(readSpamCorpus(bad), { code: 'invalid_input' });
  });
});
