/**
 * Added and special tokens of the transformers 4.37 slow tokenizers (`tokenization_utils.py` /
 * `tokenization_utils_base.py`), shared by T5 and FlauBERT: read from tokenizer_config.json,
 * special_tokens_map.json, added_tokens.json and tokenizer.json as `from_pretrained` does, completed by
 * `PreTrainedTokenizer.__init__`, and cut out of the text by `tokenize` before the model sees it.
 */
import { FormatError } from '../errors.js';
import { isObject, type JsonObject } from './json-files.js';
import { pyLstrip, pyRstrip } from './python-str.js';

/** transformers' `AddedToken` flags. */
export interface AddedToken {
  readonly content: string;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  readonly singleWord: boolean;
  readonly normalized: boolean;
  readonly special: boolean;
}

/** An `AddedToken` from a string or a serialised dict (`{content, lstrip, ...}`, older files add `__type`). */
export function parseAddedToken(v: unknown, special: boolean, where: string): AddedToken {
  if (typeof v === 'string') return { content: v, lstrip: false, rstrip: false, singleWord: false, normalized: !special, special };
  if (isObject(v) && typeof v.content === 'string') {
    const flag = (k: string, d: boolean): boolean => (typeof v[k] === 'boolean' ? (v[k] as boolean) : d);
    return {
      content: v.content,
      lstrip: flag('lstrip', false),
      rstrip: flag('rstrip', false),
      singleWord: flag('single_word', false),
      normalized: flag('normalized', !special),
      special: special || flag('special', false),
    };
  }
  throw new FormatError(`${where} is not a token string or AddedToken object`);
}

/** The `added_tokens` list of tokenizer.json (transformers reads it even beside spiece.model). */
export function addedTokensFromTokenizerJson(json: unknown, what = 'tokenizer.json'): Array<AddedToken & { id: number }> {
  if (!isObject(json)) throw new FormatError(`${what} is not a JSON object`);
  const list = json.added_tokens;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new FormatError(`${what}: added_tokens is not a list`);
  return list.map((t: unknown, i) => {
    if (!isObject(t) || typeof t.content !== 'string' || !Number.isInteger(t.id)) {
      throw new FormatError(`${what}: added_tokens[${i}] lacks an id or content`);
    }
    return { id: t.id as number, ...parseAddedToken(t, false, `${what}: added_tokens[${i}]`) };
  });
}

/** `SPECIAL_TOKENS_ATTRIBUTES` minus the list, in transformers' order (which fixes `all_special_tokens`). */
export const SPECIAL_ATTRIBUTES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
export type SpecialAttribute = (typeof SPECIAL_ATTRIBUTES)[number];

export interface SpecialTokenSettings {
  single: Map<SpecialAttribute, AddedToken>;
  /** `additional_special_tokens`; undefined when neither file gives a list (the class default applies). */
  additional: AddedToken[] | undefined;
}

/**
 * The special-token kwargs `from_pretrained` hands to the tokenizer class: its defaults, then
 * tokenizer_config.json, then special_tokens_map.json, which is read only on the legacy path (no
 * `added_tokens_decoder` saved) and adds to a configured additional list instead of replacing it.
 */
export function specialTokenSettings(
  defaults: Partial<Record<SpecialAttribute, string>>,
  config: JsonObject,
  specialTokensMap: JsonObject | undefined,
): SpecialTokenSettings {
  const map = isObject(config.added_tokens_decoder) ? undefined : specialTokensMap;
  const single = new Map<SpecialAttribute, AddedToken>();
  for (const [key, content] of Object.entries(defaults)) single.set(key as SpecialAttribute, parseAddedToken(content, true, key));
  const read = (source: JsonObject, key: SpecialAttribute, where: string): void => {
    if (!(key in source)) return;
    const v = source[key];
    if (v === null || v === undefined) single.delete(key);
    else single.set(key, parseAddedToken(v, true, `${where} ${key}`));
  };
  const readList = (v: unknown, where: string): AddedToken[] => {
    if (!Array.isArray(v)) throw new FormatError(`${where} additional_special_tokens is not a list`);
    return v.map((t: unknown, i) => parseAddedToken(t, true, `${where} additional_special_tokens[${i}]`));
  };
  for (const key of SPECIAL_ATTRIBUTES) read(config, key, 'tokenizer_config.json');
  let additional: AddedToken[] | undefined;
  if (Array.isArray(config.additional_special_tokens)) additional = readList(config.additional_special_tokens, 'tokenizer_config.json');
  if (map !== undefined) {
    for (const key of SPECIAL_ATTRIBUTES) read(map, key, 'special_tokens_map.json');
    if (map.additional_special_tokens !== undefined && map.additional_special_tokens !== null) {
      const merged = additional ?? [];
      for (const t of readList(map.additional_special_tokens, 'special_tokens_map.json')) {
        if (!merged.some((m) => m.content === t.content)) merged.push(t);
      }
      additional = merged;
    }
  }
  return { single, additional };
}

/** `all_special_tokens_extended`: the attributes in order, then the list; a repeated string keeps its first flags. */
export function specialTokensInOrder(single: ReadonlyMap<SpecialAttribute, AddedToken>, additional: readonly AddedToken[]): AddedToken[] {
  const out: AddedToken[] = [];
  const seen = new Set<string>();
  for (const t of [...SPECIAL_ATTRIBUTES.map((k) => single.get(k)), ...additional]) {
    if (t === undefined || seen.has(t.content)) continue;
    seen.add(t.content);
    out.push(t);
  }
  return out;
}

export interface SavedAddedTokenFiles {
  /** Parsed added_tokens.json (content → id). */
  addedTokensJson?: unknown;
  /** Parsed tokenizer.json, or an object holding just its `added_tokens`. */
  tokenizerJson?: unknown;
}

/**
 * Added tokens as `from_pretrained` passes them (`added_tokens_decoder`): the saved decoder of
 * tokenizer_config.json if any, else added_tokens.json (no strip) then tokenizer.json's `added_tokens`.
 */
function savedAddedTokens(config: JsonObject, files: SavedAddedTokenFiles, specialContents: ReadonlySet<string>): Map<number, AddedToken> {
  const decoder = new Map<number, AddedToken>();
  const saved = config.added_tokens_decoder;
  if (isObject(saved)) {
    for (const [key, value] of Object.entries(saved)) {
      const id = Number(key);
      if (!Number.isSafeInteger(id) || id < 0) throw new FormatError(`tokenizer_config.json added_tokens_decoder has a bad id '${key}'`);
      decoder.set(id, parseAddedToken(value, false, `tokenizer_config.json added_tokens_decoder[${key}]`));
    }
    return decoder;
  }
  if (files.addedTokensJson !== undefined) {
    if (!isObject(files.addedTokensJson)) throw new FormatError('added_tokens.json is not a JSON object');
    for (const [content, id] of Object.entries(files.addedTokensJson)) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
        throw new FormatError(`added_tokens.json maps '${content}' to '${String(id)}', not a token id`);
      }
      const special = specialContents.has(content);
      decoder.set(id, { content, lstrip: false, rstrip: false, singleWord: false, normalized: !special, special });
    }
  }
  if (files.tokenizerJson !== undefined) {
    for (const { id, ...token } of addedTokensFromTokenizerJson(files.tokenizerJson)) decoder.set(id, token);
  }
  return decoder;
}

/**
 * `PreTrainedTokenizer.__init__`'s added tokens by id, and their content → id view: the class defaults (T5's
 * sentinels), overridden by the saved ones `from_pretrained` passes, then `_add_tokens(special_tokens=True)`
 * for the special tokens still missing: one spelled like a vocabulary entry takes that id, any other the next
 * id after `get_vocab()`. `baseVocab` gives the model's own part of `get_vocab()`, asked for only then.
 */
export function initAddedTokens(
  config: JsonObject,
  files: SavedAddedTokenFiles,
  specials: readonly AddedToken[],
  baseVocab: (added: ReadonlyMap<number, AddedToken>) => ReadonlyMap<string, number>,
  classDefaults: ReadonlyMap<number, AddedToken> = new Map(),
): { added: Map<number, AddedToken>; addedIds: Map<string, number> } {
  const added = new Map(classDefaults);
  for (const [id, t] of savedAddedTokens(config, files, new Set(specials.map((t) => t.content)))) added.set(id, t);
  const addedIds = new Map<string, number>();
  for (const [id, t] of added) addedIds.set(t.content, id);
  const missing = specials.filter((t) => t.content !== '' && !addedIds.has(t.content));
  if (missing.length === 0) return { added, addedIds };
  const vocab = baseVocab(added);
  let next = vocab.size;
  for (const content of addedIds.keys()) if (!vocab.has(content)) next++;
  for (const t of missing) {
    const id = vocab.get(t.content) ?? next++;
    added.set(id, { ...t, special: true });
    addedIds.set(t.content, id);
  }
  return { added, addedIds };
}

function isHigh(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Python sees code points: a cut between the halves of a surrogate pair is no cut there. */
function splitsPair(text: string, at: number): boolean {
  return at > 0 && at < text.length && isHigh(text.charCodeAt(at - 1)) && isLow(text.charCodeAt(at));
}

/**
 * `PreTrainedTokenizer.tokenize` up to `_tokenize`: the text cut at added-token contents, then each token's
 * flags applied to its neighbours. Cutting scans left to right, the earliest position where a token matches
 * wins and there the longest token: `Trie.split` for sets where no token contains another, which holds for
 * the T5, FLAN-UL2 and FlauBERT sets.
 */
export class AddedTokenSplitter {
  /** Content → flags; a content repeated under several ids keeps the last, as `_added_tokens_encoder` does. */
  private readonly tokens = new Map<string, AddedToken>();
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminal: boolean[] = [false];
  /** First code units of the contents: most positions of most texts are rejected by one lookup. */
  private readonly first = new Uint8Array(65536);
  private readonly anyFlags: boolean;

  constructor(tokens: Iterable<AddedToken>) {
    for (const t of tokens) this.tokens.set(t.content, t);
    for (const content of this.tokens.keys()) {
      if (content.length === 0) continue;
      this.first[content.charCodeAt(0)] = 1;
      let node = 0;
      for (let i = 0; i < content.length; i++) {
        const c = content.charCodeAt(i);
        const map = this.children[node] as Map<number, number>;
        let next = map.get(c);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminal.push(false);
          map.set(c, next);
        }
        node = next;
      }
      this.terminal[node] = true;
    }
    this.anyFlags = [...this.tokens.values()].some((t) => t.lstrip || t.rstrip || t.singleWord);
  }

  /** Text pieces and added tokens in order; pieces may be empty, and a single-word token may be glued to text. */
  split(text: string): string[] {
    const parts = this.cut(text);
    if (this.anyFlags && parts.length > 1) this.applyFlags(parts);
    return parts;
  }

  /** `Trie.split`: no empty pieces. */
  private cut(text: string): string[] {
    const parts: string[] = [];
    let last = 0;
    for (let i = 0; i < text.length; i++) {
      if (this.first[text.charCodeAt(i)] === 0 || splitsPair(text, i)) continue;
      let node = 0;
      let end = -1;
      for (let k = i; k < text.length; k++) {
        const next = (this.children[node] as Map<number, number>).get(text.charCodeAt(k));
        if (next === undefined) break;
        node = next;
        if (this.terminal[node] && !splitsPair(text, k + 1)) end = k + 1;
      }
      if (end < 0) continue;
      if (last < i) parts.push(text.slice(last, i));
      parts.push(text.slice(i, end));
      last = end;
      i = end - 1;
    }
    if (last < text.length) parts.push(last === 0 ? text : text.slice(last));
    return parts;
  }

  /** The loop of `tokenize` as written: `left` and `right` are the neighbours before this token changed them. */
  private applyFlags(parts: string[]): void {
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      const token = this.tokens.get(part);
      if (token === undefined) continue;
      const left = i > 0 ? (parts[i - 1] as string) : '';
      const right = i < parts.length - 1 ? (parts[i + 1] as string) : '';
      // rstrip: the token eats the whitespace on its right, so the next piece loses its leading spaces.
      if (token.rstrip && right !== '') parts[i + 1] = pyLstrip(right);
      if (token.lstrip && left !== '') parts[i - 1] = pyRstrip(left);
      if (token.singleWord && left !== '' && !left.endsWith(' ')) {
        parts[i - 1] = (parts[i - 1] as string) + part;
        parts[i] = '';
      } else if (token.singleWord && right !== '' && !right.startsWith(' ')) {
        parts[i + 1] = part + (parts[i + 1] as string);
        parts[i] = '';
      }
    }
  }
}
