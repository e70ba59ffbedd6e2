/**
 * Building blocks shared by the model families (T5 now, FlauBERT next): normalisations, activations, the
 * linear layer with its one weight-layout policy, and a tfjs-layers base class whose weights come from a
 * checkpoint instead of initializers.
 *
 * Layout policy: PyTorch `nn.Linear` stores [out, in]; we transpose ONCE at load into a long-lived
 * [in, out] tensor, so every matMul in the hot path is a plain 2-D `x[rows, in] @ W[in, out]`, the only
 * shape the wasm backend sends to XNNPACK's fully-connected kernel (which then caches a packed copy per
 * weight tensor; see docs/performance-notes.md).
 *
 * The functions here create tensors without their own tf.tidy: callers run them inside one tidy per
 * forward pass or decode step (a tidy per op costs more than the op on wasm).
 */
import { tf, tfl } from '../backend/index.js';
import { FormatError } from '../errors.js';
import { toFloat32, type CheckpointReader } from '../formats/tensor.js';

/** Activations of Hugging Face's ACT2FN that our models use. */
export type Activation = 'relu' | 'gelu' | 'gelu_new' | 'silu';

/** RMS norm (T5LayerNorm): weight · x / sqrt(mean(x²) + eps) over the last axis; no mean, no bias. */
export function rmsNorm<T extends tf.Tensor>(x: T, weight: tf.Tensor1D, eps: number): T {
  const variance = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight);
}

/** Layer norm with bias (BERT / XLM / FlauBERT) over the last axis, biased variance like torch. */
export function layerNorm<T extends tf.Tensor>(x: T, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): T {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

/** x[rows, in] @ w[in, out] (+ bias[out]); relu is fused into the matMul kernel where the backend can. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor1D, activation?: 'relu'): tf.Tensor2D {
  if (activation === undefined && bias === undefined) return tf.matMul(x, w);
  return tf.fused.matMul({ a: x, b: w, ...(bias ? { bias } : {}), ...(activation ? { activation } : {}) }) as tf.Tensor2D;
}

/** gelu_new / gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluNew<T extends tf.Tensor>(x: T): T {
  // Same function written as x·sigmoid(2z) (0.5·(1 + tanh z) = sigmoid 2z): 6 kernels instead of 9.
  const a = 2 * Math.sqrt(2 / Math.PI);
  const z = tf.mul(x, tf.add(tf.mul(tf.square(x), a * 0.044715), a));
  return tf.mul(x, tf.sigmoid(z));
}

/** Exact gelu (erf form), as XLM / FlauBERT use it. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

export function activate<T extends tf.Tensor>(x: T, activation: Activation): T {
  switch (activation) {
    case 'relu':
      return tf.relu(x);
    case 'gelu':
      return gelu(x);
    case 'gelu_new':
      return geluNew(x);
    case 'silu':
      return tf.mul(x, tf.sigmoid(x));
  }
}

/**
 * Above this many query×key pairs per head, attention runs as one 2-D matMul per (batch, head): the wasm
 * backend sends batched matMuls to a scalar loop (~1 GFLOP/s) and only 2-D ones to XNNPACK, which wins
 * from about 128×128 on even after packing its transient operand (measured 3–4× faster at 256–512 tokens).
 */
const PER_HEAD_MIN_PAIRS = 128 * 128;

/**
 * softmax(scale·q·kᵀ + bias)·v for q [batch, heads, lenQ, d], k and v [batch, heads, lenK, d]; bias
 * broadcasts to [batch, heads, lenQ, lenK] (position bias, additive masks). Returns [batch, heads, lenQ, d].
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias?: tf.Tensor, scale = 1): tf.Tensor4D {
  const [batch, heads, lenQ, d] = q.shape;
  const lenK = k.shape[2];
  const q1 = scale === 1 ? q : tf.mul(q, scale);
  if (lenQ * lenK < PER_HEAD_MIN_PAIRS) {
    let scores: tf.Tensor4D = tf.matMul(q1, k, false, true); // [batch, heads, lenQ, lenK]
    if (bias) scores = tf.add(scores, bias);
    return tf.matMul(tf.softmax(scores), v);
  }
  const n = batch * heads;
  const qs = tf.unstack(tf.reshape(q1, [n, lenQ, d])) as tf.Tensor2D[];
  const kts = tf.unstack(tf.reshape(tf.transpose(k, [0, 1, 3, 2]), [n, d, lenK])) as tf.Tensor2D[];
  const products = qs.map((qi, i) => tf.matMul(qi, kts[i] as tf.Tensor2D)); // n × [lenQ, lenK]
  let scores: tf.Tensor4D = tf.reshape(tf.stack(products), [batch, heads, lenQ, lenK]);
  if (bias) scores = tf.add(scores, bias);
  const ps = tf.unstack(tf.reshape(tf.softmax(scores), [n, lenQ, lenK])) as tf.Tensor2D[];
  const vs = tf.unstack(tf.reshape(v, [n, lenK, d])) as tf.Tensor2D[];
  return tf.reshape(tf.stack(ps.map((pi, i) => tf.matMul(pi, vs[i] as tf.Tensor2D))), [batch, heads, lenQ, d]);
}

const shapeText = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** A PyTorch Linear weight as read: [out, in] as PyTorch stores it, or [in, out] where the file stores it transposed. */
interface Matrix {
  readonly data: Float32Array;
  readonly transposed: boolean;
}

/** A reader that reads a stored float32 tensor straight into memory it is given (formats/tfjs-artifacts.ts). */
interface DirectReader {
  /** `dest` is called right before each read is issued (a view taken earlier may be detached). */
  readInto(name: string, dest: () => Uint8Array): Promise<boolean>;
}

function directReader(reader: CheckpointReader): DirectReader | undefined {
  const r = reader as Partial<DirectReader>;
  return typeof r.readInto === 'function' ? (reader as unknown as DirectReader) : undefined;
}

/** The part of the wasm backend a direct read uses (public methods of BackendWasm; write(null) only allocates). */
interface HeapBackend {
  write(values: null, shape: number[], dtype: 'float32'): object;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

/** The names a reader stores transposed (tfhf-converted artifacts; see formats/tfjs-artifacts.ts), else none. */
function storedTransposed(reader: CheckpointReader): ReadonlySet<string> {
  const t = (reader as { transposed?: unknown }).transposed;
  return t instanceof Set ? (t as ReadonlySet<string>) : new Set<string>();
}

/**
 * Reads checkpoint tensors as float32 TensorFlow.js tensors in the layout layers want, checking each
 * shape against what the config implies (a mismatch names the tensor, not a later matMul). Tensors a
 * converted artifact stores transposed arrive that way; each method returns the layout it promises
 * either way, transposing on the host only when the file's layout is not the one wanted.
 */
export class CheckpointWeights {
  private readonly transposed: ReadonlySet<string>;
  private readonly direct: DirectReader | undefined;
  private shapes: Map<string, readonly number[]> | undefined;

  /**
   * @param packProjections where decode-step matrices go (models/projection.ts): packed into the matvec
   * engine, or kept as tensors. The model decides, knowing its size.
   */
  constructor(
    private readonly reader: CheckpointReader,
    readonly packProjections = false,
  ) {
    this.transposed = storedTransposed(reader);
    this.direct = directReader(reader);
  }

  has(name: string): boolean {
    return this.reader.has(name);
  }

  /** A tensor's float32 values as the file holds them, after checking the shape. */
  private async values(name: string, shape: readonly number[]): Promise<Float32Array> {
    if (!this.reader.has(name)) {
      throw new FormatError(`the checkpoint has no tensor '${name}'`, {
        hint: 'the weights do not match config.json (wrong or truncated checkpoint)',
      });
    }
    const raw = await this.reader.read(name);
    if (raw.shape.length !== shape.length || raw.shape.some((d, i) => d !== shape[i])) {
      const how = this.transposed.has(name) ? ' (stored transposed)' : '';
      throw new FormatError(`tensor '${name}' has shape ${shapeText(raw.shape)}, expected ${shapeText(shape)}${how}`, {
        hint: 'the weights do not match config.json',
      });
    }
    return toFloat32(raw);
  }

  private checkStored(name: string, shape: readonly number[]): void {
    if (!this.reader.has(name)) {
      throw new FormatError(`the checkpoint has no tensor '${name}'`, {
        hint: 'the weights do not match config.json (wrong or truncated checkpoint)',
      });
    }
    this.shapes ??= new Map(this.reader.tensors.map((t) => [t.name, t.shape]));
    const stored = this.shapes.get(name) ?? [];
    if (stored.length !== shape.length || stored.some((d, i) => d !== shape[i])) {
      const how = this.transposed.has(name) ? ' (stored transposed)' : '';
      throw new FormatError(`tensor '${name}' has shape ${shapeText(stored)}, expected ${shapeText(shape)}${how}`, {
        hint: 'the weights do not match config.json',
      });
    }
  }

  /**
   * wasm, with a reader that can: the stored tensors `parts` (float32, as stored) read back to back
   * straight into one new heap tensor of `shape`, no JavaScript buffer in between (no copy, no garbage,
   * and the page faults of the fresh heap memory are taken by the reading threads). Undefined where
   * that is not possible (other backends or readers, quantized storage): the caller reads via the host.
   */
  private async heapRead(parts: readonly { name: string; shape: readonly number[] }[], shape: number[]): Promise<tf.Tensor | undefined> {
    const direct = this.direct;
    if (!direct || tf.getBackend() !== 'wasm') return undefined;
    for (const p of parts) this.checkStored(p.name, p.shape);
    const backend = tf.backend();
    const heap = backend as unknown as HeapBackend;
    const dataId = heap.write(null, shape, 'float32');
    const tensor = tf.engine().makeTensorFromDataId(dataId, shape, 'float32', backend);
    // The reads fill the tensor's memory from libuv's threads. Layers load concurrently, so the heap may
    // grow meanwhile, which detaches every view of it: each read takes a fresh view as it is issued. The
    // memory itself stays put (V8 grows wasm memory in place on 64-bit), so a read in flight is safe.
    const info = { dataId, shape, dtype: 'float32' as const };
    let at = 0;
    const reads = parts.map((p) => {
      const n = 4 * p.shape.reduce((a, b) => a * b, 1);
      const from = at;
      at += n;
      return direct.readInto(p.name, () => {
        const view = heap.typedArrayFromHeap(info);
        return new Uint8Array(view.buffer, view.byteOffset + from, n);
      });
    });
    // Every read settles before the tensor may be freed: a read still writing would corrupt the heap.
    const results = await Promise.allSettled(reads);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed && results.every((r) => r.status === 'fulfilled' && r.value)) return tensor;
    tensor.dispose();
    if (failed) throw failed.reason;
    return undefined;
  }

  private async matrix(name: string, inFeatures: number, outFeatures: number): Promise<Matrix> {
    const transposed = this.transposed.has(name);
    return { data: await this.values(name, transposed ? [inFeatures, outFeatures] : [outFeatures, inFeatures]), transposed };
  }

  /**
   * A new float32 tensor of `shape` and memory to fill it through, before any await: on wasm the tensor's
   * own heap memory (no host copy of the matrix beside it: the lm_head's would be 66 MB more at the peak
   * of loading), elsewhere a host array the tensor then takes.
   */
  private target(shape: [number, number]): { values: Float32Array; tensor: () => tf.Tensor2D } {
    if (tf.getBackend() !== 'wasm') {
      const values = new Float32Array(shape[0] * shape[1]);
      return { values, tensor: () => tf.tensor2d(values, shape) };
    }
    const backend = tf.backend();
    const heap = backend as unknown as HeapBackend;
    const dataId = heap.write(null, shape, 'float32');
    const tensor = tf.engine().makeTensorFromDataId(dataId, shape, 'float32', backend) as tf.Tensor2D;
    return { values: heap.typedArrayFromHeap({ dataId, shape, dtype: 'float32' }), tensor: () => tensor };
  }

  /** A tensor as PyTorch stores it, float32. */
  async tensor(name: string, shape: readonly number[]): Promise<tf.Tensor> {
    if (shape.length === 2 && this.transposed.has(name)) return this.linearStack([name], shape[1] as number, [shape[0] as number]);
    return (await this.heapRead([{ name, shape }], [...shape])) ?? tf.tensor(await this.values(name, shape), [...shape], 'float32');
  }

  /**
   * PyTorch Linear weights [out_i, in] side by side as one [in, Σ out_i] matrix (each transposed, on the
   * host, unless the file stores it so): one matMul computes every projection, e.g. q|k|v.
   */
  async linearConcat(names: readonly string[], inFeatures: number, outFeatures: readonly number[]): Promise<tf.Tensor2D> {
    const total = outFeatures.reduce((a, b) => a + b, 0);
    if (names.every((n) => this.transposed.has(n))) {
      const direct = await Promise.all(names.map((name, i) => this.heapRead([{ name, shape: [inFeatures, outFeatures[i] as number] }], [inFeatures, outFeatures[i] as number])));
      if (direct.every((t) => t !== undefined)) {
        if (direct.length === 1) return direct[0] as tf.Tensor2D;
        const joined = tf.concat(direct as tf.Tensor2D[], 1);
        tf.dispose(direct as tf.Tensor[]);
        return joined;
      }
      tf.dispose(direct.filter((t): t is tf.Tensor => t !== undefined));
    }
    const parts = await Promise.all(names.map((name, i) => this.matrix(name, inFeatures, outFeatures[i] as number)));
    if (parts.length === 1 && parts[0]?.transposed) return tf.tensor2d(parts[0].data, [inFeatures, total]);
    // No await from here on: a heap view detaches when another layer's load grows the heap.
    const { values: out, tensor } = this.target([inFeatures, total]);
    let column = 0;
    parts.forEach((w, i) => {
      const rows = outFeatures[i] as number;
      if (!w.transposed) transposeInto(w.data, rows, inFeatures, out, total, column);
      else for (let r = 0; r < inFeatures; r++) out.set(w.data.subarray(r * rows, (r + 1) * rows), r * total + column);
      column += rows;
    });
    return tensor();
  }

  /** PyTorch Linear weights [out_i, in] stacked as PyTorch stores them into one [Σ out_i, in] matrix. */
  async linearStack(names: readonly string[], inFeatures: number, outFeatures: readonly number[]): Promise<tf.Tensor2D> {
    const total = outFeatures.reduce((a, b) => a + b, 0);
    if (!names.some((n) => this.transposed.has(n))) {
      const stored = names.map((name, i) => ({ name, shape: [outFeatures[i] as number, inFeatures] }));
      const direct = await this.heapRead(stored, [total, inFeatures]);
      if (direct) return direct as tf.Tensor2D;
    }
    const parts = await Promise.all(names.map((name, i) => this.matrix(name, inFeatures, outFeatures[i] as number)));
    if (parts.length === 1 && !parts[0]?.transposed) return tf.tensor2d((parts[0] as Matrix).data, [total, inFeatures]);
    // No await from here on: a heap view detaches when another layer's load grows the heap.
    const { values: out, tensor } = this.target([total, inFeatures]);
    let at = 0;
    parts.forEach((w, i) => {
      const rows = outFeatures[i] as number;
      if (w.transposed) transposeInto(w.data, inFeatures, rows, out.subarray(at, at + rows * inFeatures), inFeatures, 0);
      else out.set(w.data, at);
      at += rows * inFeatures;
    });
    return tensor();
  }

  /** A PyTorch Linear weight [out, in], returned transposed as [in, out] (on the host, or as the file stores it). */
  async linear(name: string, inFeatures: number, outFeatures: number): Promise<tf.Tensor2D> {
    return this.linearConcat([name], inFeatures, [outFeatures]);
  }
}

/** src [rows, cols] → dst columns col0…col0+rows-1 of a row-major [cols, width] matrix, in cache-sized blocks. */
function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array, width: number, col0: number): void {
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) {
        let s = r * cols + c0;
        let d = c0 * width + col0 + r;
        for (let c = c0; c < c1; c++, s++, d += width) dst[d] = src[s] as number;
      }
    }
  }
}

type DisposeResult = ReturnType<InstanceType<typeof tfl.layers.Layer>['dispose']>;

/**
 * A tfjs-layers Layer used for inference only: it adopts already-loaded tensors as its (non-trainable)
 * weights, so nothing is initialised and then overwritten, and its methods are called directly rather
 * than through `apply()` (no symbolic bookkeeping per call).
 */
export abstract class InferenceLayer extends tfl.layers.Layer {
  private released = false;

  /** Reads this layer's weights (named after the layer, as in the checkpoint) and adopts them. */
  abstract load(weights: CheckpointWeights): Promise<void>;

  /** Takes ownership of `value` as the weight `name` and returns the long-lived tensor to compute with. */
  protected own<T extends tf.Tensor>(name: string, value: T): T {
    const variable = new tfl.LayerVariable(value, 'float32', `${this.name}.${name}`, false);
    value.dispose();
    // Layer keeps its weight lists private; the public setter is the way in.
    this.nonTrainableWeights = this.nonTrainableWeights.concat(variable);
    return variable.read() as T;
  }

  /** Bytes of float32 weights held. */
  get weightBytes(): number {
    return this.weights.reduce((n, w) => n + 4 * w.shape.reduce<number>((a, d) => a * (d ?? 1), 1), 0);
  }

  /** Frees the weights. Layer.dispose() refuses layers that were never apply()'d, which these never are. */
  override dispose(): DisposeResult {
    if (this.released) return { refCountAfterDispose: 0, numDisposedVariables: 0 };
    this.released = true;
    return { refCountAfterDispose: 0, numDisposedVariables: this.disposeWeights() };
  }
}
