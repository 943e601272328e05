import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { createLogger, isInferlineError } from '@inferline/shared';
import { writeEmbeddingBagModel } from '../../cli/src/models/build-glove-embed.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { InstancePool, type InstancePoolOptions } from '../src/runtime/instance-pool.ts';
import { TINY_EMBED, tinyEmbedConfig } from './tiny-embed.ts';

const DIMS = 8;
const WORDS = ['the', 'whale', 'sea', 'call', 'me', 'ishmael', '.', ','];
const TEXTS = ['Call me Ishmael.', '', 'the white whale', 'zzqx', 'The sea, the sea.'];

let dir: string;
let base: InstancePoolOptions;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'inferline-instance-pool-'));
  const versionDir = join(dir, TINY_EMBED, '1');
  const table = Float32Array.from({ length: WORDS.length * DIMS }, (_, i) => Math.sin(i + 1));
  await writeEmbeddingBagModel(versionDir, WORDS, table, DIMS, { source: 'test' });
  base = { config: tinyEmbedConfig(DIMS), versionDir, version: 1, backend: await initBackend(), count: 1, warmupSizes: [1], logger: createLogger('test', 'silent') };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The embeddings of TEXTS as plain number arrays. */
async function embed(pool: InstancePool): Promise<number[][]> {
  const outputs = await pool.predict(TEXTS);
  return outputs.map((output) => [...(output.embedding as Float32Array)]);
}

test('a main_thread instance holds its weights on this thread, answers what a thread instance answers, and frees them when unloaded', async () => {
  const tensorsBefore = tf.memory().numTensors;
  const threaded = await InstancePool.start(base);
  assert.equal(tf.memory().numTensors, tensorsBefore, 'a thread instance holds no tensor of this thread');
  const inline = await InstancePool.start({ ...base, kind: 'main_thread' });
  assert.ok(tf.memory().numTensors > tensorsBefore, 'the main_thread instance holds its table on this thread');
  try {
    assert.equal(inline.instances, 1);
    assert.equal(inline.backend, threaded.backend);
    const expected = await embed(threaded);
    assert.equal(expected.length, TEXTS.length);
    assert.ok(expected[0]?.some((x) => x !== 0), 'a known text is not all zeros');
    assert.deepEqual(await embed(inline), expected);
    // Batches sent together run one after the other and each gets its own outputs.
    const [a, b] = await Promise.all([inline.predict(TEXTS.slice(0, 2)), inline.predict(TEXTS.slice(2))]);
    assert.deepEqual([...a, ...b].map((output) => [...(output.embedding as Float32Array)]), expected);
  } finally {
    await Promise.all([threaded.dispose(), inline.dispose()]);
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, 'unloading freed every tensor of the version');
});

test('a main_thread instance fails a batch with a bad input as invalid_input, and refuses batches once unloaded', async () => {
  const inline = await InstancePool.start({ ...base, kind: 'main_thread' });
  await assert.rejects(inline.predict(['fine', 42]), (error: unknown) => isInferlineError(error) && error.code === 'invalid_input');
  assert.equal((await inline.predict(['the sea'])).length, 1, 'it serves again after a failed batch');
  await inline.dispose();
  await assert.rejects(inline.predict(['the sea']), (error: unknown) => isInferlineError(error) && error.code === 'version_unloaded');
});

test('a main_thread instance whose version cannot load fails its start with invalid_config', async () => {
  await assert.rejects(
    InstancePool.start({ ...base, kind: 'main_thread', versionDir: join(dir, 'missing', '1') }),
    (error: unknown) => isInferlineError(error) && error.code === 'invalid_config',
  );
});
