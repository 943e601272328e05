import { setMaxListeners } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { InferlineError, type JobView } from '@inferline/shared';
import { isApiError, isTerminal, JobsClient } from '../jobs-client.ts';

/** Options of {@link submit} (`inferline submit`). */
export interface SubmitOptions {
  /** Gateway base URL, e.g. `http://localhost:8080`. */
  url: string;
  model: string;
  /** One input: print its job as JSON. Exactly one of `text` and `file`. */
  text?: string;
  /** A file of inputs, one text per line (empty lines skipped): print one JSON line per input, in input order. */
  file?: string;
  /** Requests in flight with `file`. */
  concurrency: number;
  /**
   * Inputs per request with `file` (the bulk form of `POST /v1/jobs`, at most the gateway's
   * `max_bulk_inputs`); 1 = one request per input. A chunk the gateway refuses as a whole (an invalid
   * input) is sent again one input at a time, so each line gets its own result.
   */
  bulkSize?: number;
  /** Longest wait for one job to become terminal after it was accepted, seconds. */
  waitS: number;
  /** Where results go. */
  stdout: Writable;
  /** Where the progress bar and the summary go. */
  stderr: Writable & { isTTY?: boolean };
  /** Draw a progress bar on `stderr` (drawn only when it is a TTY). */
  progress: boolean;
  signal?: AbortSignal;
}

/** Defaults of the `submit` command's options. */
export const SUBMIT_DEFAULTS = { url: 'http://localhost:8080', concurrency: 4, bulkSize: 64, waitS: 60 } as const;

/**
 * One output line of `submit --file`. `line` is the 1-based line number in the file. `status` is the
 * job's last status, or `rejected` when `POST /v1/jobs` refused the input (then `id` is null). A job
 * still not terminal after `waitS` gets `error.code = "timeout"`.
 */
export interface SubmitLine {
  line: number;
  id: string | null;
  status: JobView['status'] | 'rejected';
  output?: JobView['output'];
  error?: { code: string; message: string };
}

/**
 * Run `inferline submit`. Returns the exit code: 0 when every job succeeded, 1 otherwise.
 * @throws InferlineError `invalid_input` for bad options or an unreadable file, `unavailable` when the
 *   gateway cannot be reached; with `text`, also the API's error when the job is refused.
 */
export async function submit(options: SubmitOptions): Promise<number> {
  if ((options.text === undefined) === (options.file === undefined)) {
    throw new InferlineError('invalid_input', 'give exactly one of --text and --file');
  }
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
    throw new InferlineError('invalid_input', `--concurrency must be a positive integer, got ${options.concurrency}`);
  }
  if (!(options.waitS > 0)) throw new InferlineError('invalid_input', `--wait-s must be positive, got ${options.waitS}`);

  const client = new JobsClient(options.url, { connections: options.text === undefined ? options.concurrency : 1 });
  try {
    return options.text === undefined
      ? await submitFile(client, options, await readInputs(options.file ?? ''))
      : await submitText(client, options, options.text);
  } finally {
    await client.close();
  }
}

async function submitText(client: JobsClient, options: SubmitOptions, text: string): Promise<number> {
  const job = await client.run({ model: options.model, input: text }, options.waitS, options.signal);
  options.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
  if (!isTerminal(job)) options.stderr.write(`error: job ${job.id} is still ${job.status} after ${options.waitS} s\n`);
  return job.status === 'succeeded' ? 0 : 1;
}

/** Non-empty lines of a file with their 1-based line numbers. */
async function readInputs(file: string): Promise<{ line: number; text: string }[]> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch (error) {
    throw new InferlineError('invalid_input', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return content
    .split(/\r?\n/)
    .map((text, index) => ({ line: index + 1, text }))
    .filter(({ text }) => text.trim() !== '');
}

/**
 * Keep `concurrency` requests of `bulkSize` inputs in flight; print each result as soon as every
 * earlier input's result is printed, so output follows input order. A transport failure stops the run
 * (rethrown); an API error is that input's result.
 */
async function submitFile(client: JobsClient, options: SubmitOptions, inputs: { line: number; text: string }[]): Promise<number> {
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  // Every request in flight listens to it.
  setMaxListeners(options.concurrency + 10, signal);
  const ready = new Map<number, SubmitLine>();
  let nextInput = 0;
  let nextOutput = 0;
  let failed = 0;

  const bar = options.progress
    ? new cliProgress.SingleBar(
        { stream: options.stderr, format: 'submit [{bar}] {value}/{total} | failed {failed} | {eta_formatted} left', hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(inputs.length, 0, { failed: 0 });

  const finish = (index: number, result: SubmitLine): void => {
    if (result.status !== 'succeeded') failed += 1;
    bar?.increment(1, { failed });
    ready.set(index, result);
    for (let next = ready.get(nextOutput); next; next = ready.get(nextOutput)) {
      options.stdout.write(`${JSON.stringify(next)}\n`);
      ready.delete(nextOutput);
      nextOutput += 1;
    }
  };

  const bulkSize = options.bulkSize ?? SUBMIT_DEFAULTS.bulkSize;
  const lane = async (): Promise<void> => {
    while (nextInput < inputs.length && !signal.aborted) {
      const first = nextInput;
      const chunk = inputs.slice(first, first + bulkSize);
      nextInput += chunk.length;
      const results = chunk.length === 1 ? undefined : await runChunk(client, options, chunk, signal);
      for (const [i, input] of chunk.entries()) finish(first + i, results?.[i] ?? (await runOne(client, options, input, signal)));
    }
  };

  try {
    const lanes = Array.from({ length: Math.min(options.concurrency, inputs.length) }, () =>
      lane().catch((error: unknown) => {
        stop.abort(error);
        throw error;
      }),
    );
    const outcomes = await Promise.allSettled(lanes);
    // The first failure is the cause; the others are the aborts it triggered.
    if (stop.signal.aborted) throw stop.signal.reason;
    const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
    if (rejected) throw rejected.reason;
  } finally {
    bar?.stop();
  }
  options.stderr.write(`${inputs.length} inputs: ${inputs.length - failed} succeeded, ${failed} not\n`);
  return failed === 0 ? 0 : 1;
}

/**
 * Run a chunk of inputs as one bulk request. Returns undefined when the gateway refused the chunk as a
 * whole (an invalid input, too many inputs): the caller then runs each input alone.
 */
async function runChunk(
  client: JobsClient,
  options: SubmitOptions,
  chunk: readonly { line: number; text: string }[],
  signal: AbortSignal,
): Promise<SubmitLine[] | undefined> {
  let jobs: JobView[];
  try {
    jobs = await client.runMany({ model: options.model, inputs: chunk.map((input) => input.text) }, options.waitS, signal);
  } catch (error) {
    if (isApiError(error) && error.details.http_status < 500) return undefined;
    throw error;
  }
  return jobs.map((job, i) => toLine(chunk[i]?.line ?? 0, job, options.waitS));
}

async function runOne(
  client: JobsClient,
  options: SubmitOptions,
  input: { line: number; text: string },
  signal: AbortSignal,
): Promise<SubmitLine> {
  let job: JobView;
  try {
    job = await client.run({ model: options.model, input: input.text }, options.waitS, signal);
  } catch (error) {
    if (!isApiError(error)) throw error;
    const code = typeof error.details.remote_code === 'string' ? error.details.remote_code : error.code;
    return { line: input.line, id: null, status: 'rejected', error: { code, message: error.message } };
  }
  return toLine(input.line, job, options.waitS);
}

/** The output line of one job's last view. */
function toLine(line: number, job: JobView, waitS: number): SubmitLine {
  if (job.status === 'succeeded') return { line, id: job.id, status: job.status, output: job.output };
  const error = isTerminal(job) ? (job.error ?? { code: job.status, message: `job ${job.status}` }) : { code: 'timeout', message: `still ${job.status} after ${waitS} s` };
  return { line, id: job.id, status: job.status, error };
}
