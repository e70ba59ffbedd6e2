/**
 * Generation settings, resolved once: `generation_config.json` (or, when a repo has none, the generation
 * fields of `config.json`, as transformers' `GenerationConfig.from_model_config` does), token-id fallbacks from
 * `config.json`, then the user's options on top. Defaults and checks follow transformers 4.37
 * (`generation/configuration_utils.py` `GenerationConfig.__init__`/`validate`, and the checks `generate()` makes);
 * where transformers only warns about a contradiction the user asked for, we refuse it with a UsageError.
 */

import { FormatError, UsageError } from '../errors.js';

export type EarlyStopping = boolean | 'never';

/** What a user may set (CLI flags, library callers). Every field is optional; unset means "from the repo". */
export interface GenerationOptions {
  maxNewTokens?: number;
  minNewTokens?: number;
  numBeams?: number;
  lengthPenalty?: number;
  earlyStopping?: EarlyStopping;
  numReturnSequences?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Seeds the sampler; without it sampling draws a fresh seed per generation. */
  seed?: number;
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
  /** Replaces the repo's end-of-sequence id(s), like `generate(eos_token_id=...)`. */
  eosTokenId?: number | readonly number[];
}

export interface GenerationConfig {
  /** Tokens generated after the decoder start token, at most. */
  readonly maxNewTokens: number;
  /** End-of-sequence ids are suppressed until this many tokens were generated. */
  readonly minNewTokens: number;
  readonly numBeams: number;
  readonly lengthPenalty: number;
  readonly earlyStopping: EarlyStopping;
  readonly numReturnSequences: number;
  readonly doSample: boolean;
  readonly temperature: number;
  /** 0 disables top-k filtering. */
  readonly topK: number;
  /** 1 disables nucleus filtering. */
  readonly topP: number;
  readonly seed: number | undefined;
  readonly repetitionPenalty: number;
  /** 0 disables the n-gram ban. */
  readonly noRepeatNgramSize: number;
  readonly decoderStartTokenId: number;
  /** Empty when the model has no end-of-sequence token: generation then always runs to maxNewTokens. */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number;
  /** Settings that have no effect in the chosen mode (transformers warns about them too). */
  readonly warnings: readonly string[];
}

export interface GenerationConfigSources {
  /** Parsed `generation_config.json`, if the repo has one. */
  generationConfig?: unknown;
  /** Parsed `config.json`. */
  modelConfig?: unknown;
}

/** transformers' defaults; `max_length` 20 counts the decoder start token, hence 19 new tokens. */
const DEFAULT_MAX_LENGTH = 20;
const DEFAULT_TOP_K = 50;

type Json = Readonly<Record<string, unknown>>;

function asObject(value: unknown, what: string): Json {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new FormatError(`${what} is not a JSON object`);
  return value as Json;
}

/** Reads typed fields of one JSON file; `null` counts as absent, as it does for transformers. */
class FieldReader {
  constructor(
    private readonly json: Json,
    private readonly file: string,
  ) {}

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }

  private bad(key: string, expected: string): FormatError {
    return new FormatError(`${this.file}: "${key}" must be ${expected}, got ${JSON.stringify(this.json[key])}`);
  }

  number(key: string): number | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.bad(key, 'a number');
    return v;
  }

  integer(key: string): number | undefined {
    const v = this.number(key);
    if (v !== undefined && !Number.isInteger(v)) throw this.bad(key, 'an integer');
    return v;
  }

  boolean(key: string): boolean | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== 'boolean') throw this.bad(key, 'true or false');
    return v;
  }

  earlyStopping(key: string): EarlyStopping | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    if (typeof v !== 'boolean' && v !== 'never') throw this.bad(key, 'true, false or "never"');
    return v;
  }

  tokenIds(key: string): number[] | undefined {
    if (!this.has(key)) return undefined;
    const v = this.json[key];
    const list = Array.isArray(v) ? (v as unknown[]) : [v];
    if (!list.every((id) => typeof id === 'number' && Number.isInteger(id) && id >= 0)) {
      throw this.bad(key, 'a token id or a list of token ids');
    }
    return list as number[];
  }
}

/**
 * The generation fields a repo can carry; with no generation_config.json they come from config.json. A repo has
 * no seed, and its eos ids are read with the other token ids; max_length and min_length count the decoder start
 * token, so they stay apart from the user's new-token counts.
 */
interface RepoSettings extends Omit<GenerationOptions, 'seed' | 'eosTokenId'> {
  maxLength?: number;
  minLength?: number;
}

function readRepoSettings(r: FieldReader): RepoSettings {
  return {
    maxLength: r.integer('max_length'),
    maxNewTokens: r.integer('max_new_tokens'),
    minLength: r.integer('min_length'),
    minNewTokens: r.integer('min_new_tokens'),
    numBeams: r.integer('num_beams'),
    lengthPenalty: r.number('length_penalty'),
    earlyStopping: r.earlyStopping('early_stopping'),
    numReturnSequences: r.integer('num_return_sequences'),
    doSample: r.boolean('do_sample'),
    temperature: r.number('temperature'),
    topK: r.integer('top_k'),
    topP: r.number('top_p'),
    repetitionPenalty: r.number('repetition_penalty'),
    noRepeatNgramSize: r.integer('no_repeat_ngram_size'),
  };
}

function usage(message: string, hint?: string): UsageError {
  return new UsageError(message, hint === undefined ? {} : { hint });
}

function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw usage(`${name} must be an integer >= ${min}, got ${value}`);
  }
}

/** Checks the user's own values even where the chosen mode ignores them: a bad flag is a mistake either way. */
function checkOptions(o: GenerationOptions): void {
  if (o.maxNewTokens !== undefined) requireInteger('max_new_tokens', o.maxNewTokens, 1);
  if (o.minNewTokens !== undefined) requireInteger('min_new_tokens', o.minNewTokens, 0);
  if (o.numBeams !== undefined) requireInteger('num_beams', o.numBeams, 1);
  if (o.numReturnSequences !== undefined) requireInteger('num_return_sequences', o.numReturnSequences, 1);
  if (o.noRepeatNgramSize !== undefined) requireInteger('no_repeat_ngram_size', o.noRepeatNgramSize, 0);
  if (o.topK !== undefined) requireInteger('top_k', o.topK, 0);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) {
    throw usage(`seed must be a non-negative integer, got ${o.seed}`);
  }
  if (o.lengthPenalty !== undefined && !Number.isFinite(o.lengthPenalty)) {
    throw usage(`length_penalty must be a finite number, got ${o.lengthPenalty}`);
  }
  if (o.earlyStopping !== undefined && typeof o.earlyStopping !== 'boolean' && o.earlyStopping !== 'never') {
    throw usage(`early_stopping must be true, false or "never", got ${String(o.earlyStopping)}`);
  }
  checkTemperature(o.temperature);
  checkTopP(o.topP);
  checkRepetitionPenalty(o.repetitionPenalty);
  if (o.eosTokenId !== undefined) {
    const ids = typeof o.eosTokenId === 'number' ? [o.eosTokenId] : o.eosTokenId;
    if (ids.length === 0 || !ids.every((id) => Number.isInteger(id) && id >= 0)) {
      throw usage(`eos_token_id must be one or more token ids, got ${JSON.stringify(o.eosTokenId)}`);
    }
  }
}

function checkTemperature(t: number | undefined): void {
  if (t !== undefined && !(Number.isFinite(t) && t > 0)) {
    throw usage(
      `temperature must be a number > 0, got ${t}`,
      'for deterministic output, leave sampling off (greedy or beam search) instead of setting temperature 0',
    );
  }
}

function checkTopP(p: number | undefined): void {
  if (p !== undefined && !(p > 0 && p <= 1)) throw usage(`top_p must be in (0, 1], got ${p}`);
}

function checkRepetitionPenalty(p: number | undefined): void {
  if (p !== undefined && !(Number.isFinite(p) && p > 0)) {
    throw usage(`repetition_penalty must be a number > 0 (1 disables it), got ${p}`);
  }
}

/** Merges repo files and user options into one checked, immutable configuration. */
export function resolveGenerationConfig(
  sources: GenerationConfigSources,
  options: GenerationOptions = {},
): GenerationConfig {
  checkOptions(options);
  const model = new FieldReader(asObject(sources.modelConfig, 'config.json'), 'config.json');
  const hasGenerationFile = sources.generationConfig !== undefined && sources.generationConfig !== null;
  const gen = hasGenerationFile
    ? new FieldReader(asObject(sources.generationConfig, 'generation_config.json'), 'generation_config.json')
    : model;
  const repo = readRepoSettings(gen);

  const maxNewTokens = options.maxNewTokens ?? repo.maxNewTokens ?? (repo.maxLength ?? DEFAULT_MAX_LENGTH) - 1;
  if (maxNewTokens < 1) {
    throw usage(
      `max_length ${maxNewTokens + 1} leaves no room to generate after the decoder start token`,
      'set max_new_tokens',
    );
  }
  // transformers runs MinLength (counting the start token) and MinNewTokens side by side; both only suppress eos.
  const minNewTokens = Math.max(options.minNewTokens ?? repo.minNewTokens ?? 0, (repo.minLength ?? 0) - 1);
  const numBeams = options.numBeams ?? repo.numBeams ?? 1;
  const doSample = options.doSample ?? repo.doSample ?? false;
  const numReturnSequences = options.numReturnSequences ?? repo.numReturnSequences ?? 1;
  const temperature = options.temperature ?? repo.temperature ?? 1;
  const topK = options.topK ?? repo.topK ?? DEFAULT_TOP_K;
  const topP = options.topP ?? repo.topP ?? 1;
  const lengthPenalty = options.lengthPenalty ?? repo.lengthPenalty ?? 1;
  const earlyStopping = options.earlyStopping ?? repo.earlyStopping ?? false;
  const repetitionPenalty = options.repetitionPenalty ?? repo.repetitionPenalty ?? 1;
  const noRepeatNgramSize = options.noRepeatNgramSize ?? repo.noRepeatNgramSize ?? 0;

  // Repo values may be odd but harmless when unused; those that take effect must be valid.
  requireInteger('num_beams', numBeams, 1);
  requireInteger('num_return_sequences', numReturnSequences, 1);
  requireInteger('no_repeat_ngram_size', noRepeatNgramSize, 0);
  checkRepetitionPenalty(repetitionPenalty);
  if (doSample) {
    checkTemperature(temperature);
    checkTopP(topP);
    requireInteger('top_k', topK, 0);
  }
  if (minNewTokens > maxNewTokens) {
    throw usage(
      `min_new_tokens (${minNewTokens}) is larger than max_new_tokens (${maxNewTokens})`,
      'raise max_new_tokens or lower min_new_tokens',
    );
  }
  if (numBeams === 1 && !doSample && numReturnSequences > 1) {
    throw usage(
      `greedy search returns one sequence per input, but num_return_sequences is ${numReturnSequences}`,
      'use beam search (num_beams >= num_return_sequences) or sampling',
    );
  }
  if (numBeams > 1 && numReturnSequences > numBeams) {
    throw usage(
      `num_return_sequences (${numReturnSequences}) must not exceed num_beams (${numBeams})`,
      `set num_beams to at least ${numReturnSequences}`,
    );
  }

  const tokenIds = (key: string): number[] | undefined =>
    (hasGenerationFile ? gen.tokenIds(key) : undefined) ?? model.tokenIds(key);
  const single = (key: string): number | undefined => {
    const ids = tokenIds(key);
    if (ids !== undefined && ids.length !== 1) throw new FormatError(`"${key}" must be a single token id`);
    return ids?.[0];
  };
  const eosTokenIds =
    options.eosTokenId === undefined
      ? (tokenIds('eos_token_id') ?? [])
      : typeof options.eosTokenId === 'number'
        ? [options.eosTokenId]
        : [...options.eosTokenId];
  const decoderStartTokenId = single('decoder_start_token_id') ?? single('bos_token_id');
  if (decoderStartTokenId === undefined) {
    throw new FormatError('neither decoder_start_token_id nor bos_token_id is set in the model configuration', {
      hint: 'encoder-decoder generation needs one of them in generation_config.json or config.json',
    });
  }
  // As transformers does: without a pad id, finished rows are filled with the (first) eos id.
  const padTokenId = single('pad_token_id') ?? eosTokenIds[0] ?? decoderStartTokenId;

  return Object.freeze({
    maxNewTokens,
    minNewTokens,
    numBeams,
    lengthPenalty,
    earlyStopping,
    numReturnSequences,
    doSample,
    temperature,
    topK,
    topP,
    seed: options.seed,
    repetitionPenalty,
    noRepeatNgramSize,
    decoderStartTokenId,
    eosTokenIds: Object.freeze(eosTokenIds),
    padTokenId,
    warnings: Object.freeze(ineffectiveSettings(options, { doSample, numBeams })),
  });
}

/** The user's settings that the chosen mode ignores, as transformers' `validate` reports them. */
function ineffectiveSettings(o: GenerationOptions, mode: { doSample: boolean; numBeams: number }): string[] {
  const out: string[] = [];
  if (!mode.doSample) {
    const sampling: [string, number | undefined, number][] = [
      ['temperature', o.temperature, 1],
      ['top_k', o.topK, DEFAULT_TOP_K],
      ['top_p', o.topP, 1],
    ];
    for (const [name, value, neutral] of sampling) {
      if (value !== undefined && value !== neutral) out.push(`${name} is ignored without sampling (do_sample)`);
    }
    if (o.seed !== undefined) out.push('seed is ignored without sampling (do_sample)');
  }
  if (mode.numBeams === 1) {
    if (o.lengthPenalty !== undefined && o.lengthPenalty !== 1) out.push('length_penalty only applies to beam search');
    if (o.earlyStopping !== undefined && o.earlyStopping !== false) {
      out.push('early_stopping only applies to beam search');
    }
  }
  return out;
}
