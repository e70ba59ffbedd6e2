/**
 * Greedy search's next token from bounded logits (seq2seq.ts BoundedLogits): the token argmax over the
 * exact processed logits picks, for the price of a few exact logits rather than the whole vocabulary's.
 *
 * A processor rewrites only the scores of the tokens it touches, each by a non-decreasing function of that
 * score (logits-processors.ts), so processing a touched token's bounds bounds its processed score. The
 * winner's processed score is at least the largest lower bound, T; every token whose upper bound reaches T
 * is a candidate, and any other token scores strictly below the winner. So the first maximum among the
 * candidates' exact processed scores is the first maximum of the whole row.
 */
import { type LogitsProcessor } from './logits-processors.js';
import type { BoundedLogits } from './seq2seq.js';

/** Buffers reused from step to step. */
export class BoundsScratch {
  /** A touched token's bounds and, for candidates, exact scores, at its index (processors index by token). */
  readonly lower: Float32Array;
  readonly upper: Float32Array;
  readonly scores: Float32Array;
  /** 1 at the tokens some processor touches this step. */
  readonly touched: Uint8Array;
  constructor(vocab: number) {
    this.lower = new Float32Array(vocab);
    this.upper = new Float32Array(vocab);
    this.scores = new Float32Array(vocab);
    this.touched = new Uint8Array(vocab);
  }
}

export function boundedArgmax(
  logits: BoundedLogits,
  row: number,
  ids: readonly number[],
  processors: readonly LogitsProcessor[],
  scratch: BoundsScratch,
): number {
  const vocab = logits.columnRadius.length;
  const touchedList = [...new Set(processors.flatMap((p) => p.touches(ids)))].filter((j) => j >= 0 && j < vocab).sort((x, y) => x - y);
  const bounds: Row = { approx: logits.approx, at: row * vocab, columnRadius: logits.columnRadius, scale: (logits.rowScale[row] as number) * (1 + 2 ** -22) };
  let threshold = boundTouched(bounds, touchedList, ids, processors, scratch);
  const kept: number[] = [];
  threshold = scanUntouched(bounds, scratch.touched, threshold, kept);
  const candidates = mergeCandidates(bounds, kept, touchedList, scratch.upper, threshold);
  for (const j of touchedList) scratch.touched[j] = 0;
  const exact = logits.exact(row, candidates);
  const { scores } = scratch;
  for (let i = 0; i < candidates.length; i++) scores[candidates[i] as number] = exact[i] as number;
  // The processors read and write only touched tokens; a touched non-candidate's score is never compared.
  for (const p of processors) p(ids, scores);
  return firstMaximum(scores, candidates);
}

/**
 * One row of bounded logits. The bounds of touched tokens, stored as float32 for the processors, are widened
 * by 2⁻²² of both terms (`scale` carries one factor): rounding a ± r (by ≤ 2⁻²⁴ of it) cannot narrow them;
 * the other tokens' are compared in double precision. The work is split into small
 * functions without closures: V8 optimises those loops reliably (one large function kept deoptimising).
 */
interface Row {
  approx: Float32Array;
  at: number;
  columnRadius: Float32Array;
  scale: number;
}

/** Marks the touched tokens, processes their bounds (in scratch.lower / upper); the largest lower bound. */
function boundTouched(row: Row, touchedList: readonly number[], ids: readonly number[], processors: readonly LogitsProcessor[], scratch: BoundsScratch): number {
  const { lower, upper, touched } = scratch;
  for (const j of touchedList) {
    touched[j] = 1;
    const a = row.approx[row.at + j] as number;
    const r = row.scale * (row.columnRadius[j] as number) + Math.abs(a) * 2 ** -22;
    // No bound (NaN or infinite): always a candidate, never the threshold.
    lower[j] = r < Infinity ? a - r : -Infinity;
    upper[j] = r < Infinity ? a + r : Infinity;
  }
  for (const p of processors) {
    p(ids, lower);
    p(ids, upper);
  }
  let threshold = -Infinity;
  for (const j of touchedList) if ((lower[j] as number) > threshold) threshold = lower[j] as number;
  return threshold;
}

/**
 * One pass over the untouched tokens, raising the threshold to their largest lower bound. It only rises,
 * so a token whose upper bound is below it when seen is no candidate; `kept` gets the others (to be checked
 * against the final threshold), NaN bounds included.
 */
function scanUntouched(row: Row, touched: Uint8Array, threshold: number, kept: number[]): number {
  const { approx, at, columnRadius, scale } = row;
  const vocab = columnRadius.length;
  for (let j = 0; j < vocab; j++) {
    if (touched[j] === 1) continue;
    // Compared in double precision: no float32 rounding to widen for.
    const a = approx[at + j] as number;
    const r = scale * (columnRadius[j] as number);
    if (a - r > threshold) threshold = a - r;
    if (!(a + r < threshold)) kept.push(j);
  }
  return threshold;
}

/** The kept and touched tokens, in index order, whose upper bound reaches the threshold (or that have none). */
function mergeCandidates(row: Row, kept: readonly number[], touchedList: readonly number[], upper: Float32Array, threshold: number): number[] {
  const { approx, at, columnRadius, scale } = row;
  const candidates: number[] = [];
  let t = 0;
  for (const j of kept) {
    for (; t < touchedList.length && (touchedList[t] as number) < j; t++) {
      const u = touchedList[t] as number;
      if ((upper[u] as number) >= threshold) candidates.push(u);
    }
    if (!((approx[at + j] as number) + scale * (columnRadius[j] as number) < threshold)) candidates.push(j);
  }
  for (; t < touchedList.length; t++) {
    const u = touchedList[t] as number;
    if ((upper[u] as number) >= threshold) candidates.push(u);
  }
  return candidates;
}

/** The first candidate (in index order) with the largest score, as torch.argmax over the whole row. */
function firstMaximum(scores: Float32Array, candidates: readonly number[]): number {
  let best = candidates[0] as number;
  for (const j of candidates) if ((scores[j] as number) > (scores[best] as number)) best = j;
  return best;
}
