import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { isInferlineError } from '@inferline/shared/errors';
import { initBackend } from './backend.ts';
import { transferables, type InstanceData, type InstanceReply, type InstanceRequest } from './instance-messages.ts';
import { loadServable, type Servable } from './servable.ts';

/**
 * One model instance (`instance_group`), the body of a worker thread started by instance-pool.ts: it
 * initializes the TF.js backend the main thread chose (its own wasm module and heap), loads the
 * version, warms it up, reports `ready`, then runs each `predict` it is sent, one at a time, and
 * answers with the outputs (their buffers transferred). Ending the thread frees all of its memory.
 *
 * Fail point, for fault tests: when `INFERLINE_FAILPOINT_INSTANCE_EXIT` is set, a batch that contains
 * a text input equal to it ends the thread (exit code {@link FAILPOINT_EXIT_CODE}) before its pass, as
 * a crash of the runtime would.
 */

/** Exit code of a thread ended by the fail point. */
export const FAILPOINT_EXIT_CODE = 70;

const port = parentPort;
if (!port) throw new Error('instance-thread.ts runs as a worker thread');
const data = workerData as InstanceData;
const failpoint = process.env.INFERLINE_FAILPOINT_INSTANCE_EXIT;

function post(reply: InstanceReply, transfer: ArrayBuffer[] = []): void {
  try {
    port?.postMessage(reply, transfer);
  } catch {
    // A buffer that cannot be moved (say, a view on the wasm heap) is copied instead.
    port?.postMessage(reply);
  }
}

function memory(): { tensors: number; tensor_bytes: number } {
  const figures = tf.memory();
  return { tensors: figures.numTensors, tensor_bytes: figures.numBytes };
}

async function handle(servable: Servable, request: InstanceRequest): Promise<void> {
  if (request.type === 'memory') {
    post({ type: 'memory', id: request.id, ...memory() });
    return;
  }
  if (failpoint !== undefined && request.inputs.includes(failpoint)) process.exit(FAILPOINT_EXIT_CODE);
  try {
    const outputs = await servable.predict(request.inputs);
    post({ type: 'result', id: request.id, outputs }, transferables(outputs));
  } catch (error) {
    post({
      type: 'error',
      id: request.id,
      message: error instanceof Error ? error.message : String(error),
      ...(isInferlineError(error) ? { code: error.code } : {}),
    });
  }
}

async function start(): Promise<void> {
  let servable: Servable | undefined;
  try {
    await initBackend(data.backend);
    servable = await loadServable(data.config, data.versionDir, data.version);
    await servable.warmup(data.warmupSizes);
  } catch (error) {
    servable?.dispose();
    post({ type: 'load_failed', message: error instanceof Error ? error.message : String(error) });
    return;
  }
  const loaded = servable;
  // The pool sends one predict at a time; chaining keeps that true even if it did not.
  let previous: Promise<void> = Promise.resolve();
  port?.on('message', (request: InstanceRequest) => {
    previous = previous.then(() => handle(loaded, request));
  });
  post({ type: 'ready', backend: loaded.backend, ...memory() });
}

void start();
