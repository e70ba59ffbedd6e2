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
import { argmax, type LogitsProcessor } from './logits-processors.js';
import type { BoundedLogits } from './seq2seq.js';

/** Rows of the vocabulary reused from step to step: processors index scores by token. */
export class BoundsScratch {
  readonly lower: Float32Array;
  readonly upper: Float32Array;
  readonly scores: Float32Array;
  constructor(vocab: number) {
    this.lower = new Float32Array(vocab);
    this.upper = new Float32Array(vocab);
    this.scores = new Float32Array(vocab);
  }
}

export function boundedArgmax(
  logits: BoundedLogits,
  row: number,
  ids: readonly number[],
  processors: readonly LogitsProcessor[],
  scratch: BoundsScratch,
): number {
  const { lower, upper, scores } = scratch;
  const vocab = lower.length;
  const touched = [...new Set(processors.flatMap((p) => p.touches(ids)))].filter((j) => j >= 0 && j < vocab).sort((a, b) => a - b);
  // The touched tokens' bounds, processed: only their entries of lower and upper are read or written.
  const b = logits.bounds(row, touched);
  touched.forEach((j, i) => {
    lower[j] = b.lower[i] as number;
    upper[j] = b.upper[i] as number;
  });
  for (const p of processors) {
    p(ids, lower);
    p(ids, upper);
  }
  let threshold = logits.maxLower(row, touched);
  for (const j of touched) if ((lower[j] as number) > threshold) threshold = lower[j] as number;
  const candidates = merge(
    logits.reaching(row, threshold, touched),
    touched.filter((j) => !((upper[j] as number) < threshold)),
  );
  const exact = logits.exact(row, candidates);
  candidates.forEach((j, i) => (scores[j] = exact[i] as number));
  // A touched token that is no candidate gets a stale score here; it is never compared. A token whose
  // exact logit is NaN has no finite bound, so it is a candidate: argmax's first-NaN rule still holds.
  for (const p of processors) p(ids, scores);
  return argmax(scores, candidates);
}

/** Two ascending lists of distinct tokens, merged ascending. */
function merge(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  for (const x of a) {
    for (; i < b.length && (b[i] as number) < x; i++) out.push(b[i] as number);
    out.push(x);
  }
  for (; i < b.length; i++) out.push(b[i] as number);
  return out;
}
