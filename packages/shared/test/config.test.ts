import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InferlineError, parseModelConfig } from '../src/index.ts';

const base = {
  name: 'm',
  platform: 'tfjs-graph',
  signature: { inputs: [{ name: 'image', dtype: 'string', shape: [] }], outputs: [{ name: 'y', dtype: 'json', shape: [-1] }] },
};
const heads = [{ stride: 8, scores: 'a', boxes: 'b:1' }];

/** The `field /...` an invalid config's error names. */
function fieldOf(config: Record<string, unknown>): string {
  try {
    parseModelConfig({ ...base, ...config });
  } catch (error) {
    assert.ok(error instanceof InferlineError && error.code === 'invalid_config', String(error));
    return /field (\S+):/.exec(error.message)?.[1] ?? error.message;
  }
  assert.fail('expected invalid_config');
}

describe('parseModelConfig', () => {
  test('instance_group: kind "main_thread" is one instance; count alone and kind alone are valid', () => {
    assert.deepEqual(parseModelConfig({ ...base, instance_group: { kind: 'main_thread' } }).instance_group, { kind: 'main_thread' });
    assert.deepEqual(parseModelConfig({ ...base, instance_group: { kind: 'main_thread', count: 1 } }).instance_group, { kind: 'main_thread', count: 1 });
    assert.deepEqual(parseModelConfig({ ...base, instance_group: { count: 3 } }).instance_group, { count: 3 });
    assert.equal(fieldOf({ instance_group: { kind: 'main_thread', count: 2 } }), '/instance_group/count');
    assert.equal(fieldOf({ instance_group: { kind: 'gpu' } }), '/instance_group/kind');
  });

  test('applies the defaults of the section its type names', () => {
    const config = parseModelConfig({ ...base, preprocess: { type: 'image', width: 4, height: 2 }, postprocess: { type: 'nanodet', heads } });
    assert.deepEqual(config.postprocess, { type: 'nanodet', heads, score_threshold: 0.4, iou_threshold: 0.5, labels_file: 'labels.txt' });
    assert.equal(config.preprocess?.type === 'image' && config.preprocess.layout, 'nhwc');
    // Absent: the worker holds instance_group.count + 1 batches.
    assert.equal(config.batching.max_inflight_batches, undefined);
    const classifier = parseModelConfig({ ...base, postprocess: { type: 'classifier', embedding_layer: 'flatten_1' } });
    assert.deepEqual(classifier.postprocess, { type: 'classifier', embedding_layer: 'flatten_1', labels_file: 'labels.txt' });
  });

  test('names the field inside a section when it is invalid', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ postprocess: { type: 'nanodet', heads, score_threshold: 1.5 } }, '/postprocess/score_threshold'],
      [{ postprocess: { type: 'nanodet', heads, iou_threshold: 'x' } }, '/postprocess/iou_threshold'],
      [{ postprocess: { type: 'nanodet', heads: [] } }, '/postprocess/heads'],
      [{ postprocess: { type: 'nanodet', heads: [{ stride: 0, scores: 'a', boxes: 'b' }] } }, '/postprocess/heads/0/stride'],
      [{ postprocess: { type: 'yolo' } }, '/postprocess/type'],
      [{ postprocess: { type: 'classifier', top_k: 3 } }, '/postprocess/top_k'],
      [{ postprocess: { type: 'classifier', embedding_layer: 3 } }, '/postprocess/embedding_layer'],
      [{ preprocess: { type: 'image', width: 0, height: 2 } }, '/preprocess/width'],
      [{ preprocess: { type: 'bpe' } }, '/preprocess/type'],
      [{ batching: { max_batch_size: 8, allowed_batch_sizes: [2, 4] } }, '/batching/allowed_batch_sizes'],
    ];
    for (const [config, field] of cases) assert.equal(fieldOf(config), field, JSON.stringify(config));
  });

  test('a labels file must be a file name inside the version folder', () => {
    for (const labelsFile of ['../labels.txt', '/etc/passwd', 'a/b.txt', 'a\\b.txt', '..', '.', '']) {
      assert.equal(fieldOf({ postprocess: { type: 'classifier', labels_file: labelsFile } }), '/postprocess/labels_file', labelsFile);
    }
  });

  test('a head: defaults to head.json, only on embedding-bag, only with a classifier postprocess', () => {
    const bag = { platform: 'embedding-bag', preprocess: { type: 'glove-tokenizer' }, postprocess: { type: 'classifier' } };
    assert.deepEqual(parseModelConfig({ ...base, ...bag, head: {} }).head, { model_file: 'head.json' });
    assert.equal(fieldOf({ ...bag, head: { model_file: '../head.json' } }), '/head/model_file');
    assert.equal(fieldOf({ ...bag, head: { model_file: 'head.json', units: 2 } }), '/head/units');
    assert.equal(fieldOf({ postprocess: { type: 'classifier' }, head: {} }), '/head');
    assert.equal(fieldOf({ ...bag, postprocess: undefined, head: {} }), '/postprocess');
  });
});
