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

/**
 * Reads checkpoint tensors as float32 TensorFlow.js tensors in the layout layers want, checking each
 * shape against what the config implies (a mismatch names the tensor, not a later matMul).
 */
export class CheckpointWeights {
  constructor(private readonly reader: CheckpointReader) {}

  has(name: string): boolean {
    return this.reader.has(name);
  }

  /** A tensor as stored, float32. */
  async tensor(name: string, shape: readonly number[]): Promise<tf.Tensor> {
    if (!this.reader.has(name)) {
      throw new FormatError(`the checkpoint has no tensor '${name}'`, {
        hint: 'the weights do not match config.json (wrong or truncated checkpoint)',
      });
    }
    const raw = await this.reader.read(name);
    if (raw.shape.length !== shape.length || raw.shape.some((d, i) => d !== shape[i])) {
      throw new FormatError(`tensor '${name}' has shape ${shapeText(raw.shape)}, expected ${shapeText(shape)}`, {
        hint: 'the weights do not match config.json',
      });
    }
    return tf.tensor(toFloat32(raw), [...shape], 'float32');
  }

  /** A PyTorch Linear weight [out, in], returned transposed as [in, out] (the one transpose, at load). */
  async linear(name: string, inFeatures: number, outFeatures: number): Promise<tf.Tensor2D> {
    const w = await this.tensor(name, [outFeatures, inFeatures]);
    const t = tf.transpose(w) as tf.Tensor2D;
    w.dispose();
    return t;
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
