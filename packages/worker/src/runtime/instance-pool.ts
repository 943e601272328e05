import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { InferlineError, type InstanceKind, type Logger, type ModelConfig } from '@inferline/shared';
import { initBackend } from './backend.ts';
import type { InstanceData, InstanceMemory, InstanceReply, InstanceRequest } from './instance-messages.ts';
import { loadServable, type Servable } from './servable.ts';

/**
 * The instances of one model version on one worker (`instance_group.count`, Triton's instance groups;
 * TF Serving's per-model thread pools): each a worker thread (instance-thread.ts) with its own TF.js
 * backend and copy of the weights. {@link InstancePool.predict} runs a batch on a free instance, so up
 * to `count` batches of the version run at once, each on its own core, and none blocks the main
 * thread's event loop.
 *
 * An instance whose thread dies (a crash of the runtime, out of memory) fails the batch it was running
 * (the caller splits and retries it, DESIGN.md section 4) and is started again; the others keep serving.
 *
 * With `kind: 'main_thread'` (`instance_group.kind`) the version has one instance, run on the calling
 * (main) thread: no thread hand-off per batch (a structured clone of the inputs, a transfer of the
 * outputs and two thread wake-ups), at the price of the event loop waiting for each pass. It is for
 * models whose batch costs well under a millisecond (glove-embed: ~0.5 ms at batch 32).
 */

/** Pause before a crashed instance is started again, doubled after each failed start, ms. */
const RESTART_BACKOFF_MS = 500;
/** Longest pause between restarts of an instance that keeps failing to start, ms. */
const MAX_RESTART_BACKOFF_MS = 30_000;

/**
 * The thread's entry: tsx is registered in the thread first so that it runs the TypeScript sources, as
 * the main thread does (`--import tsx` does not reach worker threads).
 */
const THREAD_BOOTSTRAP = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(new URL('./instance-thread.ts', import.meta.url).href)}); })`;

/** Options of {@link InstancePool.start}. */
export interface InstancePoolOptions {
  config: ModelConfig;
  versionDir: string;
  version: number;
  /** TF.js backend the instances initialize (the worker's). */
  backend: string;
  /** Instances to run, ≥ 1 (one with `kind: 'main_thread'`). */
  count: number;
  /** Where the instances run (`instance_group.kind`); default `thread`. */
  kind?: InstanceKind;
  /** Batch sizes each instance warms up at before it serves. */
  warmupSizes: number[];
  logger: Logger;
}

interface Call {
  resolve: (outputs: Record<string, unknown>[]) => void;
  reject: (error: Error) => void;
}

/** One instance: its thread (or its servable on the main thread), and the call it runs (one at a time). */
interface Instance {
  index: number;
  /** The instance's thread; undefined for the main-thread instance. */
  thread?: Worker;
  /** The main-thread instance's model; undefined for a thread instance. */
  servable?: Servable;
  ready: boolean;
  busy: boolean;
  /** Calls sent to the thread and not answered: one predict at most, plus memory reads. */
  calls: Map<number, Call>;
  restartBackoffMs: number;
}

/** A batch waiting for a free instance. */
interface Waiter {
  inputs: readonly unknown[];
  call: Call;
}

/** Runs one model version's batches on `count` instance threads. */
export class InstancePool {
  readonly version: number;
  readonly #options: InstancePoolOptions;
  readonly #log: Logger;
  readonly #instances: Instance[] = [];
  readonly #waiting: Waiter[] = [];
  #nextCallId = 1;
  #disposed = false;
  #backend = '';
  /** Batches running now, over all instances. */
  #running = 0;

  private constructor(options: InstancePoolOptions) {
    this.version = options.version;
    this.#options = options;
    this.#log = options.logger.child({ model: options.config.name, version: options.version });
  }

  /**
   * Start `count` instances and resolve once every one has loaded and warmed up.
   * @throws InferlineError `invalid_config` when an instance fails to load (the message is the load
   *   error: a broken file, a config that does not fit the platform); every started thread is ended.
   */
  static async start(options: InstancePoolOptions): Promise<InstancePool> {
    const pool = new InstancePool(options);
    try {
      if (options.kind === 'main_thread') {
        await pool.#startOnMainThread();
        return pool;
      }
      await Promise.all(Array.from({ length: Math.max(1, options.count) }, (_, index) => pool.#spawn(index)));
    } catch (error) {
      await pool.dispose();
      throw error;
    }
    return pool;
  }

  /** TF.js backend the instances run on. */
  get backend(): string {
    return this.#backend;
  }

  /** Its one instance runs on the calling (main) thread (`kind: 'main_thread'`). */
  get mainThread(): boolean {
    return this.#options.kind === 'main_thread';
  }

  /** Instances running (ready or restarting). */
  get instances(): number {
    return this.#instances.length;
  }

  /** Batches running now, over all instances. */
  get running(): number {
    return this.#running;
  }

  /**
   * Run one batched forward pass on a free instance (waiting for one when all are busy): one output
   * object per input, in order (see `Servable.predict` for the input and output shapes).
   * @throws InferlineError as the model throws it (`invalid_input`), or Error when the instance's
   *   thread died during the pass; either fails the whole batch.
   */
  predict(inputs: readonly unknown[]): Promise<Record<string, unknown>[]> {
    if (this.#disposed) return Promise.reject(new InferlineError('version_unloaded', `model ${this.#options.config.name} version ${this.version} is unloaded`));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ inputs, call: { resolve, reject } });
      this.#dispatch();
    });
  }

  /**
   * TF.js memory summed over the ready instances. For the main-thread instance it is the main thread's
   * engine, which every main-thread version of the worker shares.
   */
  async memory(): Promise<InstanceMemory> {
    if (this.#options.kind === 'main_thread') {
      const figures = tf.memory();
      return { tensors: figures.numTensors, tensor_bytes: figures.numBytes };
    }
    const figures = await Promise.all(
      this.#instances.filter((instance) => instance.ready).map(
        (instance) =>
          new Promise<InstanceMemory>((resolve, reject) => {
            const id = this.#nextCallId++;
            instance.calls.set(id, { resolve: (value) => resolve(value as unknown as InstanceMemory), reject });
            instance.thread?.postMessage({ type: 'memory', id } satisfies InstanceRequest);
          }),
      ),
    );
    return figures.reduce((sum, f) => ({ tensors: sum.tensors + f.tensors, tensor_bytes: sum.tensor_bytes + f.tensor_bytes }), { tensors: 0, tensor_bytes: 0 });
  }

  /** End every instance thread (their memory is freed with them); waiting batches fail with `version_unloaded`. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    const unloaded = new InferlineError('version_unloaded', `model ${this.#options.config.name} version ${this.version} was unloaded`);
    for (const waiter of this.#waiting.splice(0)) waiter.call.reject(unloaded);
    await Promise.all(this.#instances.flatMap((instance) => (instance.thread ? [instance.thread.terminate()] : [])));
    // Never during a pass: a version with a batch in hand is not unloaded (RepositoryFollower).
    for (const instance of this.#instances) instance.servable?.dispose();
  }

  /**
   * Load the version on this thread (the backend the worker picked), warm it up, and make it the one
   * instance.
   * @throws InferlineError `invalid_config` when the load or the warm-up fails.
   */
  async #startOnMainThread(): Promise<void> {
    const { config, versionDir, version, backend, warmupSizes } = this.#options;
    let servable: Servable | undefined;
    try {
      await initBackend(backend);
      servable = await loadServable(config, versionDir, version);
      await servable.warmup(warmupSizes);
    } catch (error) {
      servable?.dispose();
      throw new InferlineError('invalid_config', error instanceof Error ? error.message : String(error));
    }
    this.#backend = servable.backend;
    this.#instances.push({ index: 0, servable, ready: true, busy: false, calls: new Map(), restartBackoffMs: RESTART_BACKOFF_MS });
  }

  /** Hand waiting batches to free instances. */
  #dispatch(): void {
    for (const instance of this.#instances) {
      if (this.#waiting.length === 0) return;
      if (!instance.ready || instance.busy) continue;
      const waiter = this.#waiting.shift() as Waiter;
      this.#run(instance, waiter);
    }
  }

  #run(instance: Instance, { inputs, call }: Waiter): void {
    const id = this.#nextCallId++;
    instance.busy = true;
    this.#running++;
    const done = (): void => {
      instance.busy = false;
      this.#running--;
      this.#dispatch();
    };
    instance.calls.set(id, {
      resolve: (outputs) => (done(), call.resolve(outputs)),
      reject: (error) => (done(), call.reject(error)),
    });
    if (instance.servable) {
      instance.servable.predict(inputs).then(
        (outputs) => this.#answer(instance, id)?.resolve(outputs),
        (error: unknown) => this.#answer(instance, id)?.reject(error instanceof Error ? error : new Error(String(error))),
      );
      return;
    }
    // Inputs are copied, not transferred: a failed batch is retried in halves with the same inputs.
    instance.thread?.postMessage({ type: 'predict', id, inputs: inputs as unknown[] } satisfies InstanceRequest);
  }

  /** Start the thread of instance `index`; resolves when it is ready, rejects when its load fails. */
  #spawn(index: number): Promise<void> {
    const { config, versionDir, version, backend, warmupSizes } = this.#options;
    const data: InstanceData = { config, versionDir, version, backend, warmupSizes };
    const thread = new Worker(THREAD_BOOTSTRAP, { eval: true, workerData: data, name: `${config.name}:${version}#${index}` });
    const previous = this.#instances[index];
    const instance: Instance = { index, thread, ready: false, busy: false, calls: new Map(), restartBackoffMs: previous?.restartBackoffMs ?? RESTART_BACKOFF_MS };
    this.#instances[index] = instance;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      thread.on('message', (reply: InstanceReply) => {
        switch (reply.type) {
          case 'ready':
            started = true;
            instance.ready = true;
            instance.restartBackoffMs = RESTART_BACKOFF_MS;
            this.#backend = reply.backend;
            resolve();
            this.#dispatch();
            return;
          case 'load_failed':
            reject(new InferlineError('invalid_config', reply.message));
            void thread.terminate();
            return;
          case 'result':
            this.#answer(instance, reply.id)?.resolve(reply.outputs);
            return;
          case 'memory':
            this.#answer(instance, reply.id)?.resolve(reply as unknown as Record<string, unknown>[]);
            return;
          case 'error': {
            const error = reply.code ? new InferlineError(reply.code as never, reply.message) : new Error(reply.message);
            this.#answer(instance, reply.id)?.reject(error);
            return;
          }
        }
      });
      thread.on('error', (error) => {
        this.#log.error({ err: error, instance: index }, 'model instance thread failed');
      });
      thread.on('exit', (code) => {
        instance.ready = false;
        const lost = [...instance.calls.values()];
        instance.calls.clear();
        const crash = new Error(`model instance ${index} of ${config.name} version ${version} ended (exit code ${code}) during the pass`);
        for (const call of lost) call.reject(crash);
        if (!started) {
          reject(new InferlineError('invalid_config', `model ${config.name} version ${version}: instance ${index} ended while loading (exit code ${code})`));
          return;
        }
        if (this.#disposed) return;
        this.#log.error({ instance: index, exit_code: code, failed_calls: lost.length }, 'model instance ended; starting it again');
        this.#restart(index);
      });
    });
  }

  /** Start a crashed instance again, with a growing pause while its start keeps failing. */
  #restart(index: number): void {
    const instance = this.#instances[index] as Instance;
    const wait = instance.restartBackoffMs;
    instance.restartBackoffMs = Math.min(MAX_RESTART_BACKOFF_MS, wait * 2);
    setTimeout(() => {
      if (this.#disposed) return;
      this.#spawn(index).then(
        () => this.#log.info({ instance: index }, 'model instance started again'),
        (error: unknown) => {
          this.#log.error({ err: error, instance: index }, 'model instance failed to start again');
          // With no instance left to serve them, the waiting batches fail instead of waiting forever.
          if (!this.#instances.some((other) => other.ready)) {
            for (const waiter of this.#waiting.splice(0)) waiter.call.reject(error instanceof Error ? error : new Error(String(error)));
          }
          if (!this.#disposed) this.#restart(index);
        },
      );
    }, wait).unref();
  }

  #answer(instance: Instance, id: number): Call | undefined {
    const call = instance.calls.get(id);
    instance.calls.delete(id);
    return call;
  }
}
