/**
 * Fill-mask, as transformers 4.37's FillMaskPipeline computes it (pipelines/fill_mask.py): texts with the
 * model's mask token → per mask, the top-k tokens with their softmax probability, the token decoded alone
 * and the text decoded with the token in place. Batched with right padding; the LM head runs on the mask
 * rows only.
 *
 * T5-family models have no mask token: SpanFillPipeline fills `<extra_id_N>` spans by generation instead
 * (span corruption, the T5 pre-training task): the output is `<extra_id_0> span0 <extra_id_1> span1 …`; for a
 * single gap, an output without any sentinel (FLAN-T5 often answers so) is taken as the span.
 */
import { initBackend, type BackendInfo } from '../backend/index.js';
import { checkMemoryBudget } from '../backend/budget.js';
import { UnsupportedError, UsageError } from '../errors.js';
import { openCheckpoint } from '../formats/checkpoint.js';
import type { GenerationConfig, GenerationOptions } from '../generation/index.js';
import { flaubertWeightBytes, parseFlaubertConfig } from '../models/flaubert/config.js';
import { flaubertBatch, loadFlaubert, type FlaubertModel } from '../models/flaubert/model.js';
import { loadTokenizer } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { openModelDir, type ModelDir } from './model-dir.js';
import { Text2TextPipeline, type LoadOptions } from './text2text.js';

/** What users may type for "the mask", whatever the model's own mask token is. */
export const MASK_ALIAS = '<mask>';

export interface FillMaskPrediction {
  /** Token id. */
  readonly token: number;
  /** `decode([token])`. */
  readonly tokenStr: string;
  /** Softmax probability over the vocabulary (or over the targets' logits' full softmax, as transformers). */
  readonly score: number;
  /** The input with this token at the mask, decoded (special tokens kept when the text has several masks). */
  readonly sequence: string;
}

export interface FillMaskResult {
  /** One ranking per mask, in text order, best first. */
  readonly masks: FillMaskPrediction[][];
}

export interface FillMaskOptions {
  /** Predictions per mask (default 5; capped at the number of candidates). */
  topK?: number;
  /** Score only these ids (from `targetIds()`), as the pipeline's `targets`. */
  targets?: readonly number[];
}

export interface FillMaskLoadOptions extends LoadOptions {
  /** FlauBERT: force lower-casing (transformers' `do_lowercase`); see tokenizers/flaubert.ts. */
  doLowercase?: boolean | undefined;
}

/** The k best candidates (indices into `candidates`, or ids when absent) of a probability row, best first. */
function topCandidates(probs: Float64Array, k: number, candidates?: readonly number[]): { id: number; p: number }[] {
  const best: { id: number; p: number }[] = [];
  const consider = (id: number): void => {
    const p = probs[id] as number;
    if (best.length === k && p <= (best[k - 1] as { p: number }).p) return;
    let i = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push({ id, p });
    // Strictly greater moves up: among equal scores the first candidate stays first.
    while (i > 0 && p > (best[i - 1] as { p: number }).p) {
      best[i] = best[i - 1] as { id: number; p: number };
      i--;
    }
    best[i] = { id, p };
  };
  if (candidates) for (const id of candidates) consider(id);
  else for (let id = 0; id < probs.length; id++) consider(id);
  return best;
}

/** Softmax of one logits row in double precision (torch computes it in float32; the difference is < 1e-7). */
function softmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  const out = new Float64Array(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += out[i] = Math.exp((row[i] as number) - max);
  for (let i = 0; i < row.length; i++) (out[i] as number) /= sum;
  return out;
}

export class FillMaskPipeline {
  readonly maskToken: string;
  readonly maskTokenId: number;

  private constructor(
    readonly tokenizer: Tokenizer,
    readonly model: FlaubertModel,
    readonly backend: BackendInfo | undefined,
    readonly modelDir: ModelDir | undefined,
  ) {
    const mask = tokenizer.maskToken;
    const id = tokenizer.special.mask;
    if (mask === undefined || id === undefined) {
      throw new UnsupportedError('this tokenizer defines no mask token, so there is nothing to fill', {
        hint: 'fill-mask needs a masked language model such as FlauBERT (mask token <special1>)',
      });
    }
    if (!model.hasLmHead) {
      throw new UnsupportedError('this checkpoint has no language-model head (pred_layer.*): it cannot predict tokens', {
        hint: 'use a FlaubertWithLMHeadModel checkpoint, such as flaubert/flaubert_base_cased',
      });
    }
    this.maskToken = mask;
    this.maskTokenId = id;
  }

  /** A pipeline over an already loaded tokenizer and model (library use, benchmarks). */
  static fromParts(tokenizer: Tokenizer, model: FlaubertModel): FillMaskPipeline {
    return new FillMaskPipeline(tokenizer, model, undefined, undefined);
  }

  static async load(spec: string, options: FillMaskLoadOptions): Promise<FillMaskPipeline> {
    const { log } = options;
    const t0 = performance.now();
    const modelDir = await openModelDir(spec, { cacheDir: options.cacheDir });
    if (modelDir.family !== 'flaubert') {
      throw new UnsupportedError(`${spec} is a ${modelDir.family} model, which has no mask token`, {
        hint: 'token fill-mask runs FlauBERT models; T5 models fill <extra_id_N> spans (SpanFillPipeline)',
      });
    }
    const config = parseFlaubertConfig(modelDir.config);
    const tokenizer = await loadTokenizer(modelDir.dir, {
      doLowercase: options.doLowercase,
      onNotice: (m) => log.notice(`${m}; pass --lowercase to lower-case`),
    });
    if (tokenizer.maskToken === undefined) {
      throw new UnsupportedError(`${spec}: the tokenizer defines no mask token`, {
        hint: 'set "mask_token" in tokenizer_config.json (FlauBERT: <special1>)',
      });
    }
    const backend = await initBackend(options.backend, log);
    checkMemoryBudget(backend.name, flaubertWeightBytes(config), spec);
    const { reader } = await openCheckpoint(modelDir.dir);
    let model: FlaubertModel;
    try {
      model = await loadFlaubert(reader, config);
    } finally {
      await reader.close();
    }
    try {
      const pipeline = new FillMaskPipeline(tokenizer, model, backend, modelDir);
      log.verbose(
        `loaded ${spec} in ${(performance.now() - t0).toFixed(0)} ms (warm-up ${model.warmUpMs?.toFixed(0) ?? '-'} ms, ${(model.weightBytes / 2 ** 20).toFixed(0)} MiB of weights)`,
      );
      return pipeline;
    } catch (err) {
      model.dispose();
      throw err;
    }
  }

  /** The text with every `<mask>` written as the model's mask token. */
  prepare(text: string): string {
    return text.includes(MASK_ALIAS) ? text.replaceAll(MASK_ALIAS, this.maskToken) : text;
  }

  /**
   * FillMaskPipeline.get_target_ids: a target that is a vocabulary entry is that id; otherwise its first
   * token (with a warning, as transformers logs one); a target without tokens is dropped (warning). Ids are
   * deduplicated. Throws when nothing is left.
   */
  targetIds(targets: readonly string[]): { ids: number[]; warnings: string[] } {
    const ids = new Set<number>();
    const warnings: string[] = [];
    for (const target of targets) {
      let id = this.tokenizer.tokenToId(target);
      if (id === undefined) {
        const first = this.tokenizer.encode(target, { addSpecialTokens: false }).ids[0];
        if (first === undefined) {
          warnings.push(`the target '${target}' does not exist in the model vocabulary and has no tokens; ignoring it`);
          continue;
        }
        id = first;
        warnings.push(
          `the target '${target}' does not exist in the model vocabulary; replacing it with '${this.tokenizer.idToToken(id) ?? String(id)}'`,
        );
      }
      ids.add(id);
    }
    if (ids.size === 0) throw new UsageError('none of the --targets can be scored', { hint: 'give at least one word of the vocabulary' });
    return { ids: [...ids].sort((a, b) => a - b), warnings };
  }

  /** Ids of one text, checked to contain the mask. */
  encode(text: string): number[] {
    const { ids } = this.tokenizer.encode(this.prepare(text));
    const limit = this.model.config.maxPositionEmbeddings;
    if (ids.length > limit) {
      // transformers fails inside the position embedding; say it before a batch is built around it.
      throw new UsageError(`the text has ${ids.length} tokens, more than the model's ${limit} positions`, {
        hint: 'shorten the text around the mask',
      });
    }
    if (!ids.includes(this.maskTokenId)) {
      throw new UsageError(`no mask token in ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)}`, {
        hint: `write ${this.maskToken} (or ${MASK_ALIAS}) where the word to predict goes`,
      });
    }
    return ids;
  }

  /** Fills every mask of every text: one forward for the batch, one result per text. */
  run(texts: readonly string[], options: FillMaskOptions = {}): FillMaskResult[] {
    if (texts.length === 0) return [];
    const rows = texts.map((t) => this.encode(t));
    return this.runIds(rows, options);
  }

  /** `run` on token ids (rows framed as the tokenizer frames them, each with at least one mask). */
  runIds(rows: readonly (readonly number[])[], options: FillMaskOptions = {}): FillMaskResult[] {
    const topK = options.topK ?? 5;
    if (!Number.isInteger(topK) || topK < 1) throw new UsageError(`top-k must be a positive integer (got ${topK})`);
    const batch = flaubertBatch(rows, this.tokenizer.special.pad);
    const positions: number[] = [];
    const owners: { row: number; at: number }[] = [];
    rows.forEach((ids, row) => {
      ids.forEach((id, at) => {
        if (id === this.maskTokenId) {
          positions.push(row * batch.seqLen + at);
          owners.push({ row, at });
        }
      });
      if (!ids.includes(this.maskTokenId)) throw new UsageError(`input ${row} has no mask token ${this.maskToken}`);
    });
    const V = this.model.vocabSize;
    const logits = this.model.logitsAt(batch, positions); // [masks, vocab]
    const results: FillMaskResult[] = rows.map(() => ({ masks: [] }));
    const counts = rows.map((ids) => ids.filter((id) => id === this.maskTokenId).length);
    owners.forEach(({ row, at }, m) => {
      const probs = softmax(logits.subarray(m * V, (m + 1) * V));
      const k = Math.min(topK, options.targets ? options.targets.length : V);
      const ids = rows[row] as readonly number[];
      const single = counts[row] === 1;
      const ranking = topCandidates(probs, k, options.targets).map(({ id, p }) => ({
        token: id,
        tokenStr: this.tokenizer.decode([id]),
        // The value torch returns is a float32.
        score: Math.fround(p),
        sequence: this.sequence(ids, at, id, single),
      }));
      (results[row] as { masks: FillMaskPrediction[][] }).masks.push(ranking);
    });
    return results;
  }

  /**
   * FillMaskPipeline.postprocess: the ids with `id` at the mask, padding filtered out, decoded with
   * skip_special_tokens only for a single mask ("the other [MASK] would be removed otherwise").
   */
  private sequence(ids: readonly number[], at: number, id: number, single: boolean): string {
    const pad = this.tokenizer.special.pad;
    const filled = ids.map((v, i) => (i === at ? id : v)).filter((v) => v !== pad);
    return this.tokenizer.decode(filled, { skipSpecialTokens: single });
  }

  dispose(): void {
    this.model.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// T5: spans by generation

const SENTINEL = /<extra_id_(\d+)>/g;

export interface SpanFillResult {
  /** The input with each `<mask>` turned into the next free `<extra_id_N>`. */
  readonly prompt: string;
  /** The input with every sentinel replaced by its generated span. */
  readonly filled: string;
  /** Generated text per sentinel of the input, in input order. */
  readonly spans: { sentinel: string; text: string }[];
  /** Sentinels of the input the model produced no span for (filled with nothing). */
  readonly missing: string[];
  /** Generated ids after the decoder start token. */
  readonly tokenIds: number[];
}

/** `<mask>` → `<extra_id_k>`, numbering after the sentinels the text already has. */
export function toSentinels(text: string): string {
  const used = new Set([...text.matchAll(SENTINEL)].map((m) => Number(m[1])));
  let next = 0;
  return text.replaceAll(MASK_ALIAS, () => {
    while (used.has(next)) next++;
    used.add(next);
    return `<extra_id_${next}>`;
  });
}

/**
 * Reads a span-corruption output: after sentinel N, the ids up to the next sentinel (or end of sequence) are
 * span N. Returns span ids by sentinel number.
 */
export function parseSpans(ids: readonly number[], sentinelOf: (id: number) => number | undefined, eos: readonly number[]): Map<number, number[]> {
  const spans = new Map<number, number[]>();
  let current: number[] | undefined;
  for (const id of ids) {
    if (eos.includes(id)) break;
    const n = sentinelOf(id);
    if (n !== undefined) {
      current = spans.get(n) ?? [];
      spans.set(n, current);
    } else {
      current?.push(id);
    }
  }
  return spans;
}

export class SpanFillPipeline {
  private constructor(readonly text2text: Text2TextPipeline) {}

  static async load(spec: string, options: LoadOptions): Promise<SpanFillPipeline> {
    return new SpanFillPipeline(await Text2TextPipeline.load(spec, options));
  }

  get tokenizer(): Tokenizer {
    return this.text2text.tokenizer;
  }

  generationConfig(options: GenerationOptions): GenerationConfig {
    return this.text2text.generationConfig(options);
  }

  /** The prompt for a text, checked to hold at least one sentinel the tokenizer knows. */
  prompt(text: string): string {
    const prompt = toSentinels(text);
    const sentinels = [...prompt.matchAll(SENTINEL)];
    if (sentinels.length === 0) {
      throw new UsageError(`no mask in ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)}`, {
        hint: `T5 models fill spans: write ${MASK_ALIAS} or <extra_id_0>, <extra_id_1>, … where text is missing`,
      });
    }
    for (const m of sentinels) {
      if (this.tokenizer.tokenToId(m[0]) === undefined) {
        throw new UsageError(`${m[0]} is not a sentinel of this tokenizer`, { hint: 'use fewer masks' });
      }
    }
    return prompt;
  }

  async run(texts: readonly string[], config: GenerationConfig): Promise<SpanFillResult[]> {
    const prompts = texts.map((t) => this.prompt(t));
    const generated = await this.text2text.run(prompts, config);
    const tokenizer = this.tokenizer;
    const sentinelOf = (id: number): number | undefined => {
      const m = /^<extra_id_(\d+)>$/.exec(tokenizer.idToToken(id) ?? '');
      return m ? Number(m[1]) : undefined;
    };
    return prompts.map((prompt, i) => {
      const out = generated[i]?.[0];
      const ids = out?.tokenIds ?? [];
      let spans = parseSpans(ids, sentinelOf, config.eosTokenIds);
      const asked = [...prompt.matchAll(SENTINEL)];
      if (spans.size === 0 && asked.length === 1) {
        // Instruction-tuned models (FLAN-T5) often answer a single gap without the sentinel: the whole output is the span.
        const end = ids.findIndex((id) => config.eosTokenIds.includes(id));
        spans = new Map([[Number((asked[0] as RegExpMatchArray)[1]), ids.slice(0, end < 0 ? ids.length : end)]]);
      }
      const decode = (span: number[]): string =>
        tokenizer.decode(span.filter((id) => id < tokenizer.size), { skipSpecialTokens: true }).trim();
      const found: { sentinel: string; text: string }[] = [];
      const missing: string[] = [];
      // An empty span takes the space before its sentinel with it, so no double space is left behind.
      const filled = prompt.replace(/( ?)<extra_id_(\d+)>/g, (_match: string, space: string, n: string) => {
        const sentinel = `<extra_id_${n}>`;
        const span = spans.get(Number(n));
        if (span === undefined) missing.push(sentinel);
        const text = span === undefined ? '' : decode(span);
        found.push({ sentinel, text });
        return text === '' ? '' : space + text;
      });
      return { prompt, filled, spans: found, missing, tokenIds: ids };
    });
  }

  dispose(): void {
    this.text2text.dispose();
  }
}
