/**
 * A host-only Seq2SeqModel for generation tests: each row's next-token logits are a pure function of its
 * input's (unpadded) encoder ids and the decoder tokens that row was fed. It also polices the state contract:
 * a state passed to step/reorder is consumed, and every state must end up consumed or disposed exactly once.
 */
import type { BoundedLogits, DecoderState, EncoderBatch, Seq2SeqModel } from '../../src/generation/seq2seq.js';

export type LogitsFn = (input: readonly number[], prefix: readonly number[]) => ArrayLike<number>;

class FakeState implements DecoderState {
  consumed = false;
  disposed = false;

  constructor(
    readonly inputs: readonly (readonly number[])[],
    readonly prefixes: readonly (readonly number[])[],
    private readonly model: FakeModel,
  ) {
    model.live.add(this);
  }

  get rows(): number {
    return this.prefixes.length;
  }

  get length(): number {
    return this.prefixes[0]?.length ?? 0;
  }

  dispose(): void {
    if (this.disposed || this.consumed) throw new Error('state disposed twice or after being consumed');
    this.disposed = true;
    this.model.live.delete(this);
  }

  consume(): void {
    if (this.disposed || this.consumed) throw new Error('state used after being consumed or disposed');
    this.consumed = true;
    this.model.live.delete(this);
  }
}

export class FakeModel implements Seq2SeqModel {
  readonly decoderStartTokenId = 0;
  readonly padTokenId = 0;
  readonly eosTokenId = 1;
  readonly live = new Set<FakeState>();
  steps = 0;
  reorders = 0;
  /** Tokens fed at each step, per row. */
  readonly fed: number[][] = [];

  /** stepBounded() calls that returned bounds. */
  boundedSteps = 0;

  /** With `bound`, stepBounded() gives logits off by up to `bound` (that radius), else undefined. */
  constructor(
    readonly vocabSize: number,
    private readonly logits: LogitsFn,
    private readonly bound?: number,
  ) {}

  stepBounded(state: DecoderState, tokens: Int32Array): { logits: BoundedLogits; state: DecoderState } | undefined {
    const bound = this.bound;
    if (bound === undefined) return undefined;
    this.boundedSteps++;
    const { logits, state: next } = this.step(state, tokens);
    const vocab = this.vocabSize;
    return {
      // Off by 0.9 of the bound, alternating in sign: enough to reorder close logits.
      logits: boundedFromArrays(
        logits.map((v, i) => v + (i % 2 === 0 ? 0.9 : -0.9) * bound),
        new Float64Array(tokens.length).fill(1),
        new Float32Array(vocab).fill(bound),
        logits,
      ),
      state: next,
    };
  }

  start(batch: EncoderBatch, expand: number): DecoderState {
    const inputs: number[][] = [];
    for (let b = 0; b < batch.batch; b++) {
      const ids: number[] = [];
      for (let t = 0; t < batch.seqLen; t++) {
        if (batch.attentionMask[b * batch.seqLen + t] === 1) ids.push(batch.inputIds[b * batch.seqLen + t]!);
      }
      for (let e = 0; e < expand; e++) inputs.push(ids);
    }
    return new FakeState(inputs, inputs.map(() => []), this);
  }

  step(state: DecoderState, tokens: Int32Array): { logits: Float32Array; state: DecoderState } {
    const s = state as FakeState;
    if (tokens.length !== s.rows) throw new Error(`step got ${tokens.length} tokens for ${s.rows} rows`);
    s.consume();
    this.steps++;
    this.fed.push([...tokens]);
    const prefixes = s.prefixes.map((p, r) => [...p, tokens[r]!]);
    const logits = new Float32Array(s.rows * this.vocabSize);
    prefixes.forEach((prefix, r) => {
      const row = this.logits(s.inputs[r]!, prefix);
      if (row.length !== this.vocabSize) throw new Error('logits function returned a wrong-sized row');
      logits.set(Float32Array.from(row), r * this.vocabSize);
    });
    return { logits, state: new FakeState(s.inputs, prefixes, this) };
  }

  reorder(state: DecoderState, rows: Int32Array): DecoderState {
    const s = state as FakeState;
    if (rows.length !== s.rows) throw new Error('reorder must keep the row count');
    for (const r of rows) if (r < 0 || r >= s.rows) throw new Error(`reorder row ${r} out of range`);
    s.consume();
    this.reorders++;
    return new FakeState(
      [...rows].map((r) => s.inputs[r]!),
      [...rows].map((r) => s.prefixes[r]!),
      this,
    );
  }
}

/**
 * BoundedLogits over host arrays: row r's logit j within approx ± rowScale[r]·columnRadius[j] (a little
 * wider: bounds() stores float32); a NaN approx or non-finite radius has no bound. `exact` holds the
 * exact logits, [rows, vocab].
 */
export function boundedFromArrays(approx: Float32Array, rowScale: Float64Array, columnRadius: Float32Array, exact: Float32Array): BoundedLogits {
  const vocab = columnRadius.length;
  const radius = (row: number, j: number): number => {
    const a = approx[row * vocab + j] as number;
    const r = (rowScale[row] as number) * (columnRadius[j] as number);
    // Room for the float32 rounding of a ± r in bounds().
    return r + (Math.abs(a) + r) * 2 ** -20;
  };
  const lowerOf = (row: number, j: number): number => {
    const r = radius(row, j);
    return r < Infinity ? (approx[row * vocab + j] as number) - r : -Infinity;
  };
  const upperOf = (row: number, j: number): number => {
    const r = radius(row, j);
    return r < Infinity ? (approx[row * vocab + j] as number) + r : Infinity;
  };
  return {
    bounds: (row, tokens) => ({
      lower: Float32Array.from(tokens, (j) => lowerOf(row, j)),
      upper: Float32Array.from(tokens, (j) => upperOf(row, j)),
    }),
    maxLower: (row, except) => {
      const skip = new Set(except);
      let best = -Infinity;
      for (let j = 0; j < vocab; j++) if (!skip.has(j) && lowerOf(row, j) > best) best = lowerOf(row, j);
      return best;
    },
    reaching: (row, threshold, except) => {
      const skip = new Set(except);
      return Array.from({ length: vocab }, (_, j) => j).filter((j) => !skip.has(j) && upperOf(row, j) >= threshold);
    },
    exact: (row, tokens) => Float32Array.from(tokens, (j) => exact[row * vocab + j] as number),
  };
}

/** Right-padded batch of token-id rows (pad 0), as the tokenizer would give it. */
export function batchOf(...rows: number[][]): EncoderBatch {
  const seqLen = Math.max(...rows.map((r) => r.length));
  const inputIds = new Int32Array(rows.length * seqLen);
  const attentionMask = new Int32Array(rows.length * seqLen);
  rows.forEach((row, b) => {
    row.forEach((id, t) => {
      inputIds[b * seqLen + t] = id;
      attentionMask[b * seqLen + t] = 1;
    });
  });
  return { inputIds, attentionMask, batch: rows.length, seqLen };
}

/** Logits whose softmax is exactly `probs` (up to float rounding); 0 maps to -Infinity. */
export function logitsOf(probs: readonly number[]): number[] {
  return probs.map((p) => Math.log(p));
}

/**
 * Logits from a table keyed by the decoder prefix (joined with ','), e.g. '0' for the first step; other prefixes
 * get `fallback` (uniform by default).
 */
export function scripted(
  vocab: number,
  table: Record<string, readonly number[]>,
  fallback?: readonly number[],
): LogitsFn {
  return (_input, prefix) => table[prefix.join(',')] ?? fallback ?? new Array<number>(vocab).fill(0);
}

/** Pseudo-random but deterministic logits in [-4, 4), a function of the input and the whole prefix. */
export function hashed(vocab: number, salt = 0): LogitsFn {
  return (input, prefix) => {
    let h = 2166136261 ^ salt;
    for (const x of [...input, -1, ...prefix]) h = Math.imul(h ^ (x + 0x9e37), 16777619);
    const out: number[] = [];
    for (let v = 0; v < vocab; v++) {
      h = Math.imul(h ^ (h >>> 15), 2246822507);
      h = Math.imul(h ^ (h >>> 13), 3266489909);
      out.push((((h ^ (h >>> 16)) >>> 0) / 2 ** 32) * 8 - 4);
    }
    return out;
  };
}
