/**
 * Beam search and beam sampling as transformers 4.37 runs them (`generation/utils.py` `beam_search` /
 * `beam_sample`, `generation/beam_search.py` `BeamSearchScorer` and `BeamHypotheses`):
 * - scores are log-probabilities: log_softmax of the logits, then the processors (and, when sampling, the
 *   warpers), then each beam's running score is added;
 * - per input, the best (or, sampling, drawn) `max(2, 1 + #eos) × beams` candidates over beams × vocab are
 *   walked in order: an eos among the first `beams` of them closes a hypothesis, the first `beams` others
 *   continue;
 * - a hypothesis scores sum / generatedLength ** lengthPenalty, generatedLength counting the eos;
 * - an input is done per `early_stopping`; at the end, open beams join the hypotheses and the best are returned.
 */

import type { EarlyStopping, GenerationConfig } from './config.js';
import {
  applyAll,
  buildLogitsProcessors,
  buildLogitsWarpers,
  logSoftmaxInPlace,
  softmax,
} from './logits-processors.js';
import { sampleIndex, type Random } from './random.js';
import type { GenerateOptions, GeneratedSequence, GenerationResult } from './search.js';
import type { EncoderBatch, Seq2SeqModel } from './seq2seq.js';

interface Hypothesis {
  readonly score: number;
  /** Generated tokens, without the closing eos (finalize appends the first eos id, as transformers does). */
  readonly tokens: readonly number[];
  readonly stepScores: readonly Float32Array[] | undefined;
  readonly endsWithEos: boolean;
}

/** The finished hypotheses of one input: at most `numBeams`, with the worst score tracked for pruning. */
export class BeamHypotheses {
  readonly beams: Hypothesis[] = [];
  worstScore = 1e9;

  constructor(
    private readonly numBeams: number,
    private readonly lengthPenalty: number,
    private readonly earlyStopping: EarlyStopping,
    private readonly maxNewTokens: number,
  ) {}

  add(hyp: Omit<Hypothesis, 'score'>, sumLogprobs: number, generatedLength: number): void {
    const score = sumLogprobs / generatedLength ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.worstScore) {
      this.beams.push({ ...hyp, score });
      if (this.beams.length > this.numBeams) {
        // Lowest score goes; among equals the oldest (Python sorts (score, index) pairs).
        const order = this.beams.map((b, i) => [b.score, i] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
        this.beams.splice(order[0]![1], 1);
        this.worstScore = order[1]![0];
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  /**
   * Whether no open beam can still beat the worst kept hypothesis. `curLen` counts the decoder start token and
   * the token being chosen, as transformers' `cur_len` in `process` does.
   */
  isDone(bestSumLogprobs: number, curLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping === true) return true;
    // `false` is a heuristic on the current length; "never" bounds the score by the longest possible one.
    const length = this.earlyStopping === 'never' && this.lengthPenalty > 0 ? this.maxNewTokens : curLen - 1;
    return this.worstScore >= bestSumLogprobs / length ** this.lengthPenalty;
  }

  /** Best first; equal scores put the later-added first (Python's stable sort, popped from the end). */
  ranked(): Hypothesis[] {
    return this.beams
      .map((h, i) => [h, i] as const)
      .sort((x, y) => y[0].score - x[0].score || y[1] - x[1])
      .map(([h]) => h);
  }
}

interface Candidate {
  readonly score: number;
  /** beam × vocab + token. */
  readonly index: number;
}

/** torch.topk(sorted=True) over one input's beams × vocab; equal scores keep the lower index first. */
export function topCandidates(scores: Float32Array, k: number): Candidate[] {
  const best: Candidate[] = [];
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    if (Number.isNaN(s) || (best.length === k && s <= best[k - 1]!.score)) continue;
    if (best.length === k) best.pop();
    let pos = best.length;
    while (pos > 0 && best[pos - 1]!.score < s) pos--;
    best.splice(pos, 0, { score: s, index: i });
  }
  return best;
}

/**
 * torch.multinomial(softmax(scores), k) without replacement, then sorted by score. Where torch would refuse
 * (fewer than k tokens with non-zero probability), the remaining picks are the best-scoring unpicked tokens.
 */
export function sampledCandidates(scores: Float32Array, k: number, random: Random): Candidate[] {
  const weights = softmax(scores);
  const picked = new Uint8Array(scores.length);
  const out: Candidate[] = [];
  for (let n = 0; n < k; n++) {
    let i = sampleIndex(weights, random);
    if (i < 0) {
      i = -1;
      for (let j = 0; j < scores.length; j++) if (!picked[j] && (i < 0 || scores[j]! > scores[i]!)) i = j;
    }
    picked[i] = 1;
    weights[i] = 0;
    out.push({ score: scores[i]!, index: i });
  }
  return out.sort((a, b) => b.score - a.score);
}

export async function beamSearch(
  model: Seq2SeqModel,
  batch: EncoderBatch,
  config: GenerationConfig,
  options: GenerateOptions,
  random: (stream: number) => Random,
): Promise<GenerationResult[]> {
  const beams = config.numBeams;
  const inputs = batch.batch;
  const rows = inputs * beams;
  const vocab = model.vocabSize;
  const eos = config.eosTokenIds;
  const processors = buildLogitsProcessors(config);
  const warpers = buildLogitsWarpers(config);
  // Each input draws from its own stream, so its result does not depend on the rest of the batch.
  const randoms = config.doSample ? Array.from({ length: inputs }, () => random(0)) : [];
  const k = Math.min(Math.max(2, 1 + eos.length) * beams, beams * vocab);
  const hyps = Array.from(
    { length: inputs },
    () => new BeamHypotheses(beams, config.lengthPenalty, config.earlyStopping, config.maxNewTokens),
  );
  const done = new Array<boolean>(inputs).fill(false);
  let histories = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  let paths = options.outputScores ? Array.from({ length: rows }, (): Float32Array[] => []) : undefined;
  // Only the first beam is live at the start: the others would duplicate it.
  let beamScores = new Float32Array(rows).map((_, r) => (r % beams === 0 ? 0 : -1e9));
  let tokens = new Int32Array(rows).fill(config.decoderStartTokenId);
  const combined = new Float32Array(beams * vocab);

  let state = model.start(batch, beams);
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      const next = model.step(state, tokens);
      state = next.state;
      const curLen = histories[0]!.length + 1;
      const nextScores = new Float32Array(rows);
      const nextTokens = new Int32Array(rows);
      const sources = new Int32Array(rows);
      const processed = new Array<Float32Array | undefined>(rows);
      for (let b = 0; b < inputs; b++) {
        const first = b * beams;
        if (done[b]) {
          // A finished input keeps its rows busy with pad tokens until the batch ends.
          for (let j = 0; j < beams; j++) {
            nextTokens[first + j] = config.padTokenId;
            sources[first + j] = first + j;
          }
          continue;
        }
        for (let j = 0; j < beams; j++) {
          const r = first + j;
          const scores = next.logits.subarray(r * vocab, (r + 1) * vocab);
          logSoftmaxInPlace(scores);
          applyAll(processors, histories[r]!, scores);
          applyAll(warpers, histories[r]!, scores);
          if (paths !== undefined) processed[r] = scores.slice();
          const running = beamScores[r]!;
          // Stored as float32, like torch's addition of the two float32 tensors.
          for (let v = 0; v < vocab; v++) combined[j * vocab + v] = scores[v]! + running;
        }
        const candidates = config.doSample
          ? sampledCandidates(combined, k, randoms[b]!)
          : topCandidates(combined, k);
        let filled = 0;
        for (let rank = 0; rank < candidates.length && filled < beams; rank++) {
          const { score, index } = candidates[rank]!;
          const r = first + Math.floor(index / vocab);
          const token = index % vocab;
          if (eos.includes(token)) {
            if (rank >= beams) continue;
            const stepScores = paths === undefined ? undefined : [...paths[r]!, processed[r]!];
            hyps[b]!.add({ tokens: histories[r]!.slice(1), stepScores, endsWithEos: true }, score, curLen - 1);
          } else {
            nextScores[first + filled] = score;
            nextTokens[first + filled] = token;
            sources[first + filled] = r;
            filled++;
          }
        }
        if (filled < beams) {
          throw new Error(`beam search: fewer than ${beams} candidates are not an eos token`);
        }
        done[b] = hyps[b]!.isDone(candidates[0]!.score, curLen);
      }

      const previous = histories;
      histories = Array.from(sources, (src, r) => [...previous[src]!, nextTokens[r]!]);
      if (paths !== undefined) {
        const before = paths;
        paths = Array.from(sources, (src) => {
          const step = processed[src];
          return step === undefined ? before[src]! : [...before[src]!, step];
        });
      }
      beamScores = nextScores;
      tokens = nextTokens;
      if (!sources.every((src, r) => src === r)) state = model.reorder(state, sources);
      if (done.every(Boolean) || curLen >= config.maxNewTokens + 1) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    state.dispose();
  }

  return hyps.map((found, b) => {
    if (!done[b]) {
      for (let j = 0; j < beams; j++) {
        const r = b * beams + j;
        const hyp = { tokens: histories[r]!.slice(1), stepScores: paths?.[r], endsWithEos: false };
        found.add(hyp, beamScores[r]!, histories[r]!.length - 1);
      }
    }
    const sequences = found
      .ranked()
      .slice(0, config.numReturnSequences)
      .map(
        (h): GeneratedSequence => ({
          tokens: h.endsWithEos ? [...h.tokens, eos[0]!] : h.tokens,
          score: Math.fround(h.score),
          ...(h.stepScores === undefined ? {} : { stepScores: h.stepScores }),
          finishedByLength: !h.endsWithEos,
        }),
      );
    return { sequences };
  });
}
