import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { InferlineError } from '@inferline/shared/errors';

/**
 * The TF.js backend of this process, picked once at start (DESIGN.md section 7): the first available of
 * `tensorflow` (libtensorflow through `@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`; neither is
 * a dependency: the GPU image installs them), `wasm` (`@tensorflow/tfjs-backend-wasm`, SIMD), `cpu`
 * (plain JS). `INFERLINE_BACKEND` forces one.
 * Backends: https://www.tensorflow.org/js/guide/platform_environment
 */

/** Backend names {@link initBackend} accepts, in order of preference. */
export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
/** One of {@link BACKEND_NAMES}. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Native packages tried for `tensorflow`, in order; a failed import means "not installed". */
const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

let picked: Promise<string> | undefined;

async function tryNative(): Promise<boolean> {
  for (const name of NATIVE_PACKAGES) {
    try {
      // Importing registers the `tensorflow` backend with tfjs-core.
      await import(name);
      if (await tf.setBackend('tensorflow')) return true;
    } catch {
      // Not installed (or libtensorflow missing): try the next one.
    }
  }
  return false;
}

async function tryWasm(): Promise<boolean> {
  // In Node the Emscripten loader reads `<prefix><binary>.wasm` from disk; point it at the package's
  // dist/ folder. Node has WebAssembly SIMD, and tfjs turns threads off under Node, so the loader
  // picks `tfjs-backend-wasm-simd.wasm` (one thread; setThreadsCount does not apply).
  const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
  setWasmPaths(`${dirname(main)}/`);
  try {
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

async function pick(forced: string | undefined): Promise<string> {
  if (forced !== undefined && forced !== '' && !(BACKEND_NAMES as readonly string[]).includes(forced)) {
    throw new InferlineError('invalid_config', `INFERLINE_BACKEND="${forced}": expected one of ${BACKEND_NAMES.join(', ')}`);
  }
  const candidates: readonly string[] = forced ? [forced] : BACKEND_NAMES;
  for (const name of candidates) {
    const ok = name === 'tensorflow' ? await tryNative() : name === 'wasm' ? await tryWasm() : await tf.setBackend('cpu');
    if (ok) {
      await tf.ready();
      return tf.getBackend();
    }
  }
  const hint = forced === 'tensorflow' ? ` (needs ${NATIVE_PACKAGES.join(' or ')} installed)` : '';
  throw new InferlineError('unavailable', `backend "${candidates.join(', ')}" cannot be initialized in this process${hint}`);
}

/**
 * Pick and initialize the TF.js backend; later calls return the first call's answer (the backend is
 * process-wide). Resolves to the backend name: `tensorflow`, `wasm` or `cpu`.
 * @param forced a name from {@link BACKEND_NAMES}; default `INFERLINE_BACKEND`; empty/undefined = first available
 * @throws InferlineError `invalid_config` for an unknown name, `unavailable` when the forced backend fails.
 */
export function initBackend(forced: string | undefined = process.env.INFERLINE_BACKEND): Promise<string> {
  picked ??= pick(forced).catch((error: unknown) => {
    picked = undefined;
    throw error;
  });
  return picked;
}

/**
 * True when the wasm backend runs its SIMD binary (tfjs' feature test `WASM_HAS_SIMD_SUPPORT`).
 * Meaningful once {@link initBackend} picked `wasm`.
 */
export async function wasmSimdEnabled(): Promise<boolean> {
  return (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
}
