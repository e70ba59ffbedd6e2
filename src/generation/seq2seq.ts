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
  /** Reorders (and may duplicate) rows, as beam search does after choosing the next beams. */
  reorder(state: DecoderState, rows: Int32Array): DecoderState;
}
