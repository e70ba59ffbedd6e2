/**
 * FlauBERT (the XLM architecture; FlaubertModel and FlaubertWithLMHeadModel) on TensorFlow.js layers.
 *
 * Papers: Le et al. 2020, https://arxiv.org/abs/1912.05372 (FlauBERT); Lample & Conneau 2019,
 * https://arxiv.org/abs/1901.07291 (XLM). Matches transformers 4.37.2 in eval mode (dropout and layerdrop off):
 * https://github.com/huggingface/transformers/blob/v4.37.2/src/transformers/models/flaubert/modeling_flaubert.py
 * (and the MultiHeadAttention / TransformerFFN / XLMPredLayer it imports from models/xlm/modeling_xlm.py).
 * Variants are data (config.ts): post-norm or pre-norm blocks, gelu or relu, learned or sinusoidal positions,
 * language embeddings, a tied or separate output projection.
 *
 * Quirk kept on purpose: FlaubertModel.forward adds `embeddings(token_type_ids)`, the WORD table, so the
 * tokenizer's all-zero token_type_ids add the row of id 0 (`<s>`) at every position. transformers' pipelines
 * pass them, so the reference outputs include that row; callers that omit tokenTypeIds get the other result.
 *
 * Cost model (docs/performance-notes.md): every weight is a long-lived [in, out] tensor so each projection is
 * XNNPACK's 2-D fast path; the word table is stored once, transposed [embDim, vocab], because the LM head's
 * matMul wants that layout and a lookup is only a gather of columns; the head runs on the requested rows only
 * (the mask positions), never on the whole [batch·seqLen, vocab] block.
 */
import { tf, tfl } from '../../backend/index.js';
import { UnsupportedError } from '../../errors.js';
import type { CheckpointReader, RawTensor } from '../../formats/tensor.js';
import { attention, CheckpointWeights, gelu, InferenceLayer, layerNorm, linear } from '../layers.js';
import type { FlaubertConfig } from './config.js';

/** torch.finfo(float32).min, what XLM's attention writes over masked scores. */
const FLOAT32_MIN = -3.4028234663852886e38;

type Inputs = tf.Tensor | tf.Tensor[];

function first(inputs: Inputs): tf.Tensor {
  const x = Array.isArray(inputs) ? inputs[0] : inputs;
  if (!x) throw new Error('expected an input tensor');
  return x;
}

/** A config as tfjs-layers serialises it (getConfig/fromConfig round trip). */
function configDict(c: FlaubertConfig): tf.serialization.ConfigDict {
  return { ...c };
}

/** `create_sinusoidal_embeddings`: sin on even, cos on odd dimensions of pos / 10000^(2·⌊j/2⌋/dim). */
export function sinusoidalTable(nPos: number, dim: number): Float32Array {
  const out = new Float32Array(nPos * dim);
  for (let pos = 0; pos < nPos; pos++) {
    for (let j = 0; j < dim; j++) {
      const angle = pos / 10000 ** ((2 * Math.floor(j / 2)) / dim);
      out[pos * dim + j] = j % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return out;
}

export class FlaubertLayerNorm extends InferenceLayer {
  static className = 'FlaubertLayerNorm';
  readonly dim: number;
  readonly eps: number;
  private gamma!: tf.Tensor1D;
  private beta!: tf.Tensor1D;

  constructor(args: { name: string; dim: number; eps: number }) {
    super({ name: args.name, trainable: false });
    this.dim = args.dim;
    this.eps = args.eps;
  }

  async load(w: CheckpointWeights): Promise<void> {
    this.gamma = this.own('weight', (await w.tensor(`${this.name}.weight`, [this.dim])) as tf.Tensor1D);
    this.beta = this.own('bias', (await w.tensor(`${this.name}.bias`, [this.dim])) as tf.Tensor1D);
  }

  norm<T extends tf.Tensor>(x: T): T {
    return layerNorm(x, this.gamma, this.beta, this.eps);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => this.norm(first(inputs)));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), dim: this.dim, eps: this.eps };
  }
}
tf.serialization.registerClass(FlaubertLayerNorm);

/**
 * `transformer.embeddings` (word), `position_embeddings` and `lang_embeddings` (n_langs > 1 and use_lang_emb);
 * `layer_norm_emb` is its own layer, as in transformers. The word table also serves the tied LM head.
 */
export class FlaubertEmbeddings extends InferenceLayer {
  static className = 'FlaubertEmbeddings';
  readonly config: FlaubertConfig;
  /** The word table transposed, [embDim, vocab]: the tied head's operand as is, a lookup gathers columns. */
  private table!: tf.Tensor2D;
  private positions!: tf.Tensor2D; // [maxPositions, embDim]
  private langs: tf.Tensor2D | undefined; // [nLangs, embDim]

  constructor(args: { name?: string; config: FlaubertConfig }) {
    super({ name: args.name ?? 'transformer', trainable: false });
    this.config = args.config;
  }

  /** The word table as the tied output projection wants it, [embDim, vocab]. */
  get wordTableT(): tf.Tensor2D {
    return this.table;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { vocabSize, embDim, maxPositionEmbeddings, nLangs, useLangEmb, sinusoidalEmbeddings } = this.config;
    this.table = this.own('embeddings.weight', await w.linear(`${this.name}.embeddings.weight`, embDim, vocabSize));
    const positionName = `${this.name}.position_embeddings.weight`;
    // transformers keeps the stored table even when sinusoidal (the checkpoint holds it); compute it only if absent.
    const positions =
      sinusoidalEmbeddings && !w.has(positionName)
        ? tf.tensor2d(sinusoidalTable(maxPositionEmbeddings, embDim), [maxPositionEmbeddings, embDim])
        : ((await w.tensor(positionName, [maxPositionEmbeddings, embDim])) as tf.Tensor2D);
    this.positions = this.own('position_embeddings.weight', positions);
    if (nLangs > 1 && useLangEmb) {
      const t = (await w.tensor(`${this.name}.lang_embeddings.weight`, [nLangs, embDim])) as tf.Tensor2D;
      this.langs = this.own('lang_embeddings.weight', t);
    }
  }

  /** ids [n] → their word vectors [n, embDim]. */
  lookup(ids: Int32Array): tf.Tensor2D {
    return tf.transpose(tf.gather(this.table, tf.tensor1d(ids, 'int32'), 1));
  }

  /**
   * word + position (+ language) (+ word table at token_type_ids), in transformers' order of additions:
   * [batch·seqLen, embDim], before layer_norm_emb.
   */
  forward(batch: FlaubertBatch): tf.Tensor2D {
    const { batch: b, seqLen: s } = batch;
    const d = this.config.embDim;
    const words = tf.reshape(this.lookup(batch.inputIds), [b, s, d]);
    let x: tf.Tensor3D = tf.add(words, tf.slice(this.positions, [0, 0], [s, d])); // positions broadcast over rows
    if (batch.langs && this.langs) {
      x = tf.add(x, tf.reshape(tf.gather(this.langs, tf.tensor1d(batch.langs, 'int32')), [b, s, d]));
    }
    const types = batch.tokenTypeIds;
    if (types) {
      const t0 = types[0] as number;
      // The tokenizer's types are all one id (0): one column, broadcast, instead of a second full gather.
      // (A gather, not tf.slice: wasm slices a strided column of the big table ~700× slower.)
      const typed = types.every((t) => t === t0)
        ? tf.reshape(tf.gather(this.table, tf.tensor1d([t0], 'int32'), 1), [d])
        : tf.reshape(this.lookup(types), [b, s, d]);
      x = tf.add(x, typed);
    }
    return tf.reshape(x, [b * s, d]);
  }

  /** input ids [batch, seqLen] (int32) → summed embeddings [batch, seqLen, embDim], no token types. */
  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const ids = first(inputs);
      const [b, s] = ids.shape as [number, number];
      const out = this.forward({ inputIds: Int32Array.from(ids.dataSync()), batch: b, seqLen: s });
      return tf.reshape(out, [b, s, this.config.embDim]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), config: configDict(this.config) };
  }
}
tf.serialization.registerClass(FlaubertEmbeddings);

export interface FlaubertAttentionArgs {
  name: string;
  dim: number;
  nHeads: number;
}

/** XLM MultiHeadAttention (self-attention, no cache): q_lin, k_lin, v_lin, out_lin, all with bias. */
export class FlaubertAttention extends InferenceLayer {
  static className = 'FlaubertAttention';
  readonly args: FlaubertAttentionArgs;
  private q!: tf.Tensor2D; // [dim, dim], [in, out]
  private qBias!: tf.Tensor1D;
  private k!: tf.Tensor2D;
  private kBias!: tf.Tensor1D;
  private v!: tf.Tensor2D;
  private vBias!: tf.Tensor1D;
  private o!: tf.Tensor2D;
  private oBias!: tf.Tensor1D;

  constructor(args: FlaubertAttentionArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dim } = this.args;
    const lin = async (p: string): Promise<[tf.Tensor2D, tf.Tensor1D]> => [
      this.own(`${p}.weight`, await w.linear(`${this.name}.${p}.weight`, dim, dim)),
      this.own(`${p}.bias`, (await w.tensor(`${this.name}.${p}.bias`, [dim])) as tf.Tensor1D),
    ];
    [this.q, this.qBias] = await lin('q_lin');
    [this.k, this.kBias] = await lin('k_lin');
    [this.v, this.vBias] = await lin('v_lin');
    [this.o, this.oBias] = await lin('out_lin');
  }

  /** x [batch·len, dim] @ w + b → [batch, heads, len, headDim]. */
  private heads(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor1D, batch: number, len: number): tf.Tensor4D {
    const { nHeads, dim } = this.args;
    return tf.transpose(tf.reshape(linear(x, w, bias), [batch, len, nHeads, dim / nHeads]), [0, 2, 1, 3]);
  }

  /**
   * x [batch·len, dim] → [batch·len, dim]; `mask` is the additive padding mask [batch, 1, 1, len] (undefined
   * when nothing is padded). Scores are scaled by 1/√headDim, as XLM divides q.
   */
  forward(x: tf.Tensor2D, batch: number, len: number, mask: tf.Tensor4D | undefined): tf.Tensor2D {
    const { nHeads, dim } = this.args;
    const q = this.heads(x, this.q, this.qBias, batch, len);
    const k = this.heads(x, this.k, this.kBias, batch, len);
    const v = this.heads(x, this.v, this.vBias, batch, len);
    const ctx = attention(q, k, v, mask, 1 / Math.sqrt(dim / nHeads)); // [batch, heads, len, headDim]
    return linear(tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * len, dim]), this.o, this.oBias);
  }

  /** x [batch, len, dim], no padding. */
  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs) as tf.Tensor3D;
      const [b, s, d] = x.shape;
      return tf.reshape(this.forward(tf.reshape(x, [b * s, d]), b, s, undefined), x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { name: _name, ...rest } = this.args;
    return { ...super.getConfig(), ...rest };
  }
}
tf.serialization.registerClass(FlaubertAttention);

export interface FlaubertFeedForwardArgs {
  name: string;
  dim: number;
  hiddenDim: number;
  activation: 'gelu' | 'relu';
}

/** XLM TransformerFFN: lin2(act(lin1 x)). */
export class FlaubertFeedForward extends InferenceLayer {
  static className = 'FlaubertFeedForward';
  readonly args: FlaubertFeedForwardArgs;
  private w1!: tf.Tensor2D; // [dim, hiddenDim]
  private b1!: tf.Tensor1D;
  private w2!: tf.Tensor2D; // [hiddenDim, dim]
  private b2!: tf.Tensor1D;

  constructor(args: FlaubertFeedForwardArgs) {
    super({ name: args.name, trainable: false });
    this.args = args;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { dim, hiddenDim } = this.args;
    this.w1 = this.own('lin1.weight', await w.linear(`${this.name}.lin1.weight`, dim, hiddenDim));
    this.b1 = this.own('lin1.bias', (await w.tensor(`${this.name}.lin1.bias`, [hiddenDim])) as tf.Tensor1D);
    this.w2 = this.own('lin2.weight', await w.linear(`${this.name}.lin2.weight`, hiddenDim, dim));
    this.b2 = this.own('lin2.bias', (await w.tensor(`${this.name}.lin2.bias`, [dim])) as tf.Tensor1D);
  }

  /** x [rows, dim] → [rows, dim]. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    const h = this.args.activation === 'relu' ? linear(x, this.w1, this.b1, 'relu') : gelu(linear(x, this.w1, this.b1));
    return linear(h, this.w2, this.b2);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs);
      return tf.reshape(this.forward(tf.reshape(x, [-1, this.args.dim])), x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const { name: _name, ...rest } = this.args;
    return { ...super.getConfig(), ...rest };
  }
}
tf.serialization.registerClass(FlaubertFeedForward);

/**
 * Layer i of the stack: transformers keeps `attentions.i`, `layer_norm1.i`, `ffns.i`, `layer_norm2.i` in four
 * parallel lists (the checkpoint names); this groups them. Owns no weight itself.
 */
export class FlaubertBlock extends InferenceLayer {
  static className = 'FlaubertBlock';
  readonly index: number;
  readonly config: FlaubertConfig;
  readonly attention: FlaubertAttention;
  readonly norm1: FlaubertLayerNorm;
  readonly ffn: FlaubertFeedForward;
  readonly norm2: FlaubertLayerNorm;

  constructor(args: { name?: string; index: number; config: FlaubertConfig }) {
    super({ name: args.name ?? `transformer.layer.${args.index}`, trainable: false });
    this.index = args.index;
    this.config = args.config;
    const c = args.config;
    const i = args.index;
    this.attention = new FlaubertAttention({ name: `transformer.attentions.${i}`, dim: c.embDim, nHeads: c.nHeads });
    this.norm1 = new FlaubertLayerNorm({ name: `transformer.layer_norm1.${i}`, dim: c.embDim, eps: c.layerNormEps });
    this.ffn = new FlaubertFeedForward({
      name: `transformer.ffns.${i}`,
      dim: c.embDim,
      hiddenDim: c.hiddenDim,
      activation: c.activation,
    });
    this.norm2 = new FlaubertLayerNorm({ name: `transformer.layer_norm2.${i}`, dim: c.embDim, eps: c.layerNormEps });
  }

  private get parts(): InferenceLayer[] {
    return [this.attention, this.norm1, this.ffn, this.norm2];
  }

  override get nonTrainableWeights(): tfl.LayerVariable[] {
    return this.parts.flatMap((p) => p.weights);
  }

  async load(w: CheckpointWeights): Promise<void> {
    for (const part of this.parts) await part.load(w);
  }

  /** x [batch·len, dim] → [batch·len, dim] (before the padding-mask multiplication the stack applies). */
  forward(x: tf.Tensor2D, batch: number, len: number, mask: tf.Tensor4D | undefined): tf.Tensor2D {
    if (this.config.preNorm) {
      // No final norm after the last pre-norm layer: transformers' FlaubertModel has none.
      const h: tf.Tensor2D = tf.add(x, this.attention.forward(this.norm1.norm(x), batch, len, mask));
      return tf.add(h, this.ffn.forward(this.norm2.norm(h)));
    }
    const h: tf.Tensor2D = this.norm1.norm(tf.add(x, this.attention.forward(x, batch, len, mask)));
    return this.norm2.norm(tf.add(h, this.ffn.forward(h)));
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs) as tf.Tensor3D;
      const [b, s, d] = x.shape;
      return tf.reshape(this.forward(tf.reshape(x, [b * s, d]), b, s, undefined), x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), index: this.index, config: configDict(this.config) };
  }
}
tf.serialization.registerClass(FlaubertBlock);

/** XLMPredLayer without adaptive softmax: `pred_layer.proj`, weight tied to the word table unless untied. */
export class FlaubertPredLayer extends InferenceLayer {
  static className = 'FlaubertPredLayer';
  readonly config: FlaubertConfig;
  private weight: tf.Tensor2D | undefined; // [embDim, vocab]; undefined when tied
  private bias!: tf.Tensor1D;
  private tied: (() => tf.Tensor2D) | undefined;

  constructor(args: { name?: string; config: FlaubertConfig }) {
    super({ name: args.name ?? 'pred_layer', trainable: false });
    this.config = args.config;
  }

  /** Ties the projection to the embeddings' table (not owned here: the embeddings layer frees it). */
  tieTo(embeddings: FlaubertEmbeddings): void {
    this.tied = () => embeddings.wordTableT;
  }

  async load(w: CheckpointWeights): Promise<void> {
    const { embDim, vocabSize, tieWordEmbeddings } = this.config;
    if (!tieWordEmbeddings) this.weight = this.own('proj.weight', await w.linear(`${this.name}.proj.weight`, embDim, vocabSize));
    else if (!this.tied) throw new Error('tied pred_layer: call tieTo(embeddings) before load');
    this.bias = this.own('proj.bias', (await w.tensor(`${this.name}.proj.bias`, [vocabSize])) as tf.Tensor1D);
  }

  /** Hidden states h [rows, embDim] → logits [rows, vocab]. */
  logits(h: tf.Tensor2D): tf.Tensor2D {
    const w = this.weight ?? this.tied?.();
    if (!w) throw new Error('pred_layer is not loaded');
    return linear(h, w, this.bias);
  }

  override call(inputs: Inputs): tf.Tensor {
    return tf.tidy(() => {
      const x = first(inputs);
      const d = this.config.embDim;
      return tf.reshape(this.logits(tf.reshape(x, [-1, d])), [...x.shape.slice(0, -1), this.config.vocabSize]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), config: configDict(this.config) };
  }
}
tf.serialization.registerClass(FlaubertPredLayer);

/** One block of inputs, row-major [batch, seqLen], padded on the right. */
export interface FlaubertBatch {
  readonly inputIds: Int32Array;
  /** 1 = token, 0 = padding. Absent: transformers' rule, the first (count of ids ≠ pad_index) positions of a row. */
  readonly attentionMask?: Int32Array | undefined;
  /** Added through the WORD table (see the file comment); the tokenizer gives all zeros. Absent: nothing added. */
  readonly tokenTypeIds?: Int32Array | undefined;
  /** Language ids, used only when n_langs > 1 and use_lang_emb (transformers' pipelines never pass them). */
  readonly langs?: Int32Array | undefined;
  readonly batch: number;
  readonly seqLen: number;
}

export interface FlaubertEncoderOutput {
  /** [batch, seqLen, embDim] (padded positions are zero, as transformers leaves them). */
  readonly lastHiddenState: Float32Array;
  /** With `hiddenStates`: nLayers + 1 entries [batch, seqLen, embDim], embeddings first, then each layer's output. */
  readonly hiddenStates?: readonly Float32Array[];
}

export interface FlaubertModel {
  readonly config: FlaubertConfig;
  /** The checkpoint had `pred_layer.*` (FlaubertWithLMHeadModel), so logitsAt() works. */
  readonly hasLmHead: boolean;
  readonly vocabSize: number;
  readonly padIndex: number;
  readonly maskIndex: number;
  /** Bytes of float32 weights held (wasm's XNNPACK adds a packed copy of the matrices). */
  readonly weightBytes: number;
  /** Milliseconds the load-time warm-up took (XNNPACK packing), when it ran. */
  readonly warmUpMs: number | undefined;
  /** FlaubertModel's output (transformers' `base_model`). */
  encode(batch: FlaubertBatch, options?: { hiddenStates?: boolean }): FlaubertEncoderOutput;
  /** Last hidden states at flat positions row·seqLen + t only: [positions.length, embDim]. */
  hiddenAt(batch: FlaubertBatch, positions: ArrayLike<number>): Float32Array;
  /**
   * FlaubertWithLMHeadModel logits at flat positions row·seqLen + t only (e.g. the mask positions):
   * [positions.length, vocab]. The stack runs over every position; the head only over these rows.
   */
  logitsAt(batch: FlaubertBatch, positions: ArrayLike<number>): Float32Array;
  dispose(): void;
}

/** The wasm gather does not bounds-check: an id past a table would read other memory, not fail. */
function checkIds(ids: Int32Array, limit: number, what: string): void {
  for (const id of ids) {
    if (!(id >= 0 && id < limit)) throw new RangeError(`${what} ${id} is outside 0…${limit - 1}`);
  }
}

/**
 * Padding as transformers applies it: the multiplicative mask [batch·seqLen, 1] for hidden states and the
 * additive one [batch, 1, 1, seqLen] for attention scores, or undefined when no position is padded (then
 * both are identities and every layer skips two ops).
 */
function paddingMasks(batch: FlaubertBatch, padIndex: number): { keep: tf.Tensor2D; scores: tf.Tensor4D } | undefined {
  const { batch: b, seqLen: s } = batch;
  let mask = batch.attentionMask;
  if (!mask) {
    // get_masks(lengths): the first `count of non-pad ids` positions of each row, wherever the pads are.
    mask = new Int32Array(b * s);
    for (let r = 0; r < b; r++) {
      let n = 0;
      for (let t = 0; t < s; t++) if (batch.inputIds[r * s + t] !== padIndex) n++;
      mask.fill(1, r * s, r * s + n);
    }
  }
  if (mask.every((m) => m !== 0)) return undefined;
  const keep = tf.tensor2d(Float32Array.from(mask, (m) => (m !== 0 ? 1 : 0)), [b * s, 1]);
  const scores = tf.tensor4d(Float32Array.from(mask, (m) => (m !== 0 ? 0 : FLOAT32_MIN)), [b, 1, 1, s]);
  return { keep, scores };
}

/** Reads a base-model checkpoint (FlaubertModel.save_pretrained: no `transformer.` prefix) under LM-model names. */
function withTransformerPrefix(reader: CheckpointReader): CheckpointReader {
  const strip = (name: string): string => (name.startsWith('transformer.') ? name.slice('transformer.'.length) : name);
  return {
    tensors: reader.tensors,
    files: reader.files,
    has: (name) => reader.has(strip(name)),
    read: async (name): Promise<RawTensor> => ({ ...(await reader.read(strip(name))), name }),
    close: () => reader.close(),
  };
}

class FlaubertWithLMHeadModel implements FlaubertModel {
  readonly vocabSize: number;
  readonly padIndex: number;
  readonly maskIndex: number;
  warmUpMs: number | undefined;
  readonly embeddings: FlaubertEmbeddings;
  readonly embeddingsNorm: FlaubertLayerNorm;
  readonly blocks: FlaubertBlock[];
  readonly pred: FlaubertPredLayer | undefined;

  constructor(
    readonly config: FlaubertConfig,
    lmHead: boolean,
  ) {
    this.vocabSize = config.vocabSize;
    this.padIndex = config.padIndex;
    this.maskIndex = config.maskIndex;
    this.embeddings = new FlaubertEmbeddings({ config });
    this.embeddingsNorm = new FlaubertLayerNorm({ name: 'transformer.layer_norm_emb', dim: config.embDim, eps: config.layerNormEps });
    this.blocks = Array.from({ length: config.nLayers }, (_, index) => new FlaubertBlock({ index, config }));
    if (lmHead) {
      this.pred = new FlaubertPredLayer({ config });
      this.pred.tieTo(this.embeddings);
    }
  }

  get hasLmHead(): boolean {
    return this.pred !== undefined;
  }

  private get layers(): InferenceLayer[] {
    return [this.embeddings, this.embeddingsNorm, ...this.blocks, ...(this.pred ? [this.pred] : [])];
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

  private check(batch: FlaubertBatch): void {
    const { batch: b, seqLen: s } = batch;
    const n = b * s;
    if (!(b > 0 && s > 0) || batch.inputIds.length !== n) {
      throw new RangeError(`a batch of ${b}×${s} needs ${n} input ids (got ${batch.inputIds.length})`);
    }
    for (const [what, a] of [['attentionMask', batch.attentionMask], ['tokenTypeIds', batch.tokenTypeIds], ['langs', batch.langs]] as const) {
      if (a && a.length !== n) throw new RangeError(`${what} has ${a.length} values for a ${b}×${s} batch`);
    }
    if (s > this.config.maxPositionEmbeddings) {
      throw new UnsupportedError(`the input has ${s} tokens, more than this model's ${this.config.maxPositionEmbeddings} positions`, {
        hint: 'shorten the text',
      });
    }
    checkIds(batch.inputIds, this.vocabSize, 'token id');
    if (batch.tokenTypeIds) checkIds(batch.tokenTypeIds, this.vocabSize, 'token type id');
    if (batch.langs) checkIds(batch.langs, this.config.nLangs, 'language id');
  }

  private checkPositions(batch: FlaubertBatch, positions: ArrayLike<number>): Int32Array {
    const n = batch.batch * batch.seqLen;
    const out = Int32Array.from(positions);
    if (out.length === 0) throw new RangeError('no positions requested');
    for (let i = 0; i < out.length; i++) {
      const p = out[i] as number;
      if (p !== positions[i] || p < 0 || p >= n) throw new RangeError(`position ${positions[i]} is outside 0…${n - 1}`);
    }
    return out;
  }

  /** The stack: [batch·seqLen, embDim]; `collect` receives the embeddings and each layer's output. */
  private stack(batch: FlaubertBatch, collect?: tf.Tensor[]): tf.Tensor2D {
    const { batch: b, seqLen: s } = batch;
    const masks = paddingMasks(batch, this.padIndex);
    const keep = (x: tf.Tensor2D): tf.Tensor2D => (masks ? tf.mul(x, masks.keep) : x);
    let x = keep(this.embeddingsNorm.norm(this.embeddings.forward(batch)));
    for (const block of this.blocks) {
      collect?.push(x);
      x = keep(block.forward(x, b, s, masks?.scores));
    }
    collect?.push(x);
    return x;
  }

  encode(batch: FlaubertBatch, options: { hiddenStates?: boolean } = {}): FlaubertEncoderOutput {
    this.check(batch);
    return tf.tidy(() => {
      const collect: tf.Tensor[] | undefined = options.hiddenStates ? [] : undefined;
      const last = this.stack(batch, collect).dataSync<'float32'>();
      return collect ? { lastHiddenState: last, hiddenStates: collect.map((t) => t.dataSync<'float32'>()) } : { lastHiddenState: last };
    });
  }

  hiddenAt(batch: FlaubertBatch, positions: ArrayLike<number>): Float32Array {
    this.check(batch);
    const at = this.checkPositions(batch, positions);
    return tf.tidy(() => tf.gather(this.stack(batch), tf.tensor1d(at, 'int32')).dataSync<'float32'>());
  }

  logitsAt(batch: FlaubertBatch, positions: ArrayLike<number>): Float32Array {
    const pred = this.pred;
    if (!pred) {
      throw new UnsupportedError('this checkpoint has no language-model head (pred_layer.*): it cannot predict tokens', {
        hint: 'use a FlaubertWithLMHeadModel checkpoint, such as flaubert/flaubert_base_cased',
      });
    }
    this.check(batch);
    const at = this.checkPositions(batch, positions);
    return tf.tidy(() => {
      const h = tf.gather(this.stack(batch), tf.tensor1d(at, 'int32')); // [positions, embDim]
      return pred.logits(h).dataSync<'float32'>(); // [positions, vocab]
    });
  }

  /** One one-token forward through the head so XNNPACK packs every weight now rather than on the first input. */
  warmUp(): void {
    const t0 = performance.now();
    const one: FlaubertBatch = { inputIds: Int32Array.of(0), attentionMask: Int32Array.of(1), batch: 1, seqLen: 1 };
    if (this.pred) this.logitsAt(one, [0]);
    else this.encode(one);
    this.warmUpMs = performance.now() - t0;
  }
}

export interface LoadFlaubertOptions {
  /**
   * Load `pred_layer.*` (FlaubertWithLMHeadModel). Default: when the checkpoint has it. A checkpoint saved
   * from FlaubertModel (names without `transformer.`) has none.
   */
  lmHead?: boolean;
  /** One tiny forward at load so XNNPACK packs the weights (default: on the wasm backend). */
  warmUp?: boolean;
}

/** Loads a FlauBERT checkpoint (`transformer.*` + `pred_layer.*`, or a bare FlaubertModel's names). */
export async function loadFlaubert(reader: CheckpointReader, config: FlaubertConfig, options: LoadFlaubertOptions = {}): Promise<FlaubertModel> {
  const bare = !reader.has('transformer.embeddings.weight') && reader.has('embeddings.weight');
  const source = bare ? withTransformerPrefix(reader) : reader;
  const lmHead = options.lmHead ?? source.has('pred_layer.proj.bias');
  const model = new FlaubertWithLMHeadModel(config, lmHead);
  try {
    await model.load(new CheckpointWeights(source));
    // Only wasm packs weights on first use; elsewhere a warm-up would just be a wasted forward.
    if (options.warmUp ?? tf.getBackend() === 'wasm') model.warmUp();
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** Right-pads token rows into one batch with attention mask and (all-zero) token types, as tokenizer(padding=True). */
export function flaubertBatch(rows: readonly (readonly number[])[], padIndex: number): FlaubertBatch {
  const seqLen = Math.max(1, ...rows.map((r) => r.length));
  const inputIds = new Int32Array(rows.length * seqLen).fill(padIndex);
  const attentionMask = new Int32Array(rows.length * seqLen);
  rows.forEach((row, b) => {
    inputIds.set(row, b * seqLen);
    attentionMask.fill(1, b * seqLen, b * seqLen + row.length);
  });
  return { inputIds, attentionMask, tokenTypeIds: new Int32Array(rows.length * seqLen), batch: rows.length, seqLen };
}

/** Flat positions (row·seqLen + t) of `id` among the real tokens of a batch. */
export function positionsOf(batch: FlaubertBatch, id: number): number[] {
  const out: number[] = [];
  batch.inputIds.forEach((v, i) => {
    if (v === id && (!batch.attentionMask || batch.attentionMask[i] !== 0)) out.push(i);
  });
  return out;
}
