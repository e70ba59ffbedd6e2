/**
 * A weight matrix multiplied as x[rows, in] @ W[in, out] in the hot path of decoding. On the wasm and cpu
 * backends it lives packed in the matvec engine (backend/matvec/engine.ts: all cores, the layout its
 * kernel streams) and the product is a tfjs kernel, TfhfProjection, so model code stays plain tfjs
 * inside tf.tidy; elsewhere (tfjs-node-gpu) it is an ordinary [in, out] tensor and a tf.matMul.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { tf } from '../backend/index.js';
import { MatVecEngine, type PackedMatrix } from '../backend/matvec/engine.js';
import { BLOCK, GROUP } from '../backend/matvec/kernel-wasm.js';
import type { BoundedLogits } from '../generation/seq2seq.js';

const KERNEL = 'TfhfProjection';
const ENGINE_BACKENDS = ['wasm', 'cpu'] as const;

/** Packed matrices by id: kernel attributes are numbers, not objects. */
const packed = new Map<number, PackedMatrix>();
let nextId = 1;

type KernelParams = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function matrixOf(attrs: tf.NamedAttrMap | undefined): PackedMatrix {
  const m = packed.get((attrs as { matrix: number }).matrix);
  if (!m) throw new Error('TfhfProjection: the matrix was disposed');
  return m;
}

function wasmKernel({ inputs, backend, attrs }: KernelParams): tf.TensorInfo {
  const b = backend as BackendWasm;
  const x = inputs.x as tf.TensorInfo;
  const m = matrixOf(attrs);
  const rows = x.shape[0] as number;
  const out = b.makeOutput([rows, m.n], 'float32');
  // Views after the allocation: growing the heap detaches earlier ones.
  MatVecEngine.shared().multiply(b.typedArrayFromHeap(x) as Float32Array, rows, m, b.typedArrayFromHeap(out) as Float32Array);
  return out;
}

function cpuKernel({ inputs, backend, attrs }: KernelParams): tf.TensorInfo {
  const b = backend as MathBackendCPU;
  const x = inputs.x as tf.TensorInfo;
  const m = matrixOf(attrs);
  const rows = x.shape[0] as number;
  const out = new Float32Array(rows * m.n);
  MatVecEngine.shared().multiply(b.readSync(x.dataId) as Float32Array, rows, m, out);
  return b.makeTensorInfo([rows, m.n], 'float32', out);
}

/** A tensor's float32 values without a copy where the backend allows (the wasm heap). */
function values(w: tf.Tensor): Float32Array {
  if (tf.getBackend() !== 'wasm') return w.dataSync() as Float32Array;
  return (tf.backend() as BackendWasm).typedArrayFromHeap({ dataId: w.dataId, shape: w.shape, dtype: 'float32' }) as Float32Array;
}

let registered = false;
function register(): void {
  if (registered) return;
  registered = true;
  for (const backendName of ENGINE_BACKENDS) {
    if (tf.getKernel(KERNEL, backendName)) continue;
    const kernelFunc = (backendName === 'wasm' ? wasmKernel : cpuKernel) as unknown as tf.KernelFunc;
    tf.registerKernel({ kernelName: KERNEL, backendName, kernelFunc });
  }
}

let forced: boolean | undefined;

/** Tests: `false` keeps projections as tensors on every backend; `undefined` restores the default. */
export function forceEngine(value: boolean | undefined): void {
  forced = value;
}

/** Whether the matvec engine runs on the current backend (a model may still keep its matrices out of it). */
export function engineEnabled(): boolean {
  return forced !== false && (ENGINE_BACKENDS as readonly string[]).includes(tf.getBackend());
}

export class Projection {
  /** bounded()'s buffer for exact outputs, at their columns. */
  private columns: Float32Array | undefined;

  private constructor(
    private tensor: tf.Tensor2D | undefined,
    /** Whether dispose() frees `tensor` (not when the caller kept it). */
    private readonly owns: boolean,
    private readonly id: number,
    /** [in, out] */
    readonly shape: readonly [number, number],
  ) {}

  /**
   * Takes `w` [in, out]: with `pack`, packs it into the engine (and disposes it), else keeps it as is.
   * With `keep`, the tensor stays alive either way (the caller still needs it, e.g. a tied embedding).
   * With `screen` (and `pack`), a bfloat16 copy is packed beside it for bounded() (engine.ts Screen).
   */
  static from(w: tf.Tensor2D, pack: boolean, options: { keep?: boolean; screen?: boolean } = {}): Projection {
    const [k, n] = w.shape;
    const keep = options.keep ?? false;
    if (!pack) return new Projection(w, !keep, 0, [k, n]);
    register();
    const id = nextId++;
    packed.set(id, MatVecEngine.shared().pack(values(w), k, n, options.screen ?? false));
    if (!keep) w.dispose();
    return new Projection(undefined, false, id, [k, n]);
  }

  /** x [rows, in] → [rows, out] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    if (this.tensor) return tf.matMul(x, this.tensor);
    return tf.engine().runKernel(KERNEL, { x }, { matrix: this.id }) as tf.Tensor2D;
  }

  /** Whether bounded() is available. */
  get screened(): boolean {
    return packed.get(this.id)?.screen !== undefined;
  }

  /**
   * x [rows, in] (host values) @ W, bounded: the screen's product and each output's bound (engine.ts
   * ScreenProduct), exact outputs on request. Needs a screen (`screened`). Valid until the next call.
   */
  bounded(x: Float32Array, rows: number): BoundedLogits {
    const m = packed.get(this.id);
    if (!m?.screen) throw new Error('bounded: the projection has no screen');
    const engine = MatVecEngine.shared();
    const [k, n] = this.shape;
    const product = engine.multiplyScreen(x, rows, m);
    const exact = (row: number, tokens: readonly number[]): Float32Array => {
      const out = (this.columns ??= new Float32Array(n));
      const xRow = x.subarray(row * k, (row + 1) * k);
      // Past a quarter of the matrix in multiplyColumns' groups, one whole product on every thread is faster.
      if (tokens.length * GROUP * BLOCK > n / 4) engine.multiply(xRow, 1, m, out);
      else engine.multiplyColumns(xRow, m, tokens, out);
      return Float32Array.from(tokens, (j) => out[j] as number);
    };
    return {
      bounds: (row, tokens) => engine.screenBounds(product, row, tokens),
      maxLower: (row, except) => engine.screenMaxLower(product, row, except),
      reaching: (row, threshold, except) => engine.screenReaching(product, row, threshold, except),
      exact,
    };
  }

  get bytes(): number {
    return 4 * this.shape[0] * this.shape[1];
  }

  dispose(): void {
    if (this.owns) this.tensor?.dispose();
    this.tensor = undefined;
    const m = packed.get(this.id);
    if (m) {
      MatVecEngine.shared().free(m);
      packed.delete(this.id);
    }
  }
}
