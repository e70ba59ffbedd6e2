/**
 * Logits processors and sampling warpers of transformers 4.37 (`generation/logits_process.py`), as stateless
 * functions over one row of scores. Each rewrites `scores` in place and depends only on its arguments; `ids` is
 * the row's decoder input so far, starting with the decoder start token (transformers' `input_ids` of an
 * encoder-decoder model), which is why that token is penalised and n-gram-banned like any other.
 */

import type { GenerationConfig } from './config.js';

/** Rewrites one row of next-token scores in place, given that row's decoder ids so far. */
export type ScoresRewrite = (ids: readonly number[], scores: Float32Array) => void;

/** A sampling warper (temperature, top-k, top-p): may read and rewrite every score. */
export type LogitsWarper = ScoresRewrite;

/**
 * A logits processor (greedy and beam search, and before the warpers when sampling): it reads and rewrites
 * only the scores of the tokens `touches(ids)` lists, each by a non-decreasing function of that score
 * alone. Greedy search relies on both to pick its token from bounds on the logits (bounded-argmax.ts).
 */
export type LogitsProcessor = ScoresRewrite & { readonly touches: (ids: readonly number[]) => readonly number[] };

const processor = (touches: LogitsProcessor['touches'], apply: ScoresRewrite): LogitsProcessor => Object.assign(apply, { touches });

/** `RepetitionPenaltyLogitsProcessor`: shrinks the score of every token already present, whatever its sign. */
export function repetitionPenalty(penalty: number): LogitsProcessor {
  // Each distinct id once: transformers gathers then scatters, so duplicates are penalised a single time.
  const touches = (ids: readonly number[]): number[] => [...new Set(ids)];
  return processor(touches, (ids, scores) => {
    for (const id of touches(ids)) {
      const s = scores[id]!;
      scores[id] = s < 0 ? s * penalty : s / penalty;
    }
  });
}

/** The tokens that would repeat an n-gram of `ids` (transformers' `_calc_banned_ngram_tokens`). */
export function bannedNgramTokens(ids: readonly number[], n: number): number[] {
  const len = ids.length;
  if (len + 1 < n) return [];
  const prefixStart = len - n + 1;
  const banned: number[] = [];
  for (let start = 0; start + n <= len; start++) {
    let match = true;
    for (let k = 0; k < n - 1 && match; k++) match = ids[start + k] === ids[prefixStart + k];
    if (match) banned.push(ids[start + n - 1]!);
  }
  return banned;
}

/** `NoRepeatNGramLogitsProcessor`. */
export function noRepeatNgram(n: number): LogitsProcessor {
  const touches = (ids: readonly number[]): number[] => bannedNgramTokens(ids, n);
  return processor(touches, (ids, scores) => {
    for (const id of touches(ids)) scores[id] = -Infinity;
  });
}

/**
 * `MinNewTokensLengthLogitsProcessor` with the decoder start token as the prompt: end-of-sequence ids are
 * impossible while fewer than `minNewTokens` tokens follow it.
 */
export function minNewTokens(minNew: number, eosTokenIds: readonly number[]): LogitsProcessor {
  const touches = (ids: readonly number[]): readonly number[] => (ids.length - 1 < minNew ? eosTokenIds : []);
  return processor(touches, (ids, scores) => {
    for (const eos of touches(ids)) scores[eos] = -Infinity;
  });
}

/** `TemperatureLogitsWarper`. */
export function temperature(t: number): LogitsWarper {
  return (_ids, scores) => {
    for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! / t;
  };
}

/**
 * `TopKLogitsWarper`: keeps every score >= the k-th largest (torch.topk's k-th value), so ties with it survive
 * and more than k tokens may remain.
 */
export function topK(k: number, minTokensToKeep = 1): LogitsWarper {
  return (_ids, scores) => {
    const keep = Math.min(Math.max(k, minTokensToKeep), scores.length);
    const sorted = Float32Array.from(scores).sort();
    const threshold = sorted[sorted.length - keep]!;
    for (let i = 0; i < scores.length; i++) if (scores[i]! < threshold) scores[i] = -Infinity;
  };
}

/**
 * `TopPLogitsWarper`: sorts ascending, accumulates softmax probabilities and drops the prefix whose mass is
 * <= 1 - p, always keeping the `minTokensToKeep` best. Rounding follows torch, since the cut sits
 * exactly on a comparison:
 * torch accumulates the cumulative sum in double and compares its float32 values with float32(1 - p).
 */
export function topP(p: number, minTokensToKeep = 1): LogitsWarper {
  const cut = Math.fround(1 - p);
  return (_ids, scores) => {
    const n = scores.length;
    // Ascending by score; ties keep index order (torch leaves that order unspecified).
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b);
    const probs = softmax(scores);
    let cumulative = 0;
    for (let rank = 0; rank < n - minTokensToKeep; rank++) {
      const id = order[rank]!;
      cumulative += probs[id]!;
      if (Math.fround(cumulative) > cut) break;
      scores[id] = -Infinity;
    }
  };
}

/** Softmax in double precision, rounded to float32 like the tensor it replaces. -Infinity maps to 0. */
export function softmax(scores: Float32Array): Float32Array {
  let max = -Infinity;
  for (const s of scores) if (s > max) max = s;
  const out = new Float32Array(scores.length);
  if (max === -Infinity) return out.fill(NaN);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp(scores[i]! - max);
  for (let i = 0; i < scores.length; i++) out[i] = Math.exp(scores[i]! - max) / sum;
  return out;
}

/**
 * First index of the maximum, as torch.argmax: a NaN counts as the maximum (the first NaN wins). With
 * `among` (ascending indexes), over those only.
 */
export function argmax(scores: Float32Array, among?: readonly number[]): number {
  const n = among ? among.length : scores.length;
  let best = among ? among[0]! : 0;
  for (let i = 0; i < n; i++) {
    const j = among ? among[i]! : i;
    if (Number.isNaN(scores[j])) return j;
    if (scores[j]! > scores[best]!) best = j;
  }
  return best;
}

/** log_softmax in place (beam search scores log-probabilities, not logits). */
export function logSoftmaxInPlace(scores: Float32Array): void {
  let max = -Infinity;
  for (const s of scores) if (s > max) max = s;
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp(scores[i]! - max);
  const logZ = max + Math.log(sum);
  for (let i = 0; i < scores.length; i++) scores[i] = scores[i]! - logZ;
}

/** The processors transformers' `_get_logits_processor` builds for these settings, in its order. */
export function buildLogitsProcessors(config: GenerationConfig): LogitsProcessor[] {
  const list: LogitsProcessor[] = [];
  if (config.repetitionPenalty !== 1) list.push(repetitionPenalty(config.repetitionPenalty));
  if (config.noRepeatNgramSize > 0) list.push(noRepeatNgram(config.noRepeatNgramSize));
  if (config.minNewTokens > 0 && config.eosTokenIds.length > 0) {
    list.push(minNewTokens(config.minNewTokens, config.eosTokenIds));
  }
  return list;
}

/**
 * The sampling warpers of `_get_logits_warper`, in its order. Beam sampling keeps one more token than there are
 * eos ids, so that a beam can always continue.
 */
export function buildLogitsWarpers(config: GenerationConfig): LogitsWarper[] {
  if (!config.doSample) return [];
  const minKeep = config.numBeams > 1 ? Math.max(config.eosTokenIds.length, 1) + 1 : 1;
  const list: LogitsWarper[] = [];
  if (config.temperature !== 1) list.push(temperature(config.temperature));
  if (config.topK !== 0) list.push(topK(config.topK, minKeep));
  if (config.topP < 1) list.push(topP(config.topP, minKeep));
  return list;
}

export function applyAll(list: readonly ScoresRewrite[], ids: readonly number[], scores: Float32Array): void {
  for (const process of list) process(ids, scores);
}
