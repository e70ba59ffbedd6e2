/**
 * T5 / T5 v1.1 / FLAN-T5 / FLAN-UL2 (T5ForConditionalGeneration) on TensorFlow.js layers.
 *
 * Paper: Raffel et al. 2019, https://arxiv.org/abs/1910.10683 (FLAN: https://arxiv.org/abs/2210.11416,
 * UL2: https://arxiv.org/abs/2205.05131). Matches transformers 4.37.2 in eval mode (dropout off):
 * https://github.com/huggingface/transformers/blob/v4.37.2/src/transformers/models/t5/modeling_t5.py
 * Variants are data (config.ts): relu / gated-gelu / gated-silu feed-forward, tied or separate lm_head,
 * num_heads·d_kv ≠ d_model, a different decoder depth.
 *
 * Cost model (docs/performance-notes.md): every weight is a long-lived [in, out] tensor so each per-step
 * matMul is XNNPACK's 2-D fast path; `start()` runs the encoder and every decoder layer's cross-attention
 * K/V once per input; `step()` runs one position per row against the self-attention cache; the relative
 * position bias is computed once per stack and step (block 0 owns the table, every block reuses it).
 */
import { tf, tfl } from '../../backend/index.js';
import { FormatError } from '../../errors.js';
import type { CheckpointReader } from '../../formats/tensor.js';
import type { DecoderState, EncoderBatch, Seq2SeqModel } from '../../generation/seq2seq.js';
import { activate, attention, CheckpointWeights, InferenceLayer, linear, rmsNorm, type Activation } from '../layers.js';
import type { T5Config } from './config.js';
import { bucketMatrix, relativePositionBucket } from './relative-position.js';

/** torch.finfo(float32).min: transformers' additive mask value (not -inf, so fully masked rows stay finite). */
const FLOAT32_MIN = -3.4028234663852886e38;
/** Decode positions covered by the first per-distance bias table; it doubles when a generation outgrows it. */
const INITIAL_DISTANCE_TABLE = 64;

/** Keys and values of one attention, [batch, heads, len, dKv]. */
type KV = { readonly k: tf.Tensor4D; readonly v: tf.Tensor4D };
/**
 * One input's cross-attention keys and values shared by every decoder row, split per head and long-lived
 * for the whole generation: kᵀ [dKv, encLen] and v [encLen, dKv], so each step's q_h·kᵀ and p_h·v are 2-D
 * matMuls XNNPACK packs once, instead of batched matMuls that run in a scalar loop.
 */
type SharedKV = { readonly kt: tf.Tensor2D[]; readonly v: tf.Tensor2D[] };
type CrossKV = KV | SharedKV;
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

/** A config as tfjs-layers serialises it (getConfig/fromConfig round trip). */
function configDict(c: T5Config): tf.serialization.ConfigDict {
  return { ...c, eosTokenId: typeof c.eosTokenId === 'number' ? c.eosTokenId : [...c.eosTokenId] };
}

export class T5LayerNorm extends InferenceLayer {
  static className = 'T5LayerNorm';
  private weight!: tf.Tensor1D;
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

  norm<T extends tf.Tensor>(x: T): T {
    return rmsNorm(x, this.weight, this.eps);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => this.norm(first(inputs)));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dModel: this.dModel, eps: this.eps };
  }
}
tf.serialization.registerClass(T5LayerNorm);

export interface T5AttentionArgs {
  name: string;
  dModel: number;
  numHeads: number;
  dKv: number;
  /** Decoder self-attention: a query sees only keys at or before its position. */
  causal: boolean;
  /** Present on the layer that owns the relative position table (block 0's self-attention). */
  relativeBias?: { numBuckets: number; maxDistance: number; bidirectional: boolean };
}

export class T5Attention extends InferenceLayer {
  static className = 'T5Attention';
  readonly args: T5AttentionArgs;
  private readonly inner: number;
  private q!: tf.Tensor2D; // [dModel, heads·dKv]
  private k!: tf.Tensor2D;
  private v!: tf.Tensor2D;
  private o!: tf.Tensor2D; // [heads·dKv, dModel]
  /** relative_attention_bias stored transposed, [heads, numBuckets], so one gather on axis 1 yields heads first. */
  private table: tf.Tensor2D | undefined;

  constructor(args: T5AttentionArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
    this.inner = args.numHeads * args.dKv;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dModel } = this.args;
    this.q = this.own('q', await w.linear(`${this.name}.q.weight`, dModel, this.inner));
    this.k = this.own('k', await w.linear(`${this.name}.k.weight`, dModel, this.inner));
    this.v = this.own('v', await w.linear(`${this.name}.v.weight`, dModel, this.inner));
    this.o = this.own('o', await w.linear(`${this.name}.o.weight`, this.inner, dModel));
    const rb = this.args.relativeBias;
    if (rb) {
      const name = `${this.name}.relative_attention_bias.weight`;
      const t = await w.tensor(name, [rb.numBuckets, this.args.numHeads]);
      this.table = this.own('relative_attention_bias', tf.transpose(t) as tf.Tensor2D);
      t.dispose();
    }
  }

  /** x [batch·len, dModel] @ w → [batch, heads, len, dKv]. */
  private heads(x: tf.Tensor2D, w: tf.Tensor2D, batch: number, len: number): tf.Tensor4D {
    const { numHeads, dKv } = this.args;
    const y = tf.matMul(x, w);
    // One position per row: [batch, heads·dKv] already is [batch, heads, 1, dKv] in memory.
    if (len === 1) return tf.reshape(y, [batch, numHeads, 1, dKv]);
    return tf.transpose(tf.reshape(y, [batch, len, numHeads, dKv]), [0, 2, 1, 3]);
  }

  /** softmax(q·kᵀ + bias)·v, then o: [batch·lenQ, dModel]. T5 has no 1/√dKv scaling (folded into its init). */
  private attend(q: tf.Tensor4D, kv: KV, bias: tf.Tensor | undefined, batch: number, len: number): tf.Tensor2D {
    const ctx = attention(q, kv.k, kv.v, bias); // [batch, heads, lenQ, dKv]
    const merged =
      len === 1
        ? tf.reshape(ctx, [batch, this.inner])
        : tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * len, this.inner]);
    return tf.matMul(merged, this.o);
  }

  /**
   * Self-attention of x [batch·len, dModel] (already normed) over `past` plus these positions;
   * returns the output and the keys/values including the new positions (the next cache).
   */
  selfAttention(
    x: tf.Tensor2D,
    batch: number,
    len: number,
    bias: tf.Tensor | undefined,
    past?: KV,
  ): { out: tf.Tensor2D; kv: KV } {
    const q = this.heads(x, this.q, batch, len);
    let k = this.heads(x, this.k, batch, len);
    let v = this.heads(x, this.v, batch, len);
    if (past) {
      k = tf.concat([past.k, k], 2);
      v = tf.concat([past.v, v], 2);
    }
    const kv = { k, v };
    return { out: this.attend(q, kv, bias, batch, len), kv };
  }

  /** Keys and values of the encoder output enc [batch·len, dModel], computed once per input. */
  crossKV(enc: tf.Tensor2D, batch: number, len: number): KV {
    return { k: this.heads(enc, this.k, batch, len), v: this.heads(enc, this.v, batch, len) };
  }

  /** Per-head keys and values of one input's encoder output enc [encLen, dModel] (see SharedKV). */
  sharedCrossKV(enc: tf.Tensor2D): SharedKV {
    const h = this.args.numHeads;
    const kt = tf.split(tf.transpose(tf.matMul(enc, this.k)), h, 0) as tf.Tensor2D[]; // heads × [dKv, encLen]
    const v = tf.split(tf.matMul(enc, this.v), h, 1) as tf.Tensor2D[]; // heads × [encLen, dKv]
    return { kt, v };
  }

  /**
   * x [batch·len, dModel] (normed) attending to the encoder: `mask` is the additive padding mask,
   * [batch, 1, 1, encLen] with KV, [1, encLen] with SharedKV (where every row of x reads the same input).
   */
  crossAttention(x: tf.Tensor2D, batch: number, len: number, kv: CrossKV, mask: tf.Tensor | undefined): tf.Tensor2D {
    if ('k' in kv) return this.attend(this.heads(x, this.q, batch, len), kv, mask, batch, len);
    const h = this.args.numHeads;
    const q = tf.split(tf.matMul(x, this.q), h, 1); // heads × [rows, dKv]
    let scores = tf.concat(q.map((qh, i) => tf.matMul(qh, kv.kt[i] as tf.Tensor2D)), 0) as tf.Tensor2D; // [heads·rows, encLen]
    if (mask) scores = tf.add(scores, mask);
    const p = tf.split(tf.softmax(scores), h, 0);
    return tf.matMul(tf.concat(p.map((ph, i) => tf.matMul(ph, kv.v[i] as tf.Tensor2D)), 1), this.o); // via [rows, heads·dKv]
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
   * position t over keys 0…t is the last t+1 columns (one slice per decode step): [1, heads, 1, n].
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
      if (enc) {
        const kv = this.crossKV(tf.reshape(enc, [batch * enc.shape[1], d]) as tf.Tensor2D, batch, enc.shape[1]);
        out = this.crossAttention(x2, batch, len, kv, undefined);
      } else {
        let bias: tf.Tensor | undefined = this.table ? this.positionBias(len, len) : undefined;
        if (this.args.causal) bias = bias ? tf.add(bias, causalMask(len)) : causalMask(len);
        out = this.selfAttention(x2, batch, len, bias).out;
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
}

/** DenseReluDense: wo(act(wi x)) or, gated, wo(act(wi_0 x) · wi_1 x). */
export class T5FeedForward extends InferenceLayer {
  static className = 'T5FeedForward';
  readonly args: T5FeedForwardArgs;
  private wi!: tf.Tensor2D; // wi or wi_0, [dModel, dFf]
  private wiLinear: tf.Tensor2D | undefined; // wi_1 when gated
  private wo!: tf.Tensor2D; // [dFf, dModel]

  constructor(args: T5FeedForwardArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dModel, dFf, gated } = this.args;
    this.wi = this.own(gated ? 'wi_0' : 'wi', await w.linear(`${this.name}.${gated ? 'wi_0' : 'wi'}.weight`, dModel, dFf));
    if (gated) this.wiLinear = this.own('wi_1', await w.linear(`${this.name}.wi_1.weight`, dModel, dFf));
    this.wo = this.own('wo', await w.linear(`${this.name}.wo.weight`, dFf, dModel));
  }

  /** x [rows, dModel] → [rows, dModel]. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    const act = this.args.activation;
    const h = act === 'relu' ? linear(x, this.wi, undefined, 'relu') : activate(linear(x, this.wi), act);
    return tf.matMul(this.wiLinear ? tf.mul(h, tf.matMul(x, this.wiLinear)) : h, this.wo);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs);
      const d = this.args.dModel;
      return tf.reshape(this.forward(tf.reshape(x, [-1, d])), x.shape);
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
interface CrossInputs {
  readonly kv: CrossKV;
  readonly mask: tf.Tensor | undefined;
}

/**
 * One T5 block: pre-norm residual sub-layers, named as in the checkpoint: layer.0 self-attention,
 * (decoder) layer.1 cross-attention, then the feed-forward.
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
    this.selfNorm = new T5LayerNorm({ name: `${p}.0.layer_norm`, dModel: c.dModel, eps: c.layerNormEpsilon });
    this.selfAttention = new T5Attention({
      name: `${p}.0.SelfAttention`,
      ...attention,
      causal: args.isDecoder,
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
      this.crossAttention = new T5Attention({ name: `${p}.1.EncDecAttention`, ...attention, causal: false });
    }
    const ff = args.isDecoder ? 2 : 1;
    this.ffNorm = new T5LayerNorm({ name: `${p}.${ff}.layer_norm`, dModel: c.dModel, eps: c.layerNormEpsilon });
    this.ff = new T5FeedForward({
      name: `${p}.${ff}.DenseReluDense`,
      dModel: c.dModel,
      dFf: c.dFf,
      gated: c.gated,
      activation: c.activation,
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

  /**
   * x [batch·len, dModel] → [batch·len, dModel]; `bias` is the stack's position bias plus masks,
   * `past` the self-attention cache. Returns the self-attention K/V including these positions.
   */
  forward(
    x: tf.Tensor2D,
    batch: number,
    len: number,
    bias: tf.Tensor | undefined,
    past?: KV,
    cross?: CrossInputs,
  ): { x: tf.Tensor2D; kv: KV } {
    const self = this.selfAttention.selfAttention(this.selfNorm.norm(x), batch, len, bias, past);
    let h: tf.Tensor2D = tf.add(x, self.out);
    if (cross && this.crossNorm && this.crossAttention) {
      h = tf.add(h, this.crossAttention.crossAttention(this.crossNorm.norm(h), batch, len, cross.kv, cross.mask));
    }
    return { x: tf.add(h, this.ff.forward(this.ffNorm.norm(h))), kv: self.kv };
  }

  /** [x] (encoder block) or [x, encoderOutput] (decoder block); [batch, len, dModel], no padding. */
  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const x = first(list) as tf.Tensor3D;
      const [batch, len, d] = x.shape;
      const att = this.selfAttention;
      let bias: tf.Tensor | undefined = att.args.relativeBias ? att.positionBias(len, len) : undefined;
      if (this.blockArgs.isDecoder) bias = bias ? tf.add(bias, causalMask(len)) : causalMask(len);
      const enc = list[1] as tf.Tensor3D | undefined;
      let cross: CrossInputs | undefined;
      if (enc && this.crossAttention) {
        const kv = this.crossAttention.crossKV(tf.reshape(enc, [batch * enc.shape[1], d]) as tf.Tensor2D, batch, enc.shape[1]);
        cross = { kv, mask: undefined };
      }
      return tf.reshape(this.forward(tf.reshape(x, [batch * len, d]), batch, len, bias, undefined, cross).x, x.shape);
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
  private head!: tf.Tensor2D; // [dModel, vocab]

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
      this.head = this.own('weight', await w.linear(name, dModel, vocabSize));
    } else {
      this.embedding = this.own('weight', (await w.tensor(name, [vocabSize, dModel])) as tf.Tensor2D);
      this.head = this.own('lm_head', await w.linear('lm_head.weight', dModel, vocabSize));
    }
  }

  /** ids [n] → [n, dModel]. */
  embed(ids: tf.Tensor1D): tf.Tensor2D {
    if (this.embedding) return tf.gather(this.embedding, ids);
    return tf.transpose(tf.gather(this.head, ids, 1));
  }

  /** Decoder output x [rows, dModel] → logits [rows, vocab]. */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    // Mesh TensorFlow rescales before the tied projection; transformers multiplies by d_model^-0.5.
    const h = this.embedding ? x : tf.mul(x, this.config.dModel ** -0.5);
    return tf.matMul(h, this.head);
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

function disposeKV(list: readonly CrossKV[] | undefined): void {
  for (const kv of list ?? []) {
    if ('k' in kv) tf.dispose([kv.k, kv.v]);
    else tf.dispose([...kv.kt, ...kv.v]);
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
    /** Per decoder layer: the encoder's K/V, [rows, heads, encLen, dKv] or shared per head. */
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
  /** Bytes of float32 weights the model holds (wasm's XNNPACK adds a packed copy of the matrices). */
  readonly weightBytes: number;
  /** Milliseconds the load-time warm-up took (XNNPACK packing), when it ran. */
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

  async load(w: CheckpointWeights): Promise<void> {
    for (const layer of this.layers) await layer.load(w);
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

  /** The encoder stack: [batch·seqLen, dModel] after the final norm; `collect` gets each block's input. */
  private encode(batch: EncoderBatch, collect?: tf.Tensor[]): tf.Tensor2D {
    const { batch: b, seqLen: s } = batch;
    let x = this.shared.embed(tf.tensor1d(batch.inputIds, 'int32'));
    const mask = paddingMask(batch);
    const own = (this.encoder[0] as T5Block).selfAttention.positionBias(s, s); // [1, heads, s, s]
    const bias = mask ? tf.add(own, mask) : own; // [b or 1, heads, s, s]
    for (const block of this.encoder) {
      collect?.push(x);
      x = block.forward(x, b, s, bias).x;
    }
    x = this.encoderNorm.norm(x);
    collect?.push(x);
    return x;
  }

  /** The decoder stack over `len` positions per row: normed output [rows·len, dModel] and the new caches. */
  private decode(
    ids: Int32Array,
    rows: number,
    len: number,
    bias: tf.Tensor,
    cross: readonly CrossKV[],
    crossMask: tf.Tensor | undefined,
    past: readonly KV[] | undefined,
    collect?: tf.Tensor[],
  ): { x: tf.Tensor2D; present: KV[] } {
    let x = this.shared.embed(tf.tensor1d(ids, 'int32'));
    const present: KV[] = [];
    this.decoder.forEach((block, i) => {
      collect?.push(x);
      const r = block.forward(x, rows, len, bias, past?.[i], { kv: cross[i] as CrossKV, mask: crossMask });
      x = r.x;
      present.push(r.kv);
    });
    x = this.decoderNorm.norm(x);
    collect?.push(x);
    return { x, present };
  }

  start(batch: EncoderBatch, expand: number): DecoderState {
    checkBatch(batch, this.vocabSize);
    if (!Number.isInteger(expand) || expand < 1) throw new RangeError(`expand must be a positive integer (got ${expand})`);
    const shared = batch.batch === 1 && expand * batch.seqLen >= SHARED_CROSS_MIN_WORK;
    const parts = tf.tidy(() => {
      const enc = this.encode(batch); // [batch·seqLen, dModel]
      const mask = paddingMask(batch); // [batch, 1, 1, seqLen]
      const distance = tf.keep(this.decoderBias.distanceBias(INITIAL_DISTANCE_TABLE));
      const attention = (block: T5Block): T5Attention => block.crossAttention as T5Attention;
      if (shared) {
        const cross = this.decoder.map((block) => {
          const kv = attention(block).sharedCrossKV(enc);
          return { kt: kv.kt.map((t) => tf.keep(t)), v: kv.v.map((t) => tf.keep(t)) };
        });
        return { cross, mask: mask ? tf.keep(tf.reshape(mask, [1, batch.seqLen])) : undefined, distance };
      }
      const repeat = Int32Array.from({ length: batch.batch * expand }, (_, r) => Math.floor(r / expand));
      const index = expand > 1 ? tf.tensor1d(repeat, 'int32') : undefined;
      const rows = <T extends tf.Tensor>(t: T): T => tf.keep(index ? tf.gather(t, index) : t);
      const cross = this.decoder.map((block) => {
        const kv = attention(block).crossKV(enc, batch.batch, batch.seqLen);
        return { k: rows(kv.k), v: rows(kv.v) };
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
    const s = this.take(state);
    if (tokens.length !== s.rows) throw new RangeError(`step needs one token per row (${s.rows}), got ${tokens.length}`);
    checkIds(tokens, this.vocabSize);
    const t = s.length;
    const grow = t + 1 > s.distance.shape[3];
    const longer = Math.max(2 * s.distance.shape[3], t + 1);
    const distance = grow ? tf.keep(tf.tidy(() => this.decoderBias.distanceBias(longer))) : s.distance;
    let out: { logits: tf.Tensor2D; present: KV[] };
    try {
      out = tf.tidy(() => {
        const n = distance.shape[3];
        const bias = tf.slice(distance, [0, 0, 0, n - 1 - t], [1, distance.shape[1], 1, t + 1]); // [1, heads, 1, t+1]
        const { x, present } = this.decode(tokens, s.rows, 1, bias, s.cross, s.crossMask, s.past);
        for (const kv of present) {
          tf.keep(kv.k);
          tf.keep(kv.v);
        }
        return { logits: this.shared.logits(x), present };
      });
    } catch (err) {
      if (grow) distance.dispose();
      throw err;
    }
    // The only host read of the step: [rows, vocab].
    const logits = out.logits.dataSync<'float32'>();
    out.logits.dispose();
    disposeKV(s.past);
    if (grow) s.distance.dispose();
    s.retire();
    return { logits, state: new T5State(this, s.rows, t + 1, s.group, s.cross, s.crossMask, out.present, distance) };
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
      const rowsOf = (e: KV): KV => ({ k: pick(e.k), v: pick(e.v) });
      return {
        past: s.past?.map(rowsOf),
        cross: sameCross ? undefined : s.cross.map((e) => ('k' in e ? rowsOf(e) : e)),
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
      const { x } = this.decode(decoderInputIds, batch.batch, len, bias, cross, paddingMask(batch), undefined, dec);
      const read = (t: tf.Tensor): Float32Array => t.dataSync<'float32'>();
      return {
        logits: read(this.shared.logits(x)),
        encoderLastHiddenState: read(last),
        encoderHiddenStates: enc.map(read),
        decoderHiddenStates: dec.map(read),
      };
    });
  }

  /** One tiny encode + step so XNNPACK packs every weight now rather than on the first real token. */
  warmUp(): void {
    const t0 = performance.now();
    const one = { inputIds: Int32Array.of(this.padTokenId), attentionMask: Int32Array.of(1), batch: 1, seqLen: 1 };
    const state = this.start(one, 1);
    try {
      this.step(state, Int32Array.of(this.decoderStartTokenId)).state.dispose();
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

/**
 * Loads a T5-family checkpoint. Linear weights are transposed once here into [in, out]; with `warmUp`
 * (default: on the wasm backend) one tiny encode + step runs so XNNPACK's weight packing is paid at load,
 * not on the first token.
 */
export async function loadT5(
  reader: CheckpointReader,
  config: T5Config,
  options: { warmUp?: boolean } = {},
): Promise<T5Model> {
  const model = new T5ForConditionalGeneration(config);
  try {
    await model.load(new CheckpointWeights(reader));
  } catch (err) {
    model.dispose();
    throw err;
  }
  // Only wasm packs weights on first use; elsewhere a warm-up would just be a wasted step.
  if (options.warmUp ?? tf.getBackend() === 'wasm') model.warmUp();
  return model;
}
