import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { InferlineError, loadModelConfig, REDUCERS_KEEPING_INPUTS, type ModelConfig, type ReducerName } from '@inferline/shared';
import { WHOLE_OUTPUT } from '../src/group-view.ts';
import { resolveReduceOutput } from '../src/reduce-output.ts';

/** The committed config of one model of the zoo (models/<name>/config.json). */
function loadZooConfig(name: string): Promise<ModelConfig> {
  return loadModelConfig(fileURLToPath(new URL(`../../../models/${name}`, import.meta.url)));
}

/** Assert that `fn` throws a 400 `invalid_reduce` whose message matches `message`. */
function assertInvalidReduce(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof InferlineError, `expected an InferlineError, got ${String(error)}`);
    assert.equal(error.code, 'invalid_reduce');
    assert.equal(error.statusCode, 400);
    assert.match(error.message, message);
    return true;
  });
}

describe('resolveReduceOutput', () => {
  let glove: ModelConfig;
  let classifier: ModelConfig;
  let detector: ModelConfig;
  before(async () => {
    [glove, classifier, detector] = await Promise.all([loadZooConfig('glove-embed'), loadZooConfig('image-classify'), loadZooConfig('coco-detect')]);
  });

  describe('defaults', () => {
    it('mean, sum, max and min on glove-embed read its one float32 output "embedding"', () => {
      for (const reduce of ['mean', 'sum', 'max', 'min'] as const) assert.equal(resolveReduceOutput(glove, reduce), 'embedding', reduce);
    });

    it('mean on image-classify reads its first numeric output, "probabilities" (not "embedding")', () => {
      assert.equal(resolveReduceOutput(classifier, 'mean'), 'probabilities');
    });

    it('labels and vote on image-classify read its string output "label"', () => {
      assert.equal(resolveReduceOutput(classifier, 'labels'), 'label');
      assert.equal(resolveReduceOutput(classifier, 'vote'), 'label');
    });

    it('collect reads the whole output object ("*") of any model', () => {
      assert.equal(WHOLE_OUTPUT, '*');
      for (const config of [glove, classifier, detector]) assert.equal(resolveReduceOutput(config, 'collect'), WHOLE_OUTPUT, config.name);
    });

    it('boxes on coco-detect reads its json output "detections"', () => {
      assert.equal(resolveReduceOutput(detector, 'boxes'), 'detections');
    });

    it('only boxes keeps member inputs', () => {
      assert.deepEqual([...REDUCERS_KEEPING_INPUTS], ['boxes']);
    });
  });

  describe('an explicit output', () => {
    it('mean over image-classify "embedding" reads "embedding"', () => {
      assert.equal(resolveReduceOutput(classifier, 'mean', 'embedding'), 'embedding');
      assert.equal(resolveReduceOutput(classifier, 'max', 'probabilities'), 'probabilities');
    });

    it('collect of one named output reads that output', () => {
      assert.equal(resolveReduceOutput(classifier, 'collect', 'label'), 'label');
      assert.equal(resolveReduceOutput(glove, 'collect', 'embedding'), 'embedding');
    });

    it('labels on image-classify "label" and boxes on coco-detect "detections" are accepted', () => {
      assert.equal(resolveReduceOutput(classifier, 'labels', 'label'), 'label');
      assert.equal(resolveReduceOutput(detector, 'boxes', 'detections'), 'detections');
    });
  });

  describe('invalid_reduce', () => {
    it('labels or vote on glove-embed, which has no string output', () => {
      for (const reduce of ['labels', 'vote'] as const) {
        assertInvalidReduce(() => resolveReduceOutput(glove, reduce), new RegExp(`^reduce "${reduce}" reads a string output .*model "glove-embed" has none$`));
      }
    });

    it('boxes on image-classify, an image model without a json output', () => {
      assertInvalidReduce(() => resolveReduceOutput(classifier, 'boxes'), /^reduce "boxes" reads a json output of detections; model "image-classify" has none$/);
    });

    it('boxes on glove-embed, which does not take images', () => {
      assertInvalidReduce(() => resolveReduceOutput(glove, 'boxes'), /model "glove-embed" does not take images/);
      assertInvalidReduce(() => resolveReduceOutput(glove, 'boxes', 'embedding'), /does not take images/);
    });

    it('an output name the model does not have, for every reducer', () => {
      const reducers: ReducerName[] = ['mean', 'sum', 'max', 'min', 'collect', 'labels', 'vote'];
      for (const reduce of reducers) {
        assertInvalidReduce(() => resolveReduceOutput(classifier, reduce, 'logits'), /^model "image-classify" has no output "logits" \(outputs: probabilities, label, embedding\)$/);
      }
      assertInvalidReduce(() => resolveReduceOutput(detector, 'boxes', 'boxes'), /model "coco-detect" has no output "boxes"/);
    });

    it('mean (or sum, max, min) over a string output', () => {
      for (const reduce of ['mean', 'sum', 'max', 'min'] as const) {
        assertInvalidReduce(() => resolveReduceOutput(classifier, reduce, 'label'), new RegExp(`^reduce "${reduce}" reads a float32 or int32 tensor output; model "image-classify" output "label" is string$`));
      }
    });

    it('mean on coco-detect, whose only output is json', () => {
      assertInvalidReduce(() => resolveReduceOutput(detector, 'mean'), /model "coco-detect" has none$/);
      assertInvalidReduce(() => resolveReduceOutput(detector, 'mean', 'detections'), /output "detections" is json$/);
    });

    it('labels over a float32 output, boxes over a non-json output', () => {
      assertInvalidReduce(() => resolveReduceOutput(classifier, 'labels', 'probabilities'), /output "probabilities" is float32$/);
      assertInvalidReduce(() => resolveReduceOutput(classifier, 'boxes', 'label'), /output "label" is string$/);
    });
  });
});
