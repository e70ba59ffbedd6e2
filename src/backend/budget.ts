/**
 * Will the model fit? Checked before loading so that an oversized model gets a clear error, not the wasm
 * heap's "memory access out of bounds" half-way through. On wasm, count about twice the float32 weight
 * bytes under a ~4 GB heap: the weights all pass through the heap while loading, and the decode step's
 * matrices then have a second, packed copy (the matvec engine's, in its own memory, with a bfloat16 screen
 * of the lm_head beside it; or XNNPACK's, in the heap, when the engine does not take them). The engine's
 * own 4 GiB are checked where it packs (t5EngineBytes).
 */
import { freemem } from 'node:os';
import { UnsupportedError } from '../errors.js';
import type { BackendName } from './choice.js';

const GiB = 2 ** 30;
/** The wasm32 address space less what the runtime, activations and caches need. */
const WASM_HEAP_LIMIT = 4 * GiB - 0.5 * GiB;

export interface MemoryNeed {
  bytes: number;
  limit: number;
  where: string;
}

export function memoryNeed(backend: BackendName, weightBytes: number): MemoryNeed {
  if (backend === 'wasm') return { bytes: 2 * weightBytes, limit: WASM_HEAP_LIMIT, where: 'the wasm heap' };
  // cpu and native TensorFlow keep one float32 copy of the weights in process memory.
  return { bytes: weightBytes, limit: freemem(), where: 'free memory' };
}

const gb = (n: number): string => `${(n / GiB).toFixed(1)} GiB`;

export function checkMemoryBudget(backend: BackendName, weightBytes: number, model: string): void {
  const need = memoryNeed(backend, weightBytes);
  if (need.bytes <= need.limit) return;
  throw new UnsupportedError(
    `${model} needs about ${gb(need.bytes)} on the ${backend} backend (${gb(weightBytes)} of float32 weights), more than ${where(need)}`,
    {
      hint:
        backend === 'wasm'
          ? 'use the native backend: install @tensorflow/tfjs-node-gpu (CUDA or CPU TensorFlow) and pass --backend tensorflow, or pick a smaller model'
          : 'free memory or pick a smaller model',
    },
  );
}

function where(need: MemoryNeed): string {
  return `the ${gb(need.limit)} of ${need.where}`;
}
