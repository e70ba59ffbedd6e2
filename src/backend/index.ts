/**
 * The only module that imports a TensorFlow.js package. It picks the backend:
 * tfjs-node-gpu (native TensorFlow, CUDA when present) if it loads, else wasm (XNNPACK, SIMD), else cpu.
 *
 * The packages are CommonJS bundles: they are loaded with `require` (TypeScript's `import x = require()`
 * compiles to createRequire in an ES module) rather than `import`, which would make Node parse each
 * multi-megabyte bundle with cjs-module-lexer to find its named exports (~0.2–0.6 s of start-up).
 * The types are the packages' own.
 */
import { createRequire } from 'node:module';
import { UnsupportedError } from '../errors.js';
import type { BackendChoice, BackendName } from './choice.js';
import { faultIn } from './fault-in.js';
import { engineThreads, MatVecEngine } from './matvec/engine.js';
import tf = require('@tensorflow/tfjs-core');
import tfl = require('@tensorflow/tfjs-layers');

const require = createRequire(import.meta.url);
require('@tensorflow/tfjs-backend-cpu');

export { tf, tfl };
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
    require(name);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') return '@tensorflow/tfjs-node-gpu is not installed';
    if (/tfjs_binding\.node/.test((err as Error).message)) {
      return '@tensorflow/tfjs-node-gpu is installed without its native binding (libtensorflow could not be downloaded)';
    }
    return `@tensorflow/tfjs-node-gpu failed to load (${(err as Error).message.split('\n')[0]})`;
  }
}

async function loadWasm(): Promise<void> {
  require('@tensorflow/tfjs-backend-wasm');
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
  // wasm and cpu: tfjs computes on one thread (tfjs disables wasm's threads in Node), the decode steps'
  // products run on the matvec engine's threads, started now so that its workers load with the model.
  return MatVecEngine.shared().threads;
}

let current: BackendInfo | undefined;

/** Initialises the backend once per process; later calls return the first result. */
export async function initBackend(choice: BackendChoice, notices: BackendNotices): Promise<BackendInfo> {
  if (current) return current;
  engineThreads(); // a bad TFHF_NUM_THREADS is a usage error, whichever backend runs
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
    current = { name: 'cpu', threads: threadsOf('cpu') };
  }
  if (fallbackReason) {
    current.fallbackReason = fallbackReason;
    notices.notice(`native backend not available (${fallbackReason}); running on ${current.name}, which is slower`);
  }
  const engine = current.name === 'tensorflow' ? '' : ' for decode-step products (matvec engine; TFHF_NUM_THREADS sets it), 1 for the rest';
  notices.verbose(`backend: ${current.name} (${current.threads} thread${current.threads === 1 ? '' : 's'}${engine})`);
  return current;
}

/** The Emscripten heap of the wasm backend, as far as prefaultHeap uses it. */
interface WasmHeap {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  HEAPU8: Uint8Array;
}

/**
 * wasm only: grows the heap by `bytes` and faults its pages in on libuv's threads (fault-in.ts), so that
 * the weights that fill it next are written to memory that is already mapped. With `until`, no new chunk
 * starts once it settles. The block is malloc'd while the reads run and freed at the end, so tfjs ops
 * meanwhile get other memory, and the tensors allocated next reuse these (now mapped) pages. A no-op on
 * other backends or if malloc fails.
 */
export async function prefaultHeap(bytes: number, until?: Promise<unknown>): Promise<void> {
  if (tf.getBackend() !== 'wasm' || !(bytes > 0)) return;
  const heap = (tf.backend() as unknown as { wasm: WasmHeap }).wasm;
  const pointer = heap._malloc(bytes) >>> 0;
  if (pointer === 0) return;
  try {
    await faultIn((at, n) => new Uint8Array(heap.HEAPU8.buffer, pointer + at, n), bytes, until);
  } finally {
    heap._free(pointer);
  }
}
