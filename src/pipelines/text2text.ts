/**
 * Text-to-text generation (transformers' text2text-generation pipeline): a T5-family model directory →
 * tokenizer + model on the chosen backend; texts in, generated texts out, batched with padding.
 */
import { initBackend, type BackendChoice, type BackendInfo } from '../backend/index.js';
import { checkMemoryBudget } from '../backend/budget.js';
import { tuneJitForDecoding } from '../backend/jit.js';
import { UnsupportedError } from '../errors.js';
import { openCheckpoint } from '../formats/checkpoint.js';
import {
  generate,
  resolveGenerationConfig,
  streamTokens,
  TextStreamer,
  type EncoderBatch,
  type GenerationConfig,
  type GenerationOptions,
} from '../generation/index.js';
import type { Log } from '../log.js';
import { parseT5Config } from '../models/t5/config.js';
import { loadT5, prefaultT5, t5WeightBytes, type T5Model } from '../models/t5/model.js';
import { loadTokenizer } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { openModelDir, type ModelDir } from './model-dir.js';

export interface LoadOptions {
  backend: BackendChoice;
  log: Log;
  cacheDir?: string | undefined;
}

export interface GeneratedText {
  text: string;
  /** Generated ids after the decoder start token, eos included when produced, no padding. */
  tokenIds: number[];
  /** Beam search: the length-penalised log-probability (transformers' sequences_scores). */
  score?: number;
  /** Stopped at max_new_tokens rather than at an end-of-sequence token. */
  stoppedAtLimit: boolean;
}

/** Pads encodings to one [batch, seqLen] block on the right, as transformers' tokenizer(padding=True) does. */
export function padBatch(rows: readonly (readonly number[])[], padId: number): EncoderBatch {
  const seqLen = Math.max(1, ...rows.map((r) => r.length));
  const inputIds = new Int32Array(rows.length * seqLen).fill(padId);
  const attentionMask = new Int32Array(rows.length * seqLen);
  rows.forEach((row, b) => {
    inputIds.set(row, b * seqLen);
    attentionMask.fill(1, b * seqLen, b * seqLen + row.length);
  });
  return { inputIds, attentionMask, batch: rows.length, seqLen };
}

/** The effective generation settings of a model directory: its files' defaults, then the user's options. */
export function generationConfigOf(modelDir: ModelDir, options: GenerationOptions): GenerationConfig {
  return resolveGenerationConfig({ generationConfig: modelDir.generationConfig, modelConfig: modelDir.config }, options);
}

export class Text2TextPipeline {
  private constructor(
    readonly modelDir: ModelDir,
    readonly tokenizer: Tokenizer,
    readonly model: T5Model,
    readonly backend: BackendInfo,
  ) {}

  /** Loads from a spec (`-m`) or an already opened directory (to check options before paying for weights). */
  static async load(source: string | ModelDir, options: LoadOptions): Promise<Text2TextPipeline> {
    const { log } = options;
    const t0 = performance.now();
    const modelDir = typeof source === 'string' ? await openModelDir(source, { cacheDir: options.cacheDir }) : source;
    const spec = modelDir.spec;
    if (modelDir.family !== 't5') {
      throw new UnsupportedError(`${spec} is a ${modelDir.family} model; generate runs text-to-text (seq2seq) models`, {
        hint: 'supported architectures: T5, FLAN-T5, FLAN-UL2 (model_type t5); use fill-mask for FlauBERT',
      });
    }
    const config = parseT5Config(modelDir.config);
    tuneJitForDecoding();
    const backend = await initBackend(options.backend, log);
    checkMemoryBudget(backend.name, t5WeightBytes(config), spec);
    // wasm: heap pages fault in on libuv's threads while this one builds the tokenizer, until it is built
    // (no tfjs op may run meanwhile; see prefaultHeap).
    const loading = loadTokenizer(modelDir.dir, { onNotice: (m) => log.notice(m) });
    const heap = prefaultT5(config, loading);
    let tokenizer: Tokenizer;
    try {
      tokenizer = await loading;
    } finally {
      await heap;
    }
    const { reader } = await openCheckpoint(modelDir.dir);
    let model: T5Model;
    try {
      model = await loadT5(reader, config, { prefault: false });
    } finally {
      await reader.close();
    }
    log.verbose(
      `loaded ${spec} in ${(performance.now() - t0).toFixed(0)} ms (warm-up ${model.warmUpMs?.toFixed(0) ?? '-'} ms, ${(model.weightBytes / 2 ** 20).toFixed(0)} MiB of weights)`,
    );
    return new Text2TextPipeline(modelDir, tokenizer, model, backend);
  }

  /** The effective generation settings: generation_config.json / config.json defaults, then the user's options. */
  generationConfig(options: GenerationOptions): GenerationConfig {
    return generationConfigOf(this.modelDir, options);
  }

  private encode(texts: readonly string[]): EncoderBatch {
    return padBatch(texts.map((t) => this.tokenizer.encode(t).ids), this.model.padTokenId);
  }

  private decode(ids: readonly number[]): string {
    // Ids past the tokenizer (config.vocab_size > len(tokenizer), as in FLAN-T5) have no text; transformers raises.
    return this.tokenizer.decode(ids.filter((id) => id < this.tokenizer.size), { skipSpecialTokens: true });
  }

  /** Generates for a batch of texts; one entry per text (its returned sequences), in order. */
  async run(texts: readonly string[], config: GenerationConfig): Promise<GeneratedText[][]> {
    const results = await generate(this.model, this.encode(texts), config);
    return results.map((r) =>
      r.sequences.map((s) => ({
        text: this.decode(s.tokens),
        tokenIds: [...s.tokens],
        ...(s.score === undefined ? {} : { score: s.score }),
        stoppedAtLimit: s.finishedByLength,
      })),
    );
  }

  /** Streams one text's generation as text deltas (TextStreamer rule), then returns the full result. */
  async *stream(text: string, config: GenerationConfig): AsyncGenerator<string, GeneratedText> {
    const streamer = new TextStreamer((ids) => this.decode(ids));
    const tokens = streamTokens(this.model, this.encode([text]), config);
    let next = await tokens.next();
    while (!next.done) {
      const delta = streamer.put([next.value]);
      if (delta) yield delta;
      next = await tokens.next();
    }
    const rest = streamer.end();
    if (rest) yield rest;
    const [s] = next.value.sequences;
    if (!s) throw new Error('generation returned no sequence');
    return { text: this.decode(s.tokens), tokenIds: [...s.tokens], stoppedAtLimit: s.finishedByLength };
  }

  dispose(): void {
    this.model.dispose();
  }
}
