/**
 * FlauBERT tokenizer: transformers 4.37.2 `FlaubertTokenizer` (slow, the only one there is) with
 * sacremoses 0.1.1, reproduced output for output. Pipeline per text segment (shared/docs/tokenizers.md §B.2):
 * preprocess_text (quotes, NFC, optional lower-casing) → moses_pipeline (punctuation) → moses_tokenize (words)
 * → XLM BPE with `</w>` end-of-word markers. Special tokens are cut out of the text first, as
 * `PreTrainedTokenizer.tokenize` does, and `encode` frames the ids as `<s> … </s>`.
 */
import { join } from 'node:path';
import { FormatError } from '../errors.js';
import {
  type AddedToken,
  AddedTokenSplitter,
  initAddedTokens,
  parseAddedToken,
  type SpecialAttribute,
  specialTokenSettings,
  specialTokensInOrder,
} from './added-tokens.js';
import { decodeIds, type DecodeSource, legacyAddedTokens } from './decode.js';
import { isObject, type JsonObject, parseJson, readTokenizerFile } from './json-files.js';
import { normalizePunctuationFr, removeNonPrintingChar, replaceUnicodePunct } from './moses/punct-normalizer.js';
import { mosesTokenizeFr } from './moses/tokenizer.js';
import { pyLower, pyNfc } from './moses/unicode14.js';
import { pySplit, pyStrip } from './python-str.js';
import type { DecodeOptions, EncodeOptions, Encoding, SpecialTokenIds, Tokenizer } from './tokenizer.js';

// ---------------------------------------------------------------------------------------------------------
// Normalisation stages (exported for conformance tests against the golden `normalization_stages`).

/** FLB `preprocess_text`: ``` `` ``` and `''` → `"`, NFC, then `lower()` if `do_lowercase` (accents are kept). */
export function preprocessText(text: string, doLowercase: boolean): string {
  const quoted = text.includes('``') || text.includes("''") ? text.replaceAll('``', '"').replaceAll("''", '"') : text;
  const nfc = pyNfc(quoted);
  return doLowercase ? pyLower(nfc) : nfc;
}

/** FLB `moses_pipeline(text, "fr")`: replace_unicode_punct, MosesPunctNormalizer("fr"), remove_non_printing_char. */
export function mosesPipeline(text: string): string {
  return removeNonPrintingChar(normalizePunctuationFr(replaceUnicodePunct(text)));
}

/** FLB `moses_tokenize(text, "fr")`: MosesTokenizer("fr"), no escaping, no aggressive dash splits. */
export function mosesTokenize(text: string): string[] {
  return mosesTokenizeFr(text);
}

// ---------------------------------------------------------------------------------------------------------
// BPE

const END_OF_WORD = '</w>';
/** Heap keys pack rank · 2^26 + position, exact in a double for up to 2^26 merges and 2^26-symbol words. */
const POS_BITS = 2 ** 26;
/** Bounds memory in long-running processes; transformers' cache grows without limit. */
const MAX_CACHE_ENTRIES = 500_000;

/** Binary min-heap of non-negative integers below 2^53. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): number {
    return this.items[0] as number;
  }

  push(value: number): void {
    const a = this.items;
    let i = a.length;
    a.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((a[parent] as number) <= value) break;
      a[i] = a[parent] as number;
      i = parent;
    }
    a[i] = value;
  }

  pop(): number {
    const a = this.items;
    const top = a[0] as number;
    const last = a.pop() as number;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && (a[r] as number) < (a[l] as number) ? r : l;
        if ((a[c] as number) >= last) break;
        a[i] = a[c] as number;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/**
 * XLM/FlauBERT BPE (FLB `bpe`). The reference repeatedly takes the lowest-ranked adjacent pair and merges all
 * its occurrences left to right. Here the pairs wait in a heap ordered by (rank, position), and all entries of
 * one rank are merged as one round before the pairs those merges create are queued, which gives the same
 * result in O(n log n) instead of O(n²) per word.
 */
export class XlmBpe {
  private readonly cache = new Map<string, readonly string[]>();

  /** `ranks` maps `"first second"` to the merge's line index in merges.txt. */
  constructor(private readonly ranks: ReadonlyMap<string, number>) {}

  /** The pieces of one Moses token, the last one ending in `</w>`. */
  pieces(token: string): readonly string[] {
    const cached = this.cache.get(token);
    if (cached !== undefined) return cached;
    const result = this.merge(token);
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
    this.cache.set(token, result);
    return result;
  }

  /** FLB `bpe(token)` verbatim: the pieces joined with spaces (the golden `normalization_stages.bpe`). */
  joined(token: string): string {
    const word = this.pieces(token).join(' ');
    // Kept from the reference although Moses tokens never contain a newline.
    return word === '\n  </w>' ? '\n</w>' : word;
  }

  private rankOf(first: string, second: string): number | undefined {
    return this.ranks.get(`${first} ${second}`);
  }

  private merge(token: string): string[] {
    const symbols = Array.from(token);
    const n = symbols.length;
    if (n === 0) return [];
    symbols[n - 1] += END_OF_WORD;
    if (n === 1) return symbols;

    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap();
    const queue = (left: number): void => {
      if (left < 0) return;
      const right = next[left] as number;
      if (right < 0) return;
      const rank = this.rankOf(symbols[left] as string, symbols[right] as string);
      if (rank !== undefined) heap.push(rank * POS_BITS + left);
    };
    for (let i = 0; i < n - 1; i++) queue(i);

    const merged: number[] = [];
    while (heap.size > 0) {
      const rank = Math.floor(heap.peek() / POS_BITS);
      merged.length = 0;
      // Entries of one rank come out in increasing position: the reference's left-to-right pass.
      while (heap.size > 0 && Math.floor(heap.peek() / POS_BITS) === rank) {
        const left = heap.pop() % POS_BITS;
        const right = next[left] as number;
        if (alive[left] === 0 || right < 0) continue;
        if (this.rankOf(symbols[left] as string, symbols[right] as string) !== rank) continue;
        symbols[left] = (symbols[left] as string) + (symbols[right] as string);
        alive[right] = 0;
        const after = next[right] as number;
        next[left] = after;
        if (after >= 0) prev[after] = left;
        merged.push(left);
      }
      for (const left of merged) {
        if (alive[left] === 0) continue;
        queue(prev[left] as number);
        queue(left);
      }
    }
    const out: string[] = [];
    for (let i = 0; i >= 0; i = next[i] as number) out.push(symbols[i] as string);
    return out;
  }
}

/**
 * FLB `__init__` reading of merges.txt: split on "\n", drop the last element, keep the first two
 * whitespace-separated fields of each line; the rank is the line index and a repeated pair keeps its last rank.
 * Python's text mode has already turned `\r\n` and `\r` into `\n`.
 */
export function parseMerges(text: string): Map<string, number> {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  lines.pop();
  const ranks = new Map<string, number>();
  lines.forEach((line, index) => {
    const fields = pySplit(line);
    if (fields.length >= 2) ranks.set(`${fields[0]} ${fields[1]}`, index);
  });
  return ranks;
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer

/** How the `do_lowercase` decision was reached, for the CLI to explain (tokenizers.md §B.4). */
export interface FlaubertLowercase {
  /** Whether text is lower-cased before Moses. */
  readonly doLowercase: boolean;
  readonly source: 'override' | 'tokenizer_config.json' | 'default';
  /**
   * `do_lower_case` from tokenizer_config.json: the key the Hub FlauBERT repos ship (`true` for
   * flaubert_base_uncased) and that transformers never reads, so it does not lower-case either.
   */
  readonly ignoredDoLowerCase: boolean | undefined;
}

/**
 * A one-line notice for the case tokenizers.md §B.4 describes: the repo asks for lower-casing under the key
 * transformers ignores, so (like transformers) nothing is lower-cased. Undefined when there is nothing to say.
 */
export function ignoredLowercaseNotice(lowercase: FlaubertLowercase): string | undefined {
  if (lowercase.ignoredDoLowerCase !== true || lowercase.doLowercase || lowercase.source === 'override') {
    return undefined;
  }
  return (
    'tokenizer_config.json sets "do_lower_case": true, a key transformers\' FlaubertTokenizer ignores, so the ' +
    'text is not lower-cased (same ids as transformers); the uncased model was trained on lower-cased text'
  );
}

export interface FlaubertTokenizerConfig {
  readonly vocab: ReadonlyMap<string, number>;
  readonly merges: ReadonlyMap<string, number>;
  readonly lowercase: FlaubertLowercase;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly modelMaxLength: number | undefined;
  /** Token strings by role; `eos` is absent for FlauBERT (its `</s>` is the sep/cls token). */
  readonly roles: Readonly<Record<SpecialRole, string | undefined>>;
  /** `all_special_tokens`. */
  readonly specialTokens: readonly string[];
  readonly additionalSpecialTokens: readonly string[];
  /** Added tokens by id, the special tokens among them, in the order transformers registers them. */
  readonly addedTokens: ReadonlyMap<number, AddedToken>;
}

const SPECIAL_ROLES = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
export type SpecialRole = (typeof SPECIAL_ROLES)[number];

export class FlaubertTokenizer implements Tokenizer {
  readonly kind = 'flaubert' as const;
  readonly size: number;
  /** `vocab_size`: entries of vocab.json. */
  readonly vocabSize: number;
  readonly special: SpecialTokenIds;
  readonly maskToken: string | undefined;
  readonly specialTokens: readonly string[];
  readonly lowercase: FlaubertLowercase;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly modelMaxLength: number | undefined;
  /** The sep (= cls) id that closes a sequence; also reported as `special.eos`. */
  readonly sepId: number;

  private readonly bpeModel: XlmBpe;
  private readonly idCache = new Map<string, readonly number[]>();
  private readonly vocab: ReadonlyMap<string, number>;
  /** Indexed by id: far faster than a Map for the id → token direction that every `encode` takes. */
  private readonly vocabById: Array<string | undefined> = [];
  private readonly addedIds = new Map<string, number>();
  private readonly addedById: ReadonlyMap<number, AddedToken>;
  private readonly splitter: AddedTokenSplitter;
  private readonly decodeSource: DecodeSource;
  private readonly bosId: number;
  private readonly unkId: number;
  private readonly unkToken: string;

  constructor(config: FlaubertTokenizerConfig) {
    this.vocab = config.vocab;
    for (const [token, id] of config.vocab) this.vocabById[id] = token;
    this.vocabSize = config.vocab.size;
    this.bpeModel = new XlmBpe(config.merges);
    this.lowercase = config.lowercase;
    this.cleanUpTokenizationSpaces = config.cleanUpTokenizationSpaces;
    this.modelMaxLength = config.modelMaxLength;
    this.addedById = config.addedTokens;
    for (const [id, t] of config.addedTokens) this.addedIds.set(t.content, id);
    this.splitter = new AddedTokenSplitter(config.addedTokens.values());
    // len(tokenizer) counts the distinct keys of the vocabulary and the added tokens.
    let extra = 0;
    for (const content of this.addedIds.keys()) if (!config.vocab.has(content)) extra++;
    this.size = config.vocab.size + extra;

    const idOf = (role: SpecialRole): number | undefined => {
      const token = config.roles[role];
      return token === undefined ? undefined : this.toIdWithUnk(token);
    };
    const unkToken = config.roles.unk;
    if (unkToken === undefined || this.tokenToId(unkToken) === undefined) {
      throw new FormatError(`FlauBERT tokenizer: unk token ${String(unkToken)} is not in the vocabulary`);
    }
    this.unkToken = unkToken;
    this.unkId = this.tokenToId(unkToken) as number;
    const bos = idOf('bos');
    const sep = idOf('sep');
    const pad = idOf('pad');
    if (bos === undefined || sep === undefined || pad === undefined) {
      throw new FormatError('FlauBERT tokenizer: bos, sep and pad tokens are required');
    }
    this.bosId = bos;
    this.sepId = sep;
    const mask = idOf('mask');
    this.special = { pad, eos: idOf('eos') ?? sep, unk: this.unkId, bos, ...(mask === undefined ? {} : { mask }) };
    this.maskToken = config.roles.mask;

    this.specialTokens = config.specialTokens;
    const idOfToken = (t: string): number => this.toIdWithUnk(t);
    this.decodeSource = {
      tokenOf: (id) => this.toTokenWithUnk(id),
      specialIds: new Set(config.specialTokens.map(idOfToken)),
      legacyAdded: legacyAddedTokens(
        this.addedIds.keys(),
        new Set(config.specialTokens),
        config.additionalSpecialTokens,
        idOfToken,
        this.vocabSize,
      ),
      convertTokensToString: (tokens) => this.convertTokensToString(tokens),
    };
  }

  get doLowercase(): boolean {
    return this.lowercase.doLowercase;
  }

  /** FLB `bpe(token)`: the space-joined BPE pieces of one Moses token. */
  bpe(token: string): string {
    return this.bpeModel.joined(token);
  }

  /** FLB `_tokenize` up to the BPE: the Moses words of text that contains no added token. */
  private words(segment: string): string[] {
    return mosesTokenize(mosesPipeline(preprocessText(segment, this.lowercase.doLowercase)));
  }

  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const part of this.splitter.split(text)) {
      if (part.length === 0) continue;
      if (this.addedIds.has(part)) {
        out.push(part);
        continue;
      }
      for (const word of this.words(part)) {
        if (word.length > 0) for (const piece of this.bpeModel.pieces(word)) out.push(piece);
      }
    }
    return out;
  }

  /** Ids of one Moses word's pieces, memoised: looking up freshly built piece strings costs more than BPE. */
  private wordIds(word: string): readonly number[] {
    let ids = this.idCache.get(word);
    if (ids === undefined) {
      ids = this.bpeModel.pieces(word).map((piece) => this.toIdWithUnk(piece));
      if (this.idCache.size >= MAX_CACHE_ENTRIES) this.idCache.clear();
      this.idCache.set(word, ids);
    }
    return ids;
  }

  private toIdWithUnk(token: string): number {
    return this.tokenToId(token) ?? this.unkId;
  }

  /** `convert_ids_to_tokens` for one id: out-of-vocabulary ids read as the unk token, as in transformers. */
  private toTokenWithUnk(id: number): string {
    return this.idToToken(id) ?? this.unkToken;
  }

  encode(text: string, options: EncodeOptions = {}): Encoding {
    const framed = options.addSpecialTokens !== false;
    const ids: number[] = framed ? [this.bosId] : [];
    for (const part of this.splitter.split(text)) {
      if (part.length === 0) continue;
      const added = this.addedIds.get(part);
      if (added !== undefined) {
        ids.push(added);
        continue;
      }
      for (const word of this.words(part)) {
        if (word.length > 0) for (const id of this.wordIds(word)) ids.push(id);
      }
    }
    if (framed) ids.push(this.sepId);
    return {
      ids,
      tokens: ids.map((id) => this.toTokenWithUnk(id)),
      tokenTypeIds: new Array<number>(ids.length).fill(0),
    };
  }

  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0) return undefined;
    return this.addedById.get(id)?.content ?? this.vocabById[id];
  }

  tokenToId(token: string): number | undefined {
    return this.addedIds.get(token) ?? this.vocab.get(token);
  }

  /** XLM `convert_tokens_to_string`: concatenate, every `</w>` becomes a space, strip. */
  convertTokensToString(tokens: readonly string[]): string {
    return pyStrip(tokens.join('').replaceAll(END_OF_WORD, ' '));
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces;
    return decodeIds(this.decodeSource, ids, options.skipSpecialTokens ?? false, cleanUp);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Loading

async function readJsonObject(path: string, required = false): Promise<JsonObject | undefined> {
  const value = parseJson(await readTokenizerFile(path, required), path);
  if (value !== undefined && !isObject(value)) throw new FormatError(`${path} must contain a JSON object`);
  return value;
}

/** FLB `__init__` defaults; `eos` stays unset, the `</s>` that closes a sequence is sep. */
const FLAUBERT_DEFAULTS: Partial<Record<SpecialAttribute, string>> = {
  bos_token: '<s>',
  unk_token: '<unk>',
  sep_token: '</s>',
  pad_token: '<pad>',
  cls_token: '</s>',
  mask_token: '<special1>',
};
const DEFAULT_ADDITIONAL = Array.from({ length: 10 }, (_, i) => `<special${i}>`);

export interface FlaubertLoadOverrides {
  /** transformers' `do_lowercase` kwarg; wins over tokenizer_config.json. */
  doLowercase?: boolean;
}

/**
 * Loads vocab.json, merges.txt and (when present) tokenizer_config.json, special_tokens_map.json and
 * added_tokens.json the way `FlaubertTokenizer.from_pretrained(dir)` does.
 */
export async function loadFlaubertTokenizer(
  dir: string,
  overrides: FlaubertLoadOverrides = {},
): Promise<FlaubertTokenizer> {
  const vocabPath = join(dir, 'vocab.json');
  const vocabJson = await readJsonObject(vocabPath, true);
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(vocabJson ?? {})) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new FormatError(`${vocabPath}: the id of ${JSON.stringify(token)} is not a non-negative integer`);
    }
    vocab.set(token, id);
  }
  const merges = parseMerges((await readTokenizerFile(join(dir, 'merges.txt'), true))?.toString('utf8') ?? '');

  const config = (await readJsonObject(join(dir, 'tokenizer_config.json'))) ?? {};
  const specialMap = await readJsonObject(join(dir, 'special_tokens_map.json'));
  const addedTokensJson = await readJsonObject(join(dir, 'added_tokens.json'));

  const settings = specialTokenSettings(FLAUBERT_DEFAULTS, config, specialMap);
  const additional = settings.additional ?? DEFAULT_ADDITIONAL.map((t) => parseAddedToken(t, true, 'additional_special_tokens'));
  const specials = specialTokensInOrder(settings.single, additional);
  const specialTokens = specials.map((t) => t.content);
  // FlauBERT's get_vocab() is vocab.json plus the added tokens.
  const { added } = initAddedTokens(config, { addedTokensJson }, specials, () => vocab);
  const roles = Object.fromEntries(SPECIAL_ROLES.map((role) => [role, settings.single.get(`${role}_token`)?.content]));

  const ignoredDoLowerCase = typeof config.do_lower_case === 'boolean' ? config.do_lower_case : undefined;
  let lowercase: FlaubertLowercase;
  if (overrides.doLowercase !== undefined) {
    lowercase = { doLowercase: overrides.doLowercase, source: 'override', ignoredDoLowerCase };
  } else if (typeof config.do_lowercase === 'boolean') {
    lowercase = { doLowercase: config.do_lowercase, source: 'tokenizer_config.json', ignoredDoLowerCase };
  } else {
    // Without a do_lowercase key FlaubertTokenizer defaults to False; its built-in map (True for
    // flaubert_base_uncased) only applies to Hub ids loaded without any tokenizer_config.json.
    lowercase = { doLowercase: false, source: 'default', ignoredDoLowerCase };
  }

  const maxLength = config.model_max_length;
  return new FlaubertTokenizer({
    vocab,
    merges,
    lowercase,
    cleanUpTokenizationSpaces:
      typeof config.clean_up_tokenization_spaces === 'boolean' ? config.clean_up_tokenization_spaces : true,
    modelMaxLength: typeof maxLength === 'number' && Number.isSafeInteger(maxLength) ? maxLength : undefined,
    roles: roles as Record<SpecialRole, string | undefined>,
    specialTokens,
    additionalSpecialTokens: additional.map((t) => t.content),
    addedTokens: added,
  });
}
