/**
 * T5 / T5 v1.1 / FLAN-T5 / FLAN-UL2 (T5ForConditionalGeneration) on TensorFlow.js layers.
 *
 * Paper: Raffel et al. 2019, https://arxiv.org/abs/1910.10683 (FLAN: https://arxiv.org/abs/2210.11416,
 * UL2: https://arxiv.org/abs/2205.05131). Matches transformers 4.37.2 in eval mode (dropout off):
 * https://github.com/huggingface/transformers/blob/v4.37.2/src/transformers/models/t5/modeling_t5.py
 * Variants are data (config.ts): relu / gated-gelu / gated-silu feed-forward, tied or separate lm_head,
 * num_heads·d_kv ≠ d_model, a different decoder depth.
 *
 * Cost model (docs/performance-notes.md, docs/performance.md): a batch-1 decode step is bound by the
 * memory bandwidth of streaming the decoder's matrices and the lm_head once; greedy search streams the
 * lm_head's bfloat16 screen instead, half the bytes (stepBounded, ../../generation/bounded-argmax.ts).
 * - Those matrices are Projections (../projection.ts): q|k|v and wi_0|wi_1 side by side, one product
 *   each, read [in, out] (converted artifacts store them so, layout.ts) and packed once at load into the
 *   matvec engine, which streams them on every core (wasm and cpu); elsewhere long-lived tensors. On
 *   wasm, XNNPACK packs a matMul's second operand once per tensor, slowly (~0.25 GB/s).
 * - The encoder runs once per input on many positions, so it works on transposed activations
 *   xᵀ [dModel, positions] and multiplies the weights as stored (PyTorch's [out, in]): yᵀ = W·xᵀ. XNNPACK
 *   then packs the small activation, never the encoder weights: none of the packing time and memory the
 *   weights would cost at start-up. The cross-attention keys/values are computed the same way, once
 *   per input, from encᵀ (packed once for every decoder layer).
 * - Per step: one position per row against the self-attention cache, the relative position bias read
 *   from a per-distance table (block 0 owns the table, every block reuses it), and the element-wise work
 *   and data movement fused (kernels.ts): ~21 kernels per decoder layer, one tf.tidy per step.
 */
import { prefaultHeap, tf, tfl } from '../../backend/index.js';
import { FormatError } from '../../errors.js';
import type { CheckpointReader } from '../../formats/tensor.js';
import type { BoundedLogits, DecoderState, EncoderBatch, Seq2SeqModel } from '../../generation/seq2seq.js';
import { attention, CheckpointWeights, InferenceLayer, type Activation } from '../layers.js';
import type { T5Config } from './config.js';
import { addRmsNorm, crossAttentionStep, gatedActivation, gatherRows, rmsNorm, selfAttentionStep, type KeyValues } from './kernels.js';
import { MatVecEngine, MAX_ENGINE_BYTES, PACK_STAGING_BYTES } from '../../backend/matvec/engine.js';
import { engineEnabled, Projection } from '../projection.js';
import { bucketMatrix, relativePositionBucket } from './relative-position.js';

/** torch.finfo(float32).min: transformers' additive mask value (not -inf, so fully masked rows stay finite). */
const FLOAT32_MIN = -3.4028234663852886e38;
/** Decode positions covered by the first per-distance bias table; it doubles when a generation outgrows it. */
const INITIAL_DISTANCE_TABLE = 64;
/** From this many query×key pairs per head the encoder's attention runs per head on XNNPACK (layers.ts). */
const PER_HEAD_MIN_PAIRS = 128 * 128;

/** Self-attention keys and values, [rows, heads, len, dKv]. */
type KV = KeyValues;
/** Cross-attention keys k [rows, heads, encLen, dKv] and values transposed, vᵀ [rows, heads, dKv, encLen]. */
type RowsKV = { readonly k: tf.Tensor4D; readonly vT: tf.Tensor4D };
/**
 * One input's cross-attention keys and values shared by every decoder row, split per head and long-lived
 * for the whole generation: kᵀ [dKv, encLen] and v [encLen, dKv], so each step's q_h·kᵀ and p_h·v are 2-D
 * matMuls XNNPACK packs once, instead of batched matMuls that run in a scalar loop.
 */
type SharedKV = { readonly headsKT: tf.Tensor2D[]; readonly headsV: tf.Tensor2D[] };
type CrossKV = RowsKV | SharedKV;
/**
 * Rows × encoder tokens from which a single input's cross-attention uses SharedKV: below it the per-head
 * path's extra kernels (2·heads + 3, ~4 µs each) cost more than the scalar loop they avoid.
 */
const SHARED_CROSS_MIN_WORK = 128;

type Inputs = tf.Tensor | tf.Tensor[];

function first(inputs: Inputs): tf.Tensor {
  const x = Array.isArray(inputs) ? inputs[0] : inputs;
  if (!x) throw new Error('expected an input tensor');
  return x;
}

/** [rows, d] ↔ [d, rows]. */
const transpose2d = (x: tf.Tensor2D): tf.Tensor2D => tf.transpose(x);

/** A config as tfjs-layers serialises it (getConfig/fromConfig round trip). */
function configDict(c: T5Config): tf.serialization.ConfigDict {
  return { ...c, eosTokenId: typeof c.eosTokenId === 'number' ? c.eosTokenId : [...c.eosTokenId] };
}

export class T5LayerNorm extends InferenceLayer {
  static className = 'T5LayerNorm';
  /** [dModel] */
  weight!: tf.Tensor1D;
  readonly dModel: number;
  readonly eps: number;

  constructor(args: { name: string; dModel: number; eps: number }) {
    super({ name: args.name, trainable: false });
    this.dModel = args.dModel;
    this.eps = args.eps;
  }

  async load(w: CheckpointWeights): Promise<void> {
    this.weight = this.own('weight', (await w.tensor(`${this.name}.weight`, [this.dModel])) as tf.Tensor1D);
  }

  /** x [..., dModel], or with `columns` xᵀ [dModel, n]. */
  norm<T extends tf.Tensor>(x: T, columns = false): T {
    return rmsNorm(x, this.weight, this.eps, columns);
  }

  /** [x + r, norm(x + r)]: a residual add followed by this norm. */
  addNorm<T extends tf.Tensor>(x: T, r: T, columns = false): [T, T] {
    return addRmsNorm(x, r, this.weight, this.eps, columns);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => this.norm(first(inputs)));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dModel: this.dModel, eps: this.eps };
  }
}
tf.serialization.registerClass(T5LayerNorm);

/** Which attention of the model a T5Attention is: it decides the weights' layout. */
export type T5AttentionRole = 'encoder' | 'decoder' | 'cross';

export interface T5AttentionArgs {
  name: string;
  dModel: number;
  numHeads: number;
  dKv: number;
  /** Decoder self-attention: a query sees only keys at or before its position. */
  causal: boolean;
  /** encoder / decoder self-attention, or the decoder's attention over the encoder. */
  role: T5AttentionRole;
  /** Present on the layer that owns the relative position table (block 0's self-attention). */
  relativeBias?: { numBuckets: number; maxDistance: number; bidirectional: boolean };
}

/**
 * softmax(qᵀ·k + bias)·v on transposed per-head tensors qᵀ, kᵀ, vᵀ [batch, heads, dKv, len]; returns the
 * context transposed the same way. T5 has no 1/√dKv scaling (folded into its initialisation).
 */
function attentionColumns(qT: tf.Tensor4D, kT: tf.Tensor4D, vT: tf.Tensor4D, bias: tf.Tensor | undefined): tf.Tensor4D {
  const len = qT.shape[3];
  const lenK = kT.shape[3];
  if (len * lenK < PER_HEAD_MIN_PAIRS) {
    let scores: tf.Tensor4D = tf.matMul(qT, kT, true, false); // [batch, heads, len, lenK]
    if (bias) scores = tf.add(scores, bias);
    return tf.matMul(vT, tf.softmax(scores), false, true); // [batch, heads, dKv, len]
  }
  // Long inputs: layers.ts runs one XNNPACK matMul per head; it wants [batch, heads, len, dKv].
  const perm = [0, 1, 3, 2];
  const ctx = attention(tf.transpose(qT, perm), tf.transpose(kT, perm), tf.transpose(vT, perm), bias);
  return tf.transpose(ctx, perm);
}

export class T5Attention extends InferenceLayer {
  static className = 'T5Attention';
  readonly args: T5AttentionArgs;
  private readonly inner: number;
  /** encoder: [3·inner, dModel] (as stored, stacked) */
  private qkv: tf.Tensor2D | undefined;
  /** encoder: [dModel, inner] (as stored) */
  private o: tf.Tensor2D | undefined;
  /** decoder: [dModel, 3·inner] (q|k|v side by side) */
  private qkvStep: Projection | undefined;
  /** cross: [dModel, inner] */
  private qStep: Projection | undefined;
  /** decoder and cross: [inner, dModel] */
  private oStep: Projection | undefined;
  /** cross: [2·inner, dModel] (k and v as stored, stacked) */
  private kv: tf.Tensor2D | undefined;
  /** relative_attention_bias stored transposed, [heads, numBuckets], so one gather on axis 1 yields heads first. */
  private table: tf.Tensor2D | undefined;

  constructor(args: T5AttentionArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
    this.inner = args.numHeads * args.dKv;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dModel: d, role } = this.args;
    const i = this.inner;
    const n = (p: string): string => `${this.name}.${p}.weight`;
    if (role === 'encoder') {
      this.qkv = this.own('qkv', await w.linearStack([n('q'), n('k'), n('v')], d, [i, i, i]));
      this.o = this.own('o', await w.linearStack([n('o')], i, [d]));
    } else if (role === 'decoder') {
      this.qkvStep = Projection.from(await w.linearConcat([n('q'), n('k'), n('v')], d, [i, i, i]), w.packProjections);
      this.oStep = Projection.from(await w.linear(n('o'), i, d), w.packProjections);
    } else {
      this.qStep = Projection.from(await w.linear(n('q'), d, i), w.packProjections);
      this.kv = this.own('kv', await w.linearStack([n('k'), n('v')], d, [i, i]));
      this.oStep = Projection.from(await w.linear(n('o'), i, d), w.packProjections);
    }
    const rb = this.args.relativeBias;
    if (rb) {
      const name = `${this.name}.relative_attention_bias.weight`;
      const t = await w.tensor(name, [rb.numBuckets, this.args.numHeads]);
      this.table = this.own('relative_attention_bias', tf.transpose(t) as tf.Tensor2D);
      t.dispose();
    }
  }

  private weight<T extends tf.Tensor2D | Projection>(w: T | undefined): T {
    if (!w) throw new Error(`${this.name} (${this.args.role}) has no such projection`);
    return w;
  }

  override get weightBytes(): number {
    return [this.qkvStep, this.qStep, this.oStep].reduce((n, p) => n + (p?.bytes ?? 0), super.weightBytes);
  }

  override dispose(): ReturnType<InferenceLayer['dispose']> {
    for (const p of [this.qkvStep, this.qStep, this.oStep]) p?.dispose();
    return super.dispose();
  }

  /**
   * Encoder self-attention of nᵀ [dModel, batch·len] (normed, columns; each batch entry's positions
   * contiguous): the output [dModel, batch·len]. `bias` broadcasts to [batch, heads, len, len].
   */
  encoderSelf(nT: tf.Tensor2D, batch: number, len: number, bias: tf.Tensor | undefined): tf.Tensor2D {
    const { numHeads: h, dKv } = this.args;
    const y = tf.matMul(this.weight(this.qkv), nT); // [3·inner, batch·len]
    const parts =
      batch === 1 ? tf.reshape(y, [3, 1, h, dKv, len]) : tf.transpose(tf.reshape(y, [3, h, dKv, batch, len]), [0, 3, 1, 2, 4]);
    const [qT, kT, vT] = tf.unstack(parts) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const ctxT = attentionColumns(qT, kT, vT, bias); // [batch, heads, dKv, len]
    const merged = batch === 1 ? ctxT : tf.transpose(ctxT, [1, 2, 0, 3]);
    return tf.matMul(this.weight(this.o), tf.reshape(merged, [this.inner, batch * len]));
  }

  /**
   * Decoder self-attention of one new position per row, n [rows, dModel] (normed), over `past`: the output
   * [rows, dModel] and the caches including this position. `table` is the per-distance bias
   * (distanceBias), read from column `start`.
   */
  step(n: tf.Tensor2D, past: KV | undefined, table: tf.Tensor4D, start: number): { out: tf.Tensor2D; kv: KV } {
    const { numHeads: h, dKv } = this.args;
    const { ctx, kv } = selfAttentionStep(this.weight(this.qkvStep).apply(n), past, table, start, h, dKv);
    return { out: this.weight(this.oStep).apply(ctx), kv };
  }

  /** Decoder self-attention over `len` positions per row, n [rows·len, dModel]; `bias` includes the causal mask. */
  decoderSelf(n: tf.Tensor2D, rows: number, len: number, bias: tf.Tensor | undefined): tf.Tensor2D {
    const { numHeads: h, dKv } = this.args;
    const y = tf.reshape(this.weight(this.qkvStep).apply(n), [rows, len, 3, h, dKv]);
    const [q, k, v] = tf.unstack(tf.transpose(y, [2, 0, 3, 1, 4])) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const ctx = attention(q, k, v, bias); // [rows, heads, len, dKv]
    return this.weight(this.oStep).apply(tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [rows * len, this.inner]));
  }

  /** Keys and values of the encoder output encᵀ [dModel, batch·len] (normed), computed once per input. */
  crossKV(encT: tf.Tensor2D, batch: number, len: number): RowsKV {
    const { numHeads: h, dKv } = this.args;
    const y = tf.matMul(this.weight(this.kv), encT); // [2·inner, batch·len]
    const parts =
      batch === 1 ? tf.reshape(y, [2, 1, h, dKv, len]) : tf.transpose(tf.reshape(y, [2, h, dKv, batch, len]), [0, 3, 1, 2, 4]);
    const [kT, vT] = tf.unstack(parts) as [tf.Tensor4D, tf.Tensor4D];
    return { k: tf.transpose(kT, [0, 1, 3, 2]), vT };
  }

  /** Per-head keys and values of one input's encoder output encᵀ [dModel, encLen] (see SharedKV). */
  sharedCrossKV(encT: tf.Tensor2D): SharedKV {
    const h = this.args.numHeads;
    const [kT, vT] = tf.split(tf.matMul(this.weight(this.kv), encT), 2, 0) as [tf.Tensor2D, tf.Tensor2D]; // [inner, encLen]
    return {
      headsKT: tf.split(kT, h, 0) as tf.Tensor2D[], // heads × [dKv, encLen]
      headsV: tf.split(transpose2d(vT), h, 1) as tf.Tensor2D[], // heads × [encLen, dKv]
    };
  }

  /**
   * One position per row, n [rows, dModel] (normed), attending to the encoder: `mask` is the additive
   * padding mask, [rows, 1, 1, encLen] with RowsKV, [1, encLen] with SharedKV (every row reads the same input).
   */
  crossStep(n: tf.Tensor2D, kv: CrossKV, mask: tf.Tensor | undefined): tf.Tensor2D {
    const { numHeads: h, dKv } = this.args;
    const o = this.weight(this.oStep);
    const q = this.weight(this.qStep).apply(n); // [rows, inner]
    if ('vT' in kv) return o.apply(crossAttentionStep(q, kv.k, kv.vT, mask, h, dKv));
    const qh = tf.split(q, h, 1); // heads × [rows, dKv]
    let scores = tf.concat(qh.map((x, i) => tf.matMul(x, kv.headsKT[i] as tf.Tensor2D)), 0) as tf.Tensor2D; // [heads·rows, encLen]
    if (mask) scores = tf.add(scores, mask);
    const p = tf.split(tf.softmax(scores), h, 0);
    return o.apply(tf.concat(p.map((ph, i) => tf.matMul(ph, kv.headsV[i] as tf.Tensor2D)), 1) as tf.Tensor2D); // via [rows, heads·dKv]
  }

  /** `len` positions per row, n [rows·len, dModel], attending to the encoder; mask [rows, 1, 1, encLen]. */
  crossMulti(n: tf.Tensor2D, rows: number, len: number, kv: RowsKV, mask: tf.Tensor | undefined): tf.Tensor2D {
    const { numHeads: h, dKv } = this.args;
    const q = tf.transpose(tf.reshape(this.weight(this.qStep).apply(n), [rows, len, h, dKv]), [0, 2, 1, 3]);
    let scores = tf.matMul(q, kv.k, false, true); // [rows, heads, len, encLen]
    if (mask) scores = tf.add(scores, mask);
    const ctx = tf.matMul(tf.softmax(scores), kv.vT, false, true); // [rows, heads, len, dKv]
    return this.weight(this.oStep).apply(tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [rows * len, this.inner]));
  }

  private get bias(): { table: tf.Tensor2D; numBuckets: number; maxDistance: number; bidirectional: boolean } {
    if (!this.table || !this.args.relativeBias) throw new Error(`${this.name} has no relative_attention_bias`);
    return { table: this.table, ...this.args.relativeBias };
  }

  /** Position bias of queries offset…offset+lenQ-1 against keys 0…lenK-1: [1, heads, lenQ, lenK]. */
  positionBias(lenQ: number, lenK: number, offset = 0): tf.Tensor4D {
    const b = this.bias;
    const buckets = bucketMatrix(lenQ, lenK, b.bidirectional, b.numBuckets, b.maxDistance, offset);
    return tf.reshape(tf.gather(b.table, tf.tensor1d(buckets, 'int32'), 1), [1, this.args.numHeads, lenQ, lenK]);
  }

  /**
   * The causal bias by distance, reversed: column j holds distance n-1-j, so the bias of the query at
   * position t over keys 0…t is the last t+1 columns, from column n-1-t: [1, heads, 1, n].
   */
  distanceBias(n: number): tf.Tensor4D {
    const b = this.bias;
    const buckets = Int32Array.from({ length: n }, (_, j) =>
      relativePositionBucket(j - (n - 1), b.bidirectional, b.numBuckets, b.maxDistance),
    );
    return tf.reshape(tf.gather(b.table, tf.tensor1d(buckets, 'int32'), 1), [1, this.args.numHeads, 1, n]);
  }

  /** [x] → self-attention, [x, encoderOutput] → cross-attention; x [batch, len, dModel], no padding. */
  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const x = first(list) as tf.Tensor3D;
      const [batch, len, d] = x.shape;
      const x2 = tf.reshape(x, [batch * len, d]) as tf.Tensor2D;
      const enc = list[1] as tf.Tensor3D | undefined;
      let out: tf.Tensor2D;
      if (this.args.role === 'cross') {
        if (!enc) throw new Error(`${this.name} needs [x, encoderOutput]`);
        const encT = transpose2d(tf.reshape(enc, [batch * enc.shape[1], d]));
        out = this.crossMulti(x2, batch, len, this.crossKV(encT, batch, enc.shape[1]), undefined);
      } else {
        let bias: tf.Tensor | undefined = this.table ? this.positionBias(len, len) : undefined;
        if (this.args.causal) bias = bias ? tf.add(bias, causalMask(len)) : causalMask(len);
        out =
          this.args.role === 'encoder'
            ? transpose2d(this.encoderSelf(transpose2d(x2), batch, len, bias))
            : this.decoderSelf(x2, batch, len, bias);
      }
      return tf.reshape(out, [batch, len, this.args.dModel]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { name: _name, relativeBias, ...rest } = this.args;
    return { ...super.getConfig(), ...rest, relativeBias: relativeBias ? { ...relativeBias } : null };
  }
}
tf.serialization.registerClass(T5Attention);

export interface T5FeedForwardArgs {
  name: string;
  dModel: number;
  dFf: number;
  gated: boolean;
  activation: Activation;
  /** The encoder multiplies the weights as stored (transposed activations); the decoder [in, out]. */
  role: 'encoder' | 'decoder';
}

/** DenseReluDense: wo(act(wi x)) or, gated, wo(act(wi_0 x) · wi_1 x). */
export class T5FeedForward extends InferenceLayer {
  static className = 'T5FeedForward';
  readonly args: T5FeedForwardArgs;
  /** encoder: [dFf, dModel] or, gated, [2·dFf, dModel] (wi_0 and wi_1 as stored, stacked) */
  private wi: tf.Tensor2D | undefined;
  /** encoder: [dModel, dFf] (as stored) */
  private wo: tf.Tensor2D | undefined;
  /** decoder: [dModel, dFf] or, gated, [dModel, 2·dFf] (wi_0|wi_1 side by side) */
  private wiStep: Projection | undefined;
  /** decoder: [dFf, dModel] */
  private woStep: Projection | undefined;

  constructor(args: T5FeedForwardArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dModel, dFf, gated, role } = this.args;
    const wi = (gated ? ['wi_0', 'wi_1'] : ['wi']).map((p) => `${this.name}.${p}.weight`);
    const outs = wi.map(() => dFf);
    const wo = `${this.name}.wo.weight`;
    if (role === 'encoder') {
      this.wi = this.own('wi', await w.linearStack(wi, dModel, outs));
      this.wo = this.own('wo', await w.linearStack([wo], dFf, [dModel]));
    } else {
      this.wiStep = Projection.from(await w.linearConcat(wi, dModel, outs), w.packProjections);
      this.woStep = Projection.from(await w.linear(wo, dFf, dModel), w.packProjections);
    }
  }

  private weight<T extends tf.Tensor2D | Projection>(w: T | undefined): T {
    if (!w) throw new Error(`${this.name} (${this.args.role}) has no such weight`);
    return w;
  }

  override get weightBytes(): number {
    return super.weightBytes + (this.wiStep?.bytes ?? 0) + (this.woStep?.bytes ?? 0);
  }

  override dispose(): ReturnType<InferenceLayer['dispose']> {
    this.wiStep?.dispose();
    this.woStep?.dispose();
    return super.dispose();
  }

  private get plainRelu(): boolean {
    return this.args.activation === 'relu' && !this.args.gated;
  }

  /** Decoder: n [rows, dModel] → [rows, dModel]. */
  forward(n: tf.Tensor2D): tf.Tensor2D {
    const { activation, gated } = this.args;
    const wi = this.weight(this.wiStep);
    const wo = this.weight(this.woStep);
    if (this.plainRelu) return wo.apply(tf.relu(wi.apply(n)));
    return wo.apply(gatedActivation(wi.apply(n), activation, gated));
  }

  /** Encoder: nᵀ [dModel, n] → [dModel, n]. */
  forwardColumns(nT: tf.Tensor2D): tf.Tensor2D {
    const { activation, gated } = this.args;
    const wi = this.weight(this.wi);
    const wo = this.weight(this.wo);
    if (this.plainRelu) return tf.matMul(wo, tf.fused.matMul({ a: wi, b: nT, activation: 'relu' }) as tf.Tensor2D);
    return tf.matMul(wo, gatedActivation(tf.matMul(wi, nT), activation, gated, true));
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs);
      const x2 = tf.reshape(x, [-1, this.args.dModel]) as tf.Tensor2D;
      const y = this.args.role === 'encoder' ? transpose2d(this.forwardColumns(transpose2d(x2))) : this.forward(x2);
      return tf.reshape(y, x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { name: _name, ...rest } = this.args;
    return { ...super.getConfig(), ...rest };
  }
}
tf.serialization.registerClass(T5FeedForward);

/** A config's hyper-parameters as one block needs them. */
export interface T5BlockArgs {
  name: string;
  config: T5Config;
  isDecoder: boolean;
  /** Block 0 of each stack owns the relative position table. */
  hasRelativeBias: boolean;
}

/** Cross-attention inputs of a decoder block: the encoder's K/V and its additive padding mask. */
interface CrossInputs<K extends CrossKV = CrossKV> {
  readonly kv: K;
  readonly mask: tf.Tensor | undefined;
}

/** A block's output: the residual stream and, when the next norm was given, its normed form. */
interface BlockOut {
  readonly x: tf.Tensor2D;
  readonly n: tf.Tensor2D | undefined;
}

/**
 * One T5 block: pre-norm residual sub-layers, named as in the checkpoint: layer.0 self-attention,
 * (decoder) layer.1 cross-attention, then the feed-forward. Every sub-layer's residual add is fused with
 * the norm that follows it (the next sub-layer's, or `next`: the next block's or the stack's final one),
 * so the forward methods take the residual stream x with its normed form n.
 */
export class T5Block extends InferenceLayer {
  static className = 'T5Block';
  readonly selfNorm: T5LayerNorm;
  readonly selfAttention: T5Attention;
  readonly crossNorm: T5LayerNorm | undefined;
  readonly crossAttention: T5Attention | undefined;
  readonly ffNorm: T5LayerNorm;
  readonly ff: T5FeedForward;
  private readonly blockArgs: T5BlockArgs;

  constructor(args: T5BlockArgs) {
    super({ name: args.name, trainable: false });
    this.blockArgs = args;
    const c = args.config;
    const p = `${args.name}.layer`;
    const attention = { dModel: c.dModel, numHeads: c.numHeads, dKv: c.dKv };
    const role = args.isDecoder ? 'decoder' : 'encoder';
    this.selfNorm = new T5LayerNorm({ name: `${p}.0.layer_norm`, dModel: c.dModel, eps: c.layerNormEpsilon });
    this.selfAttention = new T5Attention({
      name: `${p}.0.SelfAttention`,
      ...attention,
      causal: args.isDecoder,
      role,
      ...(args.hasRelativeBias
        ? {
            relativeBias: {
              numBuckets: c.relativeAttentionNumBuckets,
              maxDistance: c.relativeAttentionMaxDistance,
              bidirectional: !args.isDecoder,
            },
          }
        : {}),
    });
    if (args.isDecoder) {
      this.crossNorm = new T5LayerNorm({ name: `${p}.1.layer_norm`, dModel: c.dModel, eps: c.layerNormEpsilon });
      this.crossAttention = new T5Attention({ name: `${p}.1.EncDecAttention`, ...attention, causal: false, role: 'cross' });
    }
    const ff = args.isDecoder ? 2 : 1;
    this.ffNorm = new T5LayerNorm({ name: `${p}.${ff}.layer_norm`, dModel: c.dModel, eps: c.layerNormEpsilon });
    this.ff = new T5FeedForward({
      name: `${p}.${ff}.DenseReluDense`,
      dModel: c.dModel,
      dFf: c.dFf,
      gated: c.gated,
      activation: c.activation,
      role,
    });
  }

  private get parts(): InferenceLayer[] {
    const cross = this.crossNorm && this.crossAttention ? [this.crossNorm, this.crossAttention] : [];
    return [this.selfNorm, this.selfAttention, ...cross, this.ffNorm, this.ff];
  }

  /** The sub-layers' weights (a block owns none itself). */
  override get nonTrainableWeights(): tfl.LayerVariable[] {
    return this.parts.flatMap((p) => p.weights);
  }

  async load(w: CheckpointWeights): Promise<void> {
    for (const part of this.parts) await part.load(w);
  }

  override get weightBytes(): number {
    return this.parts.reduce((n, p) => n + p.weightBytes, 0);
  }

  /** The sub-layers free their weights, including the projections outside tfjs. */
  override dispose(): ReturnType<InferenceLayer['dispose']> {
    const n = this.parts.reduce((k, p) => k + p.dispose().numDisposedVariables, 0);
    return { refCountAfterDispose: 0, numDisposedVariables: n };
  }

  private cross(): { norm: T5LayerNorm; attention: T5Attention } {
    if (!this.crossNorm || !this.crossAttention) throw new Error(`${this.name} is not a decoder block`);
    return { norm: this.crossNorm, attention: this.crossAttention };
  }

  /** The feed-forward's residual and the following norm. */
  private residual(x: tf.Tensor2D, f: tf.Tensor2D, next: T5LayerNorm | undefined, columns = false): BlockOut {
    if (!next) return { x: tf.add(x, f), n: undefined };
    const [s, n] = next.addNorm(x, f, columns);
    return { x: s, n };
  }

  /**
   * Encoder block on columns: xᵀ, nᵀ [dModel, batch·len] (n = this block's selfNorm of x); `bias` is the
   * stack's position bias plus the padding mask.
   */
  forwardColumns(x: tf.Tensor2D, n: tf.Tensor2D, batch: number, len: number, bias: tf.Tensor | undefined, next?: T5LayerNorm): BlockOut {
    const [h, hn] = this.ffNorm.addNorm(x, this.selfAttention.encoderSelf(n, batch, len, bias), true);
    return this.residual(h, this.ff.forwardColumns(hn), next, true);
  }

  /** Decoder block, one position per row: x, n [rows, dModel]; returns the self-attention cache with this position. */
  step(
    x: tf.Tensor2D,
    n: tf.Tensor2D,
    past: KV | undefined,
    table: tf.Tensor4D,
    start: number,
    cross: CrossInputs,
    next?: T5LayerNorm,
  ): BlockOut & { kv: KV } {
    const c = this.cross();
    const self = this.selfAttention.step(n, past, table, start);
    const [h1, n1] = c.norm.addNorm(x, self.out);
    const [h2, n2] = this.ffNorm.addNorm(h1, c.attention.crossStep(n1, cross.kv, cross.mask));
    return { ...this.residual(h2, this.ff.forward(n2), next), kv: self.kv };
  }

  /** Decoder block over `len` positions per row: x, n [rows·len, dModel]; `bias` includes the causal mask. */
  forwardMulti(
    x: tf.Tensor2D,
    n: tf.Tensor2D,
    rows: number,
    len: number,
    bias: tf.Tensor | undefined,
    cross: CrossInputs<RowsKV>,
    next?: T5LayerNorm,
  ): BlockOut {
    const c = this.cross();
    const [h1, n1] = c.norm.addNorm(x, this.selfAttention.decoderSelf(n, rows, len, bias));
    const [h2, n2] = this.ffNorm.addNorm(h1, c.attention.crossMulti(n1, rows, len, cross.kv, cross.mask));
    return this.residual(h2, this.ff.forward(n2), next);
  }

  /** [x] (encoder block) or [x, encoderOutput] (decoder block); [batch, len, dModel], no padding. */
  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const x = first(list) as tf.Tensor3D;
      const [batch, len, d] = x.shape;
      const x2 = tf.reshape(x, [batch * len, d]) as tf.Tensor2D;
      const att = this.selfAttention;
      let bias: tf.Tensor | undefined = att.args.relativeBias ? att.positionBias(len, len) : undefined;
      let y: tf.Tensor2D;
      if (!this.blockArgs.isDecoder) {
        const xT = transpose2d(x2);
        y = transpose2d(this.forwardColumns(xT, this.selfNorm.norm(xT, true), batch, len, bias).x);
      } else {
        bias = bias ? tf.add(bias, causalMask(len)) : causalMask(len);
        const enc = list[1] as tf.Tensor3D | undefined;
        const c = this.cross();
        if (!enc) throw new Error(`${this.name} needs [x, encoderOutput]`);
        const encT = transpose2d(tf.reshape(enc, [batch * enc.shape[1], d]));
        const cross = { kv: c.attention.crossKV(encT, batch, enc.shape[1]), mask: undefined };
        y = this.forwardMulti(x2, this.selfNorm.norm(x2), batch, len, bias, cross).x;
      }
      return tf.reshape(y, x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { isDecoder, hasRelativeBias, config } = this.blockArgs;
    return { ...super.getConfig(), isDecoder, hasRelativeBias, config: configDict(config) };
  }
}
tf.serialization.registerClass(T5Block);

/** `shared` (token embedding) and the LM head; with tied embeddings one [dModel, vocab] table serves both. */
export class T5SharedEmbedding extends InferenceLayer {
  static className = 'T5SharedEmbedding';
  readonly config: T5Config;
  /** [vocab, dModel]; undefined when tied (then the head's columns are the embeddings). */
  private embedding: tf.Tensor2D | undefined;
  /** [dModel, vocab] when tied (the embeddings are its columns), else undefined. */
  private table: tf.Tensor2D | undefined;
  private head!: Projection; // [dModel, vocab]

  constructor(args: { name?: string; config: T5Config }) {
    super({ name: args.name ?? 'shared', trainable: false });
    this.config = args.config;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { vocabSize, dModel, tieWordEmbeddings } = this.config;
    // save_pretrained stores shared.weight and drops its aliases; other writers may keep only an alias.
    const aliases = ['shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'];
    const name = aliases.find((n) => w.has(n)) ?? 'shared.weight';
    if (tieWordEmbeddings) {
      // Stored once, transposed: the lm_head wants [dModel, vocab] for the fast matMul path, and an
      // embedding lookup is a gather of columns (tiny next to the head's matMul).
      this.table = this.own('weight', await w.linear(name, dModel, vocabSize));
      this.head = Projection.from(this.table, w.packProjections, { keep: true, screen: true });
    } else {
      this.embedding = this.own('weight', (await w.tensor(name, [vocabSize, dModel])) as tf.Tensor2D);
      this.head = Projection.from(await w.linear('lm_head.weight', dModel, vocabSize), w.packProjections, { screen: true });
    }
  }

  override get weightBytes(): number {
    return super.weightBytes + (this.table ? 0 : this.head.bytes);
  }

  override dispose(): ReturnType<InferenceLayer['dispose']> {
    this.head?.dispose();
    return super.dispose();
  }

  private get columns(): tf.Tensor2D {
    if (!this.table) throw new Error('the embedding table is not tied to the head');
    return this.table;
  }

  /** ids [n] → [n, dModel]. */
  embed(ids: tf.Tensor1D): tf.Tensor2D {
    if (this.embedding) return gatherRows(this.embedding, ids);
    return transpose2d(tf.gather(this.columns, ids, 1));
  }

  /** ids [n] → [dModel, n] (the encoder's transposed layout). */
  embedColumns(ids: tf.Tensor1D): tf.Tensor2D {
    if (this.embedding) return transpose2d(gatherRows(this.embedding, ids));
    return tf.gather(this.columns, ids, 1);
  }

  /** Decoder output x [rows, dModel] → the lm_head's input. */
  headInput(x: tf.Tensor2D): tf.Tensor2D {
    // Mesh TensorFlow rescales before the tied projection; transformers multiplies by d_model^-0.5.
    return this.embedding ? x : tf.mul<tf.Tensor2D>(x, this.config.dModel ** -0.5);
  }

  /** Decoder output x [rows, dModel] → logits [rows, vocab]. */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return this.head.apply(this.headInput(x));
  }

  /** Whether boundedLogits() is available: the head is packed with a bfloat16 screen (greedy search). */
  get screened(): boolean {
    return this.head.screened;
  }

  /** The lm_head's input h [rows, dModel] (host values, headInput's) → logits, bounded. */
  boundedLogits(h: Float32Array, rows: number): BoundedLogits {
    return this.head.bounded(h, rows);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const ids = first(inputs);
      return tf.reshape(this.embed(tf.reshape(ids, [-1])), [...ids.shape, this.config.dModel]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), config: configDict(this.config) };
  }
}
tf.serialization.registerClass(T5SharedEmbedding);

/** [1, 1, len, len] additive mask hiding later keys from each query. */
function causalMask(len: number): tf.Tensor4D {
  const m = new Float32Array(len * len);
  for (let q = 0; q < len; q++) m.fill(FLOAT32_MIN, q * len + q + 1, (q + 1) * len);
  return tf.tensor4d(m, [1, 1, len, len]);
}

/** [batch, 1, 1, seqLen] additive padding mask, or undefined when nothing is padded (skips an add per layer). */
function paddingMask(batch: EncoderBatch): tf.Tensor4D | undefined {
  if (batch.attentionMask.every((m) => m !== 0)) return undefined;
  const m = Float32Array.from(batch.attentionMask, (v) => (v !== 0 ? 0 : FLOAT32_MIN));
  return tf.tensor4d(m, [batch.batch, 1, 1, batch.seqLen]);
}

/** The wasm gather does not bounds-check: an id past the table would read other memory, not fail. */
function checkIds(ids: Int32Array, vocabSize: number): void {
  for (const id of ids) {
    if (id < 0 || id >= vocabSize) {
      throw new RangeError(`token id ${id} is outside the model's vocabulary (0…${vocabSize - 1})`);
    }
  }
}

function checkBatch(batch: EncoderBatch, vocabSize: number): void {
  const n = batch.batch * batch.seqLen;
  if (!(batch.batch > 0 && batch.seqLen > 0) || batch.inputIds.length !== n || batch.attentionMask.length !== n) {
    throw new RangeError(
      `encoder batch of ${batch.batch}×${batch.seqLen} needs ${n} ids and mask values ` +
        `(got ${batch.inputIds.length} and ${batch.attentionMask.length})`,
    );
  }
  checkIds(batch.inputIds, vocabSize);
}

function disposeKV(list: readonly (KV | CrossKV)[] | undefined): void {
  for (const kv of list ?? []) {
    if ('v' in kv) tf.dispose([kv.k, kv.v]);
    else if ('vT' in kv) tf.dispose([kv.k, kv.vT]);
    else tf.dispose([...kv.headsKT, ...kv.headsV]);
  }
}

class T5State implements DecoderState {
  private live = true;

  constructor(
    readonly model: T5ForConditionalGeneration,
    readonly rows: number,
    readonly length: number,
    /**
     * Rows come in runs of `group` rows of the same input (start's `expand`); 1 once unknown; Infinity
     * when one input serves every row (the SharedKV layout), so no reorder ever touches the cross tensors.
     */
    readonly group: number,
    /** Per decoder layer: the encoder's K/V, per row (RowsKV) or shared per head. */
    readonly cross: readonly CrossKV[],
    /** Additive padding mask ([rows, 1, 1, encLen], or [1, encLen] when shared), undefined without padding. */
    readonly crossMask: tf.Tensor | undefined,
    /** Per decoder layer: self-attention K/V of the tokens fed so far, [rows, heads, length, dKv]. */
    readonly past: readonly KV[] | undefined,
    /** The decoder's per-distance bias table (see T5Attention.distanceBias). */
    readonly distance: tf.Tensor4D,
  ) {}

  get isLive(): boolean {
    return this.live;
  }

  /** Marks the state as handed over: its tensors now belong to its successor (or were freed). */
  retire(): void {
    this.live = false;
  }

  dispose(): void {
    if (!this.live) return;
    this.live = false;
    disposeKV(this.past);
    disposeKV(this.cross);
    this.crossMask?.dispose();
    this.distance.dispose();
  }
}

export interface T5ForwardResult {
  /** [batch, decLen, vocabSize] */
  readonly logits: Float32Array;
  /** [batch, seqLen, dModel], after the encoder's final layer norm. */
  readonly encoderLastHiddenState: Float32Array;
  /** numLayers + 1 entries [batch, seqLen, dModel]: the input of each block, then the stack output (normed). */
  readonly encoderHiddenStates: readonly Float32Array[];
  /** numDecoderLayers + 1 entries [batch, decLen, dModel], as above. */
  readonly decoderHiddenStates: readonly Float32Array[];
}

export interface T5Model extends Seq2SeqModel {
  readonly config: T5Config;
  /** Bytes of float32 weights the model holds (the decode step's matrices counted once, packed or not). */
  readonly weightBytes: number;
  /** Milliseconds the load-time warm-up took (first-use costs: XNNPACK packing, JIT), when it ran. */
  readonly warmUpMs: number | undefined;
  /** Encoder hidden states: numLayers + 1 entries [batch, seqLen, dModel], the last after the final norm. */
  encoderHiddenStates(batch: EncoderBatch): Float32Array[];
  /** Teacher-forced pass over decoderInputIds [batch, decLen] (row-major), every position's logits. */
  forward(batch: EncoderBatch, decoderInputIds: Int32Array): T5ForwardResult;
  dispose(): void;
}

class T5ForConditionalGeneration implements T5Model {
  readonly vocabSize: number;
  readonly decoderStartTokenId: number;
  readonly padTokenId: number;
  readonly eosTokenId: number | readonly number[];
  warmUpMs: number | undefined;
  private readonly shared: T5SharedEmbedding;
  private readonly encoder: T5Block[];
  private readonly encoderNorm: T5LayerNorm;
  private readonly decoder: T5Block[];
  private readonly decoderNorm: T5LayerNorm;

  constructor(readonly config: T5Config) {
    if (config.numLayers === 0 || config.numDecoderLayers === 0) {
      throw new FormatError('config.json: a T5 model needs at least one encoder and one decoder layer');
    }
    this.vocabSize = config.vocabSize;
    this.decoderStartTokenId = config.decoderStartTokenId;
    this.padTokenId = config.padTokenId;
    this.eosTokenId = config.eosTokenId;
    this.shared = new T5SharedEmbedding({ config });
    const stack = (name: string, n: number, isDecoder: boolean): T5Block[] =>
      Array.from(
        { length: n },
        (_, i) => new T5Block({ name: `${name}.block.${i}`, config, isDecoder, hasRelativeBias: i === 0 }),
      );
    const eps = config.layerNormEpsilon;
    this.encoder = stack('encoder', config.numLayers, false);
    this.encoderNorm = new T5LayerNorm({ name: 'encoder.final_layer_norm', dModel: config.dModel, eps });
    this.decoder = stack('decoder', config.numDecoderLayers, true);
    this.decoderNorm = new T5LayerNorm({ name: 'decoder.final_layer_norm', dModel: config.dModel, eps });
  }

  private get layers(): InferenceLayer[] {
    return [this.shared, ...this.encoder, this.encoderNorm, ...this.decoder, this.decoderNorm];
  }

  /**
   * Layers load concurrently (each one's tensors in turn): file reads, which run on libuv's threads, then
   * overlap with the transposes and uploads on this one. Every load settles before an error is reported,
   * so a failed load leaves nothing behind once the model is disposed.
   */
  async load(w: CheckpointWeights): Promise<void> {
    const results = await Promise.allSettled(this.layers.map((layer) => layer.load(w)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  get weightBytes(): number {
    return this.layers.reduce((n, l) => n + l.weightBytes, 0);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }

  private get decoderBias(): T5Attention {
    return (this.decoder[0] as T5Block).selfAttention;
  }

  /** The norm after block i of a stack: the next block's self-attention norm, or the stack's final norm. */
  private static nextNorm(blocks: readonly T5Block[], i: number, final: T5LayerNorm): T5LayerNorm {
    return blocks[i + 1]?.selfNorm ?? final;
  }

  /**
   * The encoder stack: encᵀ [dModel, batch·seqLen] after the final norm; `collect` gets each block's input
   * and the output, [batch·seqLen, dModel].
   */
  private encode(batch: EncoderBatch, collect?: tf.Tensor[]): tf.Tensor2D {
    const { batch: b, seqLen: s } = batch;
    let x = this.shared.embedColumns(tf.tensor1d(batch.inputIds, 'int32'));
    const mask = paddingMask(batch);
    const own = (this.encoder[0] as T5Block).selfAttention.positionBias(s, s); // [1, heads, s, s]
    const bias = mask ? tf.add(own, mask) : own; // [b or 1, heads, s, s]
    let n = (this.encoder[0] as T5Block).selfNorm.norm(x, true);
    this.encoder.forEach((block, i) => {
      collect?.push(transpose2d(x));
      const r = block.forwardColumns(x, n, b, s, bias, T5ForConditionalGeneration.nextNorm(this.encoder, i, this.encoderNorm));
      x = r.x;
      n = r.n as tf.Tensor2D;
    });
    collect?.push(transpose2d(n));
    return n;
  }

  /** The decoder stack over `len` positions per row: the normed output [rows·len, dModel]. */
  private decodeMulti(
    ids: Int32Array,
    rows: number,
    len: number,
    bias: tf.Tensor,
    cross: readonly RowsKV[],
    crossMask: tf.Tensor | undefined,
    collect?: tf.Tensor[],
  ): tf.Tensor2D {
    let x = this.shared.embed(tf.tensor1d(ids, 'int32'));
    let n = (this.decoder[0] as T5Block).selfNorm.norm(x);
    this.decoder.forEach((block, i) => {
      collect?.push(x);
      const next = T5ForConditionalGeneration.nextNorm(this.decoder, i, this.decoderNorm);
      const r = block.forwardMulti(x, n, rows, len, bias, { kv: cross[i] as RowsKV, mask: crossMask }, next);
      x = r.x;
      n = r.n as tf.Tensor2D;
    });
    collect?.push(n);
    return n;
  }

  start(batch: EncoderBatch, expand: number): DecoderState {
    checkBatch(batch, this.vocabSize);
    if (!Number.isInteger(expand) || expand < 1) throw new RangeError(`expand must be a positive integer (got ${expand})`);
    const shared = batch.batch === 1 && expand * batch.seqLen >= SHARED_CROSS_MIN_WORK;
    const parts = tf.tidy(() => {
      const enc = this.encode(batch); // [dModel, batch·seqLen]
      const mask = paddingMask(batch); // [batch, 1, 1, seqLen]
      const distance = tf.keep(this.decoderBias.distanceBias(INITIAL_DISTANCE_TABLE));
      const attention = (block: T5Block): T5Attention => block.crossAttention as T5Attention;
      if (shared) {
        const cross = this.decoder.map((block): SharedKV => {
          const kv = attention(block).sharedCrossKV(enc);
          return { headsKT: kv.headsKT.map((t) => tf.keep(t)), headsV: kv.headsV.map((t) => tf.keep(t)) };
        });
        return { cross, mask: mask ? tf.keep(tf.reshape(mask, [1, batch.seqLen])) : undefined, distance };
      }
      const repeat = Int32Array.from({ length: batch.batch * expand }, (_, r) => Math.floor(r / expand));
      const index = expand > 1 ? tf.tensor1d(repeat, 'int32') : undefined;
      const rows = <T extends tf.Tensor>(t: T): T => tf.keep(index ? tf.gather(t, index) : t);
      const cross = this.decoder.map((block): RowsKV => {
        const kv = attention(block).crossKV(enc, batch.batch, batch.seqLen);
        return { k: rows(kv.k), vT: rows(kv.vT) };
      });
      return { cross, mask: mask ? rows(mask) : undefined, distance };
    });
    const group = shared ? Number.POSITIVE_INFINITY : expand;
    return new T5State(this, batch.batch * expand, 0, group, parts.cross, parts.mask, undefined, parts.distance);
  }

  private take(state: DecoderState): T5State {
    if (!(state instanceof T5State) || state.model !== this) {
      throw new TypeError('the decoder state does not belong to this model');
    }
    if (!state.isLive) throw new Error('the decoder state was already consumed by step()/reorder() or disposed');
    return state;
  }

  step(state: DecoderState, tokens: Int32Array): { logits: Float32Array; state: DecoderState } {
    const { values, state: next } = this.advance(state, tokens, (n) => this.shared.logits(n));
    return { logits: values, state: next };
  }

  stepBounded(state: DecoderState, tokens: Int32Array): { logits: BoundedLogits; state: DecoderState } | undefined {
    if (!this.shared.screened) return undefined;
    const { values, state: next } = this.advance(state, tokens, (n) => this.shared.headInput(n));
    return { logits: this.shared.boundedLogits(values, tokens.length), state: next };
  }

  /** One decoder step; `read` maps the final norm's output to the one tensor read back to the host. */
  private advance(state: DecoderState, tokens: Int32Array, read: (n: tf.Tensor2D) => tf.Tensor2D): { values: Float32Array; state: T5State } {
    const s = this.take(state);
    if (tokens.length !== s.rows) throw new RangeError(`step needs one token per row (${s.rows}), got ${tokens.length}`);
    checkIds(tokens, this.vocabSize);
    const t = s.length;
    const grow = t + 1 > s.distance.shape[3];
    const longer = Math.max(2 * s.distance.shape[3], t + 1);
    const distance = grow ? tf.keep(tf.tidy(() => this.decoderBias.distanceBias(longer))) : s.distance;
    let out: { result: tf.Tensor2D; present: KV[] };
    try {
      out = tf.tidy(() => {
        const start = distance.shape[3] - 1 - t; // the bias of keys 0…t (see distanceBias)
        let x = this.shared.embed(tf.tensor1d(tokens, 'int32'));
        let n = (this.decoder[0] as T5Block).selfNorm.norm(x);
        const present: KV[] = [];
        this.decoder.forEach((block, i) => {
          const next = T5ForConditionalGeneration.nextNorm(this.decoder, i, this.decoderNorm);
          const cross = { kv: s.cross[i] as CrossKV, mask: s.crossMask };
          const r = block.step(x, n, s.past?.[i], distance, start, cross, next);
          x = r.x;
          n = r.n as tf.Tensor2D;
          present.push({ k: tf.keep(r.kv.k), v: tf.keep(r.kv.v) });
        });
        return { result: read(n), present };
      });
    } catch (err) {
      if (grow) distance.dispose();
      throw err;
    }
    // The only host read of the step: logits [rows, vocab], or the head's input [rows, dModel].
    const values = out.result.dataSync<'float32'>();
    out.result.dispose();
    disposeKV(s.past);
    if (grow) s.distance.dispose();
    s.retire();
    return { values, state: new T5State(this, s.rows, t + 1, s.group, s.cross, s.crossMask, out.present, distance) };
  }

  reorder(state: DecoderState, rows: Int32Array): DecoderState {
    const s = this.take(state);
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= s.rows) throw new RangeError(`reorder: row ${r} is not in 0…${s.rows - 1}`);
    }
    if (rows.length === 0) throw new RangeError('reorder needs at least one row');
    // Beam search moves rows within one input's group: the cross-attention tensors then stay as they are
    // (always, when one input serves every row).
    const sameCross =
      s.group === Number.POSITIVE_INFINITY ||
      (rows.length === s.rows && rows.every((r, i) => Math.floor(r / s.group) === Math.floor(i / s.group)));
    const out = tf.tidy(() => {
      const index = tf.tensor1d(rows, 'int32');
      const pick = <T extends tf.Tensor>(t: T): T => tf.keep(tf.gather(t, index));
      return {
        past: s.past?.map((e): KV => ({ k: pick(e.k), v: pick(e.v) })),
        cross: sameCross ? undefined : s.cross.map((e): CrossKV => ('vT' in e ? { k: pick(e.k), vT: pick(e.vT) } : e)),
        mask: sameCross || !s.crossMask ? undefined : pick(s.crossMask),
      };
    });
    disposeKV(s.past);
    if (!sameCross) {
      disposeKV(s.cross);
      s.crossMask?.dispose();
    }
    s.retire();
    return new T5State(
      this,
      rows.length,
      s.length,
      sameCross ? s.group : 1,
      out.cross ?? s.cross,
      sameCross ? s.crossMask : out.mask,
      out.past,
      s.distance,
    );
  }

  encoderHiddenStates(batch: EncoderBatch): Float32Array[] {
    checkBatch(batch, this.vocabSize);
    return tf.tidy(() => {
      const collect: tf.Tensor[] = [];
      this.encode(batch, collect);
      return collect.map((t) => t.dataSync<'float32'>());
    });
  }

  forward(batch: EncoderBatch, decoderInputIds: Int32Array): T5ForwardResult {
    checkBatch(batch, this.vocabSize);
    const len = decoderInputIds.length / batch.batch;
    if (!Number.isInteger(len) || len < 1) {
      throw new RangeError(`decoderInputIds (${decoderInputIds.length}) is not a multiple of the batch (${batch.batch})`);
    }
    checkIds(decoderInputIds, this.vocabSize);
    return tf.tidy(() => {
      const enc: tf.Tensor[] = [];
      const last = this.encode(batch, enc);
      const cross = this.decoder.map((block) => (block.crossAttention as T5Attention).crossKV(last, batch.batch, batch.seqLen));
      const bias = tf.add(this.decoderBias.positionBias(len, len), causalMask(len));
      const dec: tf.Tensor[] = [];
      const n = this.decodeMulti(decoderInputIds, batch.batch, len, bias, cross, paddingMask(batch), dec);
      const read = (t: tf.Tensor): Float32Array => t.dataSync<'float32'>();
      return {
        logits: read(this.shared.logits(n)),
        encoderLastHiddenState: read(enc[enc.length - 1] as tf.Tensor),
        encoderHiddenStates: enc.map(read),
        decoderHiddenStates: dec.map(read),
      };
    });
  }

  /**
   * One tiny encode + step so first-use costs (XNNPACK packing whatever the engine does not hold, the
   * kernels' JIT) are paid now rather than on the first real token.
   */
  warmUp(): void {
    const t0 = performance.now();
    const one = { inputIds: Int32Array.of(this.padTokenId), attentionMask: Int32Array.of(1), batch: 1, seqLen: 1 };
    const start = Int32Array.of(this.decoderStartTokenId);
    let state = this.start(one, 1);
    try {
      // Greedy search's path where there is a screen (its product, scans and an exact column); the other
      // path differs only in the head's product, the same kernel as every other projection's.
      const bounded = this.stepBounded(state, start);
      if (bounded) {
        state = bounded.state;
        const { logits } = bounded;
        logits.reaching(0, logits.maxLower(0, []), []);
        logits.exact(0, [0]);
      } else state = this.step(state, start).state;
    } finally {
      state.dispose();
    }
    this.warmUpMs = performance.now() - t0;
  }
}

/** Float32 bytes of the weights a config implies, for a memory-budget check before loading. */
export function t5WeightBytes(c: T5Config): number {
  const inner = c.numHeads * c.dKv;
  const attention = 4 * c.dModel * inner;
  const ff = (c.gated ? 3 : 2) * c.dModel * c.dFf;
  const bias = c.relativeAttentionNumBuckets * c.numHeads;
  const encoder = c.numLayers * (attention + ff + 2 * c.dModel) + bias + c.dModel;
  const decoder = c.numDecoderLayers * (2 * attention + ff + 3 * c.dModel) + bias + c.dModel;
  const embeddings = (c.tieWordEmbeddings ? 1 : 2) * c.vocabSize * c.dModel;
  return 4 * (encoder + decoder + embeddings);
}

/** Float32 bytes of the matrices a decode step multiplies: the decoder's and the lm_head. */
function t5StepMatrixBytes(c: T5Config): number {
  const inner = c.numHeads * c.dKv;
  const decoder = c.numDecoderLayers * (6 * c.dModel * inner + (c.gated ? 3 : 2) * c.dModel * c.dFf);
  return 4 * (decoder + c.vocabSize * c.dModel);
}

/**
 * Bytes the wasm heap holds for a loaded model: the float32 weights, plus, without the matvec engine,
 * XNNPACK's packed copy of the decode step's matrices (the encoder's are never packed). With the engine
 * the step's matrices pass through the heap while loading and are then freed.
 */
export function t5HeapBytes(c: T5Config, engine = packsProjections(c)): number {
  return t5WeightBytes(c) + (engine ? 0 : t5StepMatrixBytes(c));
}

/**
 * Bytes the matvec engine holds for a loaded model (the step's matrices and the lm_head's bfloat16
 * screen), plus room to stage rows while they pack and the packing's per-block sums.
 */
export function t5EngineBytes(c: T5Config): number {
  return t5StepMatrixBytes(c) + 2 * c.vocabSize * c.dModel + PACK_STAGING_BYTES + 8 * c.vocabSize;
}

/**
 * Whether the decode step's matrices go to the matvec engine: where it runs, and when they fit its
 * memory (a wasm32 memory too). Bigger models (flan-t5-xl and up, on the cpu backend) keep them as tensors.
 */
function packsProjections(c: T5Config): boolean {
  return engineEnabled() && t5EngineBytes(c) <= MAX_ENGINE_BYTES;
}

/**
 * wasm: grows the memory a model's weights will fill (the heap, and the matvec engine's where it runs)
 * and faults its pages in on libuv's threads, until `until` settles (no tfjs op may run meanwhile).
 */
export async function prefaultT5(config: T5Config, until?: Promise<unknown>): Promise<void> {
  const engine = packsProjections(config) && tf.getBackend() === 'wasm' ? MatVecEngine.shared().reserve(t5EngineBytes(config), until) : undefined;
  await Promise.all([prefaultHeap(t5HeapBytes(config), until), engine]);
}

/**
 * Loads a T5-family checkpoint. The decoder's matrices are read [in, out] (as a converted artifact stores
 * them, else transposed once here) and become Projections; with `warmUp` (default: on the wasm backend)
 * one tiny encode + step runs so first-use costs are paid at load, not on the first token. On wasm the
 * memory the weights fill is first grown and its pages faulted in on other threads (`prefault`, default
 * on; pass false when the caller already ran prefaultT5, e.g. while it loaded the tokenizer).
 */
export async function loadT5(
  reader: CheckpointReader,
  config: T5Config,
  options: { warmUp?: boolean; prefault?: boolean } = {},
): Promise<T5Model> {
  const wasm = tf.getBackend() === 'wasm';
  if (options.prefault ?? wasm) await prefaultT5(config);
  const model = new T5ForConditionalGeneration(config);
  try {
    await model.load(new CheckpointWeights(reader, packsProjections(config)));
  } catch (err) {
    model.dispose();
    throw err;
  }
  // Only wasm has first-use costs worth a step at load (XNNPACK packs on first use).
  if (options.warmUp ?? wasm) model.warmUp();
  return model;
}
