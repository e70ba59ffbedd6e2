/**
 * `generate()` for every seq2seq model: greedy search and multinomial sampling here, beam search (and beam
 * sampling) in beam.ts. Semantics follow transformers 4.37 `generation/utils.py` (`greedy_search`, `sample`):
 * each row's scores go through the processors (and, when sampling, the warpers), finished rows are fed the pad
 * token until every row is done or `maxNewTokens` tokens were produced.
 */

import { UsageError } from '../errors.js';
import { beamSearch } from './beam.js';
import type { GenerationConfig } from './config.js';
import { boundedArgmax, BoundsScratch } from './bounded-argmax.js';
import { applyAll, argmax, buildLogitsProcessors, buildLogitsWarpers, softmax } from './logits-processors.js';
import { freshSeed, sampleIndex, seededRandom, type Random } from './random.js';
import type { BoundedLogits, EncoderBatch, Seq2SeqModel } from './seq2seq.js';

export interface GeneratedSequence {
  /** Token ids after the decoder start token; ends with an eos id if one was produced; never padded. */
  readonly tokens: readonly number[];
  /** Beam search only: the length-penalised sum of log-probabilities (transformers' `sequences_scores`). */
  readonly score?: number;
  /**
   * With `outputScores`: one row of scores per token of `tokens`, after processors and warpers (transformers'
   * `output.scores` along this sequence; log-probabilities in beam search, logits otherwise).
   */
  readonly stepScores?: readonly Float32Array[];
  /** True when the sequence stopped at `maxNewTokens` without producing an eos id. */
  readonly finishedByLength: boolean;
}

/** The sequences of one input, best first for beam search; `numReturnSequences` of them. */
export interface GenerationResult {
  readonly sequences: readonly GeneratedSequence[];
}

/** One new token of one sequence (greedy search and sampling only: beam tokens are not final when chosen). */
export interface TokenEvent {
  /** Index of the input in the batch. */
  readonly input: number;
  /** Index of the sequence among the input's `numReturnSequences`. */
  readonly sequence: number;
  readonly token: number;
  /** 0 for the first generated token. */
  readonly step: number;
}

export interface GenerateOptions {
  /**
   * Called for every generated token, in order; a returned promise is awaited before the next step. Beam search
   * does not call it: its tokens are only final once the search ends.
   */
  onToken?: (event: TokenEvent) => void | Promise<void>;
  /** Keep each step's processed scores in the results (costs vocabSize floats per token). */
  outputScores?: boolean;
  /** Randomness for sampling, one stream per returned sequence; defaults to `seededRandom(config.seed)`. */
  random?: (stream: number) => Random;
  /** Stops between two decoding steps by throwing the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Generates for every input of `batch`; results are in input order. The model state is disposed before
 * returning, also on error.
 */
export async function generate(
  model: Seq2SeqModel,
  batch: EncoderBatch,
  config: GenerationConfig,
  options: GenerateOptions = {},
): Promise<GenerationResult[]> {
  checkIds(model, config);
  if (config.numBeams > 1) return beamSearch(model, batch, config, options, randomSource(config, options));
  const out: Outcome = {};
  for await (const events of decodeRows(model, batch, config, options, out)) {
    if (options.onToken !== undefined) for (const event of events) await options.onToken(event);
  }
  return out.results!;
}

/**
 * The tokens of a single greedy or sampled sequence as they are produced (then the full result); breaking out
 * of the loop stops generation and frees the model state.
 */
export async function* streamTokens(
  model: Seq2SeqModel,
  batch: EncoderBatch,
  config: GenerationConfig,
  options: Omit<GenerateOptions, 'onToken'> = {},
): AsyncGenerator<number, GenerationResult> {
  if (batch.batch !== 1 || config.numBeams !== 1 || config.numReturnSequences !== 1) {
    throw new UsageError('streaming needs a single input, a single returned sequence and no beam search', {
      hint: 'drop num_beams / num_return_sequences, or generate without streaming',
    });
  }
  checkIds(model, config);
  const out: Outcome = {};
  for await (const events of decodeRows(model, batch, config, options, out)) {
    for (const event of events) yield event.token;
  }
  return out.results![0]!;
}

interface Outcome {
  results?: GenerationResult[];
}

function checkIds(model: Seq2SeqModel, config: GenerationConfig): void {
  for (const id of config.eosTokenIds) {
    if (id >= model.vocabSize) {
      throw new UsageError(`eos_token_id ${id} is outside the model's vocabulary (size ${model.vocabSize})`);
    }
  }
}

/** Default randomness: the config's seed, or a fresh one, one independent stream per returned sequence. */
function randomSource(config: GenerationConfig, options: GenerateOptions): (stream: number) => Random {
  if (options.random !== undefined) return options.random;
  const seed = config.seed ?? freshSeed();
  return (stream) => seededRandom(seed, stream);
}

/** Lets timers and signal handlers run between steps (the model computes synchronously). */
function nextTick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Greedy search or sampling over `batch × expand` rows; yields the tokens of each step. */
async function* decodeRows(
  model: Seq2SeqModel,
  batch: EncoderBatch,
  config: GenerationConfig,
  options: GenerateOptions,
  out: Outcome,
): AsyncGenerator<TokenEvent[], void> {
  const expand = config.doSample ? config.numReturnSequences : 1;
  const rows = batch.batch * expand;
  const vocab = model.vocabSize;
  const processors = buildLogitsProcessors(config);
  const warpers = buildLogitsWarpers(config);
  const makeRandom = config.doSample ? randomSource(config, options) : undefined;
  const randoms = Array.from({ length: rows }, (_, r) => makeRandom?.(r % expand));
  const histories = Array.from({ length: rows }, () => [config.decoderStartTokenId]);
  const stepScores = options.outputScores ? Array.from({ length: rows }, (): Float32Array[] => []) : undefined;
  const ended = new Uint8Array(rows);
  // Greedy search needs only the argmax, which bounds on the logits mostly settle (bounded-argmax.ts).
  const scratch = !config.doSample && stepScores === undefined ? new BoundsScratch(vocab) : undefined;
  // A fresh array per step: a backend may keep the one it was given until the step's tensors are gone.
  let tokens = new Int32Array(rows).fill(config.decoderStartTokenId);

  let state = model.start(batch, expand);
  try {
    for (let step = 0; step < config.maxNewTokens; step++) {
      options.signal?.throwIfAborted();
      let bounded: BoundedLogits | undefined;
      let logits: Float32Array | undefined;
      const screened = scratch ? model.stepBounded?.(state, tokens) : undefined;
      if (screened) {
        state = screened.state;
        bounded = screened.logits;
      } else {
        const next = model.step(state, tokens);
        state = next.state;
        logits = next.logits;
      }
      tokens = new Int32Array(rows);
      const events: TokenEvent[] = [];
      for (let r = 0; r < rows; r++) {
        if (ended[r]) {
          tokens[r] = config.padTokenId;
          continue;
        }
        const ids = histories[r]!;
        let token: number;
        if (bounded && scratch) token = boundedArgmax(bounded, r, ids, processors, scratch);
        else {
          const scores = logits!.subarray(r * vocab, (r + 1) * vocab);
          applyAll(processors, ids, scores);
          applyAll(warpers, ids, scores);
          stepScores?.[r]!.push(scores.slice());
          const random = randoms[r];
          token = random === undefined ? argmax(scores) : sample(scores, random);
        }
        ids.push(token);
        tokens[r] = token;
        if (config.eosTokenIds.includes(token)) ended[r] = 1;
        events.push({ input: Math.floor(r / expand), sequence: r % expand, token, step });
      }
      yield events;
      if (ended.every((e) => e === 1)) break;
      await nextTick();
    }
  } finally {
    state.dispose();
  }

  out.results = Array.from({ length: batch.batch }, (_, input) => ({
    sequences: Array.from({ length: expand }, (_, s): GeneratedSequence => {
      const r = input * expand + s;
      return {
        tokens: histories[r]!.slice(1),
        ...(stepScores === undefined ? {} : { stepScores: stepScores[r]! }),
        finishedByLength: ended[r] === 0,
      };
    }),
  }));
}

function sample(scores: Float32Array, random: Random): number {
  const token = sampleIndex(softmax(scores), random);
  // torch.multinomial refuses such a row too; only contradictory settings can filter out every token.
  if (token < 0) throw new Error('sampling: every token has probability 0 or the scores are not finite');
  return token;
}
