/**
 * The only module that imports a TensorFlow.js package. It picks the backend:
 * tfjs-node-gpu (native TensorFlow, CUDA when present) if it loads, else wasm (XNNPACK, SIMD), else cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { UnsupportedError } from '../errors.js';
import type { BackendChoice, BackendName } from './choice.js';

export { tf };
export * as tfl from '@tensorflow/tfjs-layers';
export type { BackendChoice, BackendName };

export interface BackendInfo {
  name: BackendName;
  /** Threads the backend computes with. */
  threads: number;
  /** Why a faster backend was not used, when it was not. */
  fallbackReason?: string;
}

export interface BackendNotices {
  notice(message: string): void;
  verbose(message: string): void;
}

async function loadNative(): Promise<string | undefined> {
  try {
    // Not a declared import so that TypeScript and bundlers do not require the optional package.
    const name = '@tensorflow/tfjs-node-gpu';
    await import(name);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND') return '@tensorflow/tfjs-node-gpu is not installed';
    if (/tfjs_binding\.node/.test((err as Error).message)) {
      return '@tensorflow/tfjs-node-gpu is installed without its native binding (libtensorflow could not be downloaded)';
    }
    return `@tensorflow/tfjs-node-gpu failed to load (${(err as Error).message.split('\n')[0]})`;
  }
}

async function loadWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
}

async function activate(name: BackendName): Promise<boolean> {
  try {
    return await tf.setBackend(name);
  } catch {
    return false;
  }
}

function threadsOf(name: BackendName): number {
  if (name === 'tensorflow') return tf.env().getNumber('TF_NUM_THREADS' as never) || 0;
  // wasm: multithreading is disabled by tfjs in Node (WASM_HAS_MULTITHREAD_SUPPORT false); cpu is single-threaded JS.
  return 1;
}

let current: BackendInfo | undefined;

/** Initialises the backend once per process; later calls return the first result. */
export async function initBackend(choice: BackendChoice, notices: BackendNotices): Promise<BackendInfo> {
  if (current) return current;
  tf.env().set('IS_TEST', false);
  let fallbackReason: string | undefined;
  if (choice === 'auto' || choice === 'tensorflow') {
    const failure = await loadNative();
    if (failure === undefined && (await activate('tensorflow'))) {
      current = { name: 'tensorflow', threads: threadsOf('tensorflow') };
    } else if (choice === 'tensorflow') {
      throw new UnsupportedError(`the native backend is not available: ${failure ?? 'it did not initialise'}`, {
        hint: 'install @tensorflow/tfjs-node-gpu (needs libtensorflow) or use --backend wasm',
      });
    } else {
      fallbackReason = failure ?? 'the native backend did not initialise';
    }
  }
  if (!current && (choice === 'auto' || choice === 'wasm')) {
    try {
      await loadWasm();
      if (await activate('wasm')) current = { name: 'wasm', threads: threadsOf('wasm') };
    } catch (err) {
      if (choice === 'wasm') {
        throw new UnsupportedError(`the wasm backend failed to start: ${(err as Error).message}`, {
          hint: 'use --backend cpu',
        });
      }
    }
    if (!current) fallbackReason = `${fallbackReason ?? ''}; the wasm backend did not initialise`.replace(/^; /, '');
  }
  if (!current) {
    if (!(await activate('cpu'))) throw new UnsupportedError('no TensorFlow.js backend could be initialised');
    current = { name: 'cpu', threads: 1 };
  }
  if (fallbackReason) {
    current.fallbackReason = fallbackReason;
    notices.notice(`native backend not available (${fallbackReason}); running on ${current.name}, which is slower`);
  }
  notices.verbose(`backend: ${current.name} (${current.threads} thread${current.threads === 1 ? '' : 's'})`);
  return current;
}
