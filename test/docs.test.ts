import assert from 'node:assert/strict';
import { access, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { callGateway } from './harness/gateway-http.ts';
import { startTestRedis, type TestRedis } from './harness/redis.ts';
import { gloveRepository } from './harness/repository.ts';
import { startGatewayProcess, startWorkerProcess, type RoleProcess } from './harness/processes.ts';

/** Debian's chromium package (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
/** Longest wait for one thing to show in the page, ms (Swagger UI renders, a request answers). */
const UI_TIMEOUT_MS = 30_000;

/**
 * Swagger UI at /docs, in a real headless Chromium against a real stack (gateway + worker + Redis +
 * glove-embed): the operations are listed, and "Try it out" → "Execute" on `POST /v1/jobs` submits a
 * job the worker then runs.
 */
describe('/docs: Swagger UI in headless Chromium against a real stack', () => {
  let redis: TestRedis;
  let repository: string;
  let gateway: RoleProcess & { url: string };
  let worker: RoleProcess;
  let browser: Browser;

  before(async () => {
    await access(CHROMIUM).catch(() => {
      throw new Error(`${CHROMIUM} is missing: this test drives Debian's chromium (apt-get install -y chromium; .ci/run installs it)`);
    });
    redis = await startTestRedis();
    repository = await gloveRepository({});
    const env = { REDIS_URL: redis.url, MODEL_REPOSITORY: repository };
    gateway = await startGatewayProcess(env);
    worker = await startWorkerProcess(env, ['glove-embed']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([gateway?.stop(), worker?.stop()]);
    await redis?.stop();
    if (repository) await rm(repository, { recursive: true, force: true });
  });

  test('lists the operations, and Try it out → Execute on POST /v1/jobs answers 202 with a job id that then succeeds', async () => {
    const page = await browser.newPage();
    const external: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(gateway.url)) external.push(request.url());
    });
    await page.goto(`${gateway.url}/docs`);
    await page.locator('.opblock').first().waitFor({ timeout: UI_TIMEOUT_MS });

    const listed: string[] = [];
    for (const block of await page.locator('.opblock').all()) {
      const method = await block.locator('.opblock-summary-method').innerText();
      listed.push(`${method} ${(await block.locator('.opblock-summary-path').getAttribute('data-path')) ?? ''}`);
    }
    for (const operation of ['POST /v1/jobs', 'GET /v1/jobs/{id}', 'GET /v1/models', 'POST /v1/models/{name}:predict', 'GET /v1/models/{name}/metadata', 'GET /healthz']) {
      assert.ok(listed.includes(operation), `${operation} is listed (listed: ${listed.join(', ')})`);
    }

    const operation = page.locator('.opblock-post').filter({ has: page.locator('.opblock-summary-path[data-path="/v1/jobs"]') });
    await operation.locator('.opblock-summary').click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    const body = operation.locator('textarea.body-param__text');
    assert.deepEqual(JSON.parse(await body.inputValue()), { model: 'glove-embed', input: 'Call me Ishmael.' }, 'the example body is filled in');
    await operation.getByRole('button', { name: 'Execute' }).click();

    const status = operation.locator('.live-responses-table .response .response-col_status');
    await status.first().waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal((await status.first().innerText()).trim(), '202');
    const shown = await operation.locator('.live-responses-table .response-col_description pre').first().innerText();
    const job = JSON.parse(shown) as { id: string; status: string; model: string };
    assert.equal(job.model, 'glove-embed');
    assert.equal(job.status, 'queued');
    assert.match(job.id, /^glove-embed~[A-Za-z0-9_-]{21}$/);
    await page.screenshot({ path: join(tmpdir(), 'inferline-docs-try-it-out.png'), fullPage: false });

    // The job the UI submitted is real: the worker runs it.
    const done = await callGateway<{ status: string; output?: { embedding: number[] } }>(gateway.url, 'GET', `/v1/jobs/${job.id}?wait=30`);
    assert.equal(done.json.status, 'succeeded');
    assert.equal(done.json.output?.embedding.length, 100);
    assert.deepEqual(external, [], 'the page fetched nothing from outside the gateway');
    await page.close();
  });
});
