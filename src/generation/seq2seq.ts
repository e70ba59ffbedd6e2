/**
 * The only view generation has of a model: encode a padded batch once, then decode one token per row
 * per step against a cache the model owns. Every seq2seq model (T5, FLAN-T5, FLAN-UL2) implements it;
 * search strategies never see tensors, only logits on the host.
 */

export interface EncoderBatch {
  /** Row-major [batch, seqLen] token ids, right-padded with the pad id. */
  readonly inputIds: Int32Array;
  /** Row-major [batch, seqLen]; 1 for real tokens, 0 for padding. */
  readonly attentionMask: Int32Array;
  readonly batch: number;
  readonly seqLen: number;
}

/** Model state for one generation: encoder outputs, cross-attention K/V, self-attention cache. */
export interface DecoderState {
  /** Rows currently decoded (batch × beams). */
  readonly rows: number;
  /** Decoder tokens consumed so far per row (the cache length). */
  readonly length: number;
  /** Frees every tensor this state holds. */
  dispose(): void;
}

/**
 * One step's next-token logits known within bounds, exact values on request: what a model with a cheap
 * screen of its output projection returns, for greedy search (bounded-argmax.ts). Bounds may be wider than
 * needed, never narrower: exact ∈ [lower, upper]; a token without a bound (NaN, non-finite) has
 * lower -Infinity and upper Infinity.
 */
export interface BoundedLogits {
  /** Row r's bounds on the logits of `tokens`, in that order. */
  bounds(row: number, tokens: readonly number[]): { lower: Float32Array; upper: Float32Array };
  /** The largest lower bound in row r over every token but `except`'s (-Infinity if none has one). */
  maxLower(row: number, except: readonly number[]): number;
  /** Row r's tokens, ascending and but `except`, whose upper bound reaches `threshold`. */
  reaching(row: number, threshold: number, except: readonly number[]): number[];
  /** Row r's exact logits of `tokens`, in that order: step()'s values, bit for bit. */
  exact(row: number, tokens: readonly number[]): Float32Array;
}

export interface Seq2SeqModel {
  readonly vocabSize: number;
  readonly decoderStartTokenId: number;
  readonly padTokenId: number;
  readonly eosTokenId: number | readonly number[];
  /**
   * Runs the encoder once and prepares a decoder state whose rows repeat each input `expand` times
   * (beams or return sequences), in order: input 0 × expand, input 1 × expand, …
   */
  start(batch: EncoderBatch, expand: number): DecoderState;
  /**
   * Feeds one token per row, returns the next-token logits row-major [rows, vocabSize] and the new state
   * (the old one is consumed).
   */
  step(state: DecoderState, tokens: Int32Array): { logits: Float32Array; state: DecoderState };
  /**
   * As step(), with the logits bounded rather than exact (cheaper to produce); undefined, the state left
   * as it was, where the model has no screen of its output projection.
   */
  stepBounded?(state: DecoderState, tokens: Int32Array): { logits: BoundedLogits; state: DecoderState } | undefined;
  /** Reorders (and may duplicate) rows, as beam search does after choosing the next beams. */
  reorder(state: DecoderState, rows: Int32Array): DecoderState;
}
