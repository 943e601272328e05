import { open, readFile, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { InferlineError, isInferlineError, type GroupView, type OnItemError, type ReducerName } from '@inferline/shared';
import { DEFAULT_CHUNK_SIZE, GroupsClient } from '../groups-client.ts';

/** Options of {@link runGroupCommand} (`inferline group`). */
export interface GroupCommandOptions {
  /** Gateway base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  model: string;
  reduce: ReducerName;
  /** Texts, one per line (empty lines skipped), read as a stream. Exactly one of `file` and `images`. */
  file?: string;
  /** Image files, sent as `{"b64": ...}`, read one chunk at a time. */
  images?: string[];
  /** Member output the reducer reads (default: the reducer's). */
  output?: string;
  onItemError?: OnItemError;
  /** Inputs per request. */
  chunkSize: number;
  /** Where a `boxes` group's PNG goes; default `group-<id>.png` in the working directory. */
  png?: string;
  /** Where the output goes (JSON). */
  stdout: Writable;
  /** Where the progress bar, the summary and errors go. */
  stderr: Writable & { isTTY?: boolean };
  /** Draw a progress bar on `stderr` (drawn only when it is a TTY). */
  progress: boolean;
  /** Abort to stop: the group is cancelled. */
  signal?: AbortSignal;
}

/** Defaults of the `group` command's options. */
export const GROUP_DEFAULTS = { url: 'http://127.0.0.1:8080', chunkSize: DEFAULT_CHUNK_SIZE } as const;

/** Failed member indexes listed in the summary of a group run with `--on-item-error skip`. */
const LISTED_FAILURES = 20;

/**
 * Run `inferline group`: one aggregation group over the inputs, fed in chunks; prints the group's
 * output as JSON on stdout (a `boxes` output without its image, which is written as a PNG file, its
 * path in `png`) and a summary on stderr. Returns the exit code: 0 when the group succeeded, 1
 * otherwise (after `error: <message>` on stderr).
 * @throws InferlineError `invalid_input` for bad options, an unreadable file or a refused input (its
 *   message names the input's position and line or file); the API's other errors; `unavailable`.
 */
export async function runGroupCommand(options: GroupCommandOptions): Promise<number> {
  if ((options.file === undefined) === (options.images === undefined || options.images.length === 0)) {
    throw new InferlineError('invalid_input', 'give exactly one of --file and --images');
  }
  if (!Number.isInteger(options.chunkSize) || options.chunkSize < 1) {
    throw new InferlineError('invalid_input', `--chunk-size must be a positive integer, got ${options.chunkSize}`);
  }
  const source = options.file === undefined ? await imageInputs(options.images ?? []) : await textInputs(options.file);

  const client = new GroupsClient(options.url);
  let bar: cliProgress.SingleBar | undefined;
  let id: string | undefined;
  const started = performance.now();
  /** First progress with members done: the origin of the rate behind the time left. */
  let rateFrom: { at: number; done: number } | undefined;
  const onProgress = (view: GroupView): void => {
    id = view.id;
    if (!options.progress) return;
    const done = view.completed + view.failed;
    const now = performance.now();
    if (!rateFrom && done > 0) rateFrom = { at: now, done };
    // While inputs are still being added the total grows: no time left to show yet.
    const perMs = rateFrom && now > rateFrom.at ? (done - rateFrom.done) / (now - rateFrom.at) : 0;
    const left = view.status === 'open' ? 'adding inputs' : perMs > 0 ? `${Math.ceil((view.size - done) / perMs / 1000)} s left` : '';
    const payload = { status: view.status, failed: view.failed, left };
    if (!bar) {
      bar = new cliProgress.SingleBar(
        { stream: options.stderr, format: 'group [{bar}] {value}/{total} | {status} | failed {failed} | {left}', hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(1, view.size), done, payload);
    }
    bar.setTotal(Math.max(1, view.size));
    bar.update(done, payload);
  };

  let view: GroupView;
  try {
    view = await client.runGroup({
      model: options.model,
      reduce: options.reduce,
      ...(options.output === undefined ? {} : { output: options.output }),
      ...(options.onItemError === undefined ? {} : { onItemError: options.onItemError }),
      inputs: source.inputs,
      chunkSize: options.chunkSize,
      onProgress,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    bar?.stop();
    if (options.signal?.aborted) {
      options.stderr.write(`error: stopped${id === undefined ? '' : `; group ${id} cancelled`}\n`);
      return 1;
    }
    const index = isInferlineError(error) ? error.details?.input_index : undefined;
    if (isInferlineError(error) && typeof index === 'number') {
      throw new InferlineError(error.code, `${source.describe(index)}: ${error.message.replace(/^input \d+: /, '')}`, error.details);
    }
    throw error;
  } finally {
    await Promise.all([client.disconnect(), source.close()]);
  }
  bar?.stop();

  const seconds = (performance.now() - started) / 1000;
  options.stderr.write(
    `group ${view.id}: ${view.status}, ${view.size} inputs, ${view.completed} succeeded, ${view.failed} failed, ${seconds.toFixed(1)} s\n`,
  );
  if (view.failed_indexes && view.failed_indexes.length > 0) {
    const listed = view.failed_indexes.slice(0, LISTED_FAILURES).map((index) => source.describe(index));
    const more = view.failed_indexes.length - listed.length;
    options.stderr.write(`left out (failed): ${listed.join(', ')}${more > 0 ? ` and ${more} more` : ''}\n`);
  }
  if (view.status !== 'succeeded') {
    const reason = view.error ? `${view.error.code}: ${view.error.message}` : view.status;
    options.stderr.write(`error: group ${view.id} ${view.status}: ${reason}\n`);
    return 1;
  }
  const output = await writeImage(view, options.png);
  options.stdout.write(`${JSON.stringify(output)}\n`);
  return 0;
}

/** Inputs of a run and how to name input `index` in messages. */
interface InputSource {
  inputs: AsyncIterable<unknown>;
  describe(index: number): string;
  /** Release the file (idempotent). */
  close(): Promise<void>;
}

/**
 * The non-empty lines of `file`, streamed (readline). Remembers only where line numbers jump over
 * skipped lines, to name an input by its line.
 * @throws InferlineError `invalid_input` when the file cannot be opened.
 */
async function textInputs(file: string): Promise<InputSource> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new InferlineError('invalid_input', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  /** [input index, line] at each input whose line is not the previous input's line + 1. */
  const jumps: [number, number][] = [];
  async function* lines(): AsyncGenerator<string> {
    const reader = createInterface({ input: handle.createReadStream({ encoding: 'utf8' }), crlfDelay: Infinity });
    let line = 0;
    let index = 0;
    let expected = 1;
    for await (const text of reader) {
      line += 1;
      if (text.trim() === '') continue;
      if (line !== expected) jumps.push([index, line]);
      expected = line + 1;
      index += 1;
      yield text;
    }
  }
  const lineOf = (index: number): number => {
    let at: [number, number] = [0, 1];
    for (const jump of jumps) {
      if (jump[0] > index) break;
      at = jump;
    }
    return at[1] + index - at[0];
  };
  return {
    inputs: lines(),
    describe: (index) => `input ${index} (${file} line ${lineOf(index)})`,
    close: () => handle.close().catch(() => undefined),
  };
}

/**
 * The images as `{"b64": ...}`, each file read when its chunk is sent.
 * @throws InferlineError `invalid_input` naming a path that is not a readable file.
 */
async function imageInputs(paths: string[]): Promise<InputSource> {
  for (const path of paths) {
    const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
      throw new InferlineError('invalid_input', `cannot read ${path}: ${error.code ?? String(error)}`);
    });
    if (!info.isFile()) throw new InferlineError('invalid_input', `${path} is not a file`);
  }
  async function* images(): AsyncGenerator<{ b64: string }> {
    for (const path of paths) yield { b64: (await readFile(path)).toString('base64') };
  }
  return { inputs: images(), describe: (index) => `input ${index} (${basename(paths[index] ?? '?')})`, close: () => Promise.resolve() };
}

/**
 * A `boxes` output carries its picture as `image: {b64}`: write it to `png` (default
 * `group-<id>.png`) and return the output with `png: <path>` in its place. Other outputs unchanged.
 */
async function writeImage(view: GroupView, png: string | undefined): Promise<unknown> {
  const output = view.output as { image?: { b64?: unknown } } | undefined;
  if (view.reduce !== 'boxes' || typeof output?.image?.b64 !== 'string') return view.output;
  const path = png ?? `group-${view.id}.png`;
  await writeFile(path, Buffer.from(output.image.b64, 'base64'));
  const rest = Object.fromEntries(Object.entries(output).filter(([key]) => key !== 'image'));
  return { ...rest, png: path };
}
