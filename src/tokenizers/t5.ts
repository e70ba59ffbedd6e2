/**
 * The slow `T5Tokenizer` of transformers 4.37.2 (`models/t5/tokenization_t5.py` on top of
 * `tokenization_utils.py` / `tokenization_utils_base.py`) for T5, FLAN-T5 and FLAN-UL2, over the
 * SentencePiece port in ./sentencepiece/. Behaviour, in order:
 * - added tokens (`<pad>`, `</s>`, `<unk>`, sentinels `<extra_id_i>` = sp_size + extra_ids - 1 - i,
 *   FLAN-UL2's `[new_id_N]`) are cut out of the text first, with their lstrip/rstrip flags applied to
 *   the neighbouring text using Python's whitespace set;
 * - each remaining piece of text is encoded by SentencePiece on its own (legacy = true, the default) or,
 *   with legacy = false, without the dummy prefix and with the `<unk>`-prefix trick;
 * - `</s>` is appended unless the ids already end with it;
 * - decoding follows `PreTrainedTokenizer._decode` + `T5Tokenizer.convert_tokens_to_string` and then
 *   `clean_up_tokenization`.
 * Spec: shared/docs/sentencepiece.md §7 and shared/docs/tokenizers.md §A.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, ioErrorFrom, NotFoundError, UsageError } from '../errors.js';
import { SentencePieceProcessor } from './sentencepiece/processor.js';
import { decodeModelProto } from './sentencepiece/proto.js';
import { addedTokensFromTokenizerJson, modelFromTokenizerJson } from './sentencepiece/tokenizer-json.js';
import type { DecodeOptions, EncodeOptions, Encoding, SpecialTokenIds, Tokenizer } from './tokenizer.js';

const SPIECE_UNDERLINE = '\u2581';

/** transformers' `AddedToken` flags. */
interface AddedToken {
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
  special: boolean;
}

/** The files of a model directory that shape the tokenizer, already read; absent ones undefined. */
export interface T5TokenizerFiles {
  /** `spiece.model` bytes; preferred over tokenizer.json, as transformers' slow tokenizer does. */
  spieceModel?: Uint8Array | undefined;
  /** Parsed `tokenizer.json`: the model when there is no spiece.model, and legacy added-token flags. */
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
  specialTokensMap?: unknown;
  /** Parsed `added_tokens.json` (FLAN-UL2's `[new_id_N]` → id). */
  addedTokensJson?: unknown;
}

export interface T5TokenizerOptions {
  /** transformers' `legacy` kwarg; default: tokenizer_config.json's value, absent or null meaning true. */
  legacy?: boolean | undefined;
}

/** An id the tokenizer has no token for; transformers raises `IndexError: piece id is out of range.` */
export class TokenIdError extends UsageError {
  constructor(readonly id: number, size: number) {
    super(`token id ${id} is out of range: piece id is out of range (valid ids: 0 to ${size - 1})`, {
      hint: 'the id is not in this tokenizer; a model may have more embedding rows than tokens',
    });
  }
}

/** Python's `str.isspace` set, which `str.strip` uses: not JS `\s` (no U+FEFF, adds U+001C–U+001F, U+0085). */
function isPySpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    (c >= 0x1c && c <= 0x20) ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

function pyLstrip(s: string): string {
  let i = 0;
  while (i < s.length && isPySpace(s.charCodeAt(i))) i++;
  return i === 0 ? s : s.slice(i);
}

function pyRstrip(s: string): string {
  let e = s.length;
  while (e > 0 && isPySpace(s.charCodeAt(e - 1))) e--;
  return e === s.length ? s : s.slice(0, e);
}

function pyStrip(s: string): string {
  return pyLstrip(pyRstrip(s));
}

/** TUB `clean_up_tokenization`: the replacements, in this order. */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/**
 * Cuts text at added-token contents: scanning left to right, the earliest position where a token
 * matches wins, and there the longest token (`Trie.split` for sets where no token contains another,
 * which holds for the T5 and FLAN-UL2 sets). Works on UTF-16 code units, which matches the same
 * strings as Python's code points.
 */
class AddedTokenSplitter {
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminal: boolean[] = [false];
  private readonly first = new Uint8Array(65536);

  constructor(contents: Iterable<string>) {
    for (const content of contents) {
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
  }

  /** Text pieces and tokens in order, empty pieces dropped. */
  split(text: string): string[] {
    const parts: string[] = [];
    let last = 0;
    for (let i = 0; i < text.length; i++) {
      if (this.first[text.charCodeAt(i)] === 0) continue;
      let node = 0;
      let end = -1;
      for (let k = i; k < text.length; k++) {
        const next = (this.children[node] as Map<number, number>).get(text.charCodeAt(k));
        if (next === undefined) break;
        node = next;
        if (this.terminal[node]) end = k + 1;
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
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An `AddedToken` from a string or a serialised dict (`{content, lstrip, ...}`, older files add `__type`). */
function toAddedToken(v: unknown, special: boolean, where: string): AddedToken {
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

/** `SPECIAL_TOKENS_ATTRIBUTES` minus the list, in transformers' order (which fixes `all_special_tokens`). */
const SPECIAL_ATTRIBUTES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
type SpecialAttribute = (typeof SPECIAL_ATTRIBUTES)[number];
const T5_DEFAULTS: Partial<Record<SpecialAttribute, string>> = { eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>' };

interface SpecialTokenSettings {
  single: Map<SpecialAttribute, AddedToken>;
  additional: AddedToken[];
}

/**
 * The special-token kwargs `from_pretrained` hands to `T5Tokenizer.__init__`: tokenizer_config.json,
 * overridden by special_tokens_map.json only on the legacy path (no `added_tokens_decoder` saved).
 */
function specialTokenSettings(config: Json, map: Json | undefined): SpecialTokenSettings {
  const single = new Map<SpecialAttribute, AddedToken>();
  const read = (source: Json, key: SpecialAttribute, where: string): void => {
    if (!(key in source)) return;
    const v = source[key];
    if (v === null || v === undefined) single.delete(key);
    else single.set(key, toAddedToken(v, true, `${where} ${key}`));
  };
  for (const [key, content] of Object.entries(T5_DEFAULTS)) {
    single.set(key as SpecialAttribute, toAddedToken(content, true, key));
  }
  for (const key of SPECIAL_ATTRIBUTES) read(config, key, 'tokenizer_config.json');
  let additional: AddedToken[] | undefined;
  const readList = (v: unknown, where: string): AddedToken[] => {
    if (!Array.isArray(v)) throw new FormatError(`${where} additional_special_tokens is not a list`);
    return v.map((t, i) => toAddedToken(t, true, `${where} additional_special_tokens[${i}]`));
  };
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
  return { single, additional: additional ?? [] };
}

/**
 * Added tokens as `from_pretrained` passes them (`added_tokens_decoder`): the saved decoder of
 * tokenizer_config.json if any, else added_tokens.json (no strip) then tokenizer.json's `added_tokens`.
 */
function savedAddedTokens(config: Json, files: T5TokenizerFiles, specialContents: Set<string>): Map<number, AddedToken> {
  const decoder = new Map<number, AddedToken>();
  const saved = config.added_tokens_decoder;
  if (isObject(saved)) {
    for (const [key, value] of Object.entries(saved)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0) throw new FormatError(`tokenizer_config.json added_tokens_decoder has a bad id '${key}'`);
      decoder.set(id, toAddedToken(value, false, `tokenizer_config.json added_tokens_decoder[${key}]`));
    }
    return decoder;
  }
  if (files.addedTokensJson !== undefined) {
    if (!isObject(files.addedTokensJson)) throw new FormatError('added_tokens.json is not a JSON object');
    for (const [content, id] of Object.entries(files.addedTokensJson)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new FormatError(`added_tokens.json maps '${content}' to '${String(id)}', not a token id`);
      }
      const special = specialContents.has(content);
      decoder.set(id, { content, lstrip: false, rstrip: false, singleWord: false, normalized: !special, special });
    }
  }
  if (files.tokenizerJson !== undefined) {
    for (const t of addedTokensFromTokenizerJson(files.tokenizerJson)) {
      const { id, ...flags } = t;
      decoder.set(id, flags);
    }
  }
  return decoder;
}

/**
 * T5Tokenizer.__init__'s sentinels: `<extra_id_0>`… appended to the additional special tokens unless they
 * already name some, and class defaults (lstrip/rstrip) at ids sp_size + extra_ids - 1 - i.
 */
function sentinels(config: Json, given: AddedToken[], spSize: number): { additional: AddedToken[]; defaults: Map<number, AddedToken> } {
  const extraIds = config.extra_ids ?? 100;
  if (typeof extraIds !== 'number' || !Number.isInteger(extraIds) || extraIds < 0) {
    throw new FormatError('tokenizer_config.json extra_ids is not a non-negative integer');
  }
  const generated = (): AddedToken[] => Array.from({ length: extraIds }, (_, i) => toAddedToken(`<extra_id_${i}>`, true, 'sentinel'));
  let additional: AddedToken[];
  let count: number;
  if (given.length > 0 || Array.isArray(config.additional_special_tokens)) {
    count = given.filter((t) => t.content.includes('<extra_id_')).length;
    if (count < 1) {
      // transformers appends them but, counting none, gives them no class default: they are added at the end.
      additional = [...given, ...generated()];
    } else if (extraIds > 0 && extraIds !== count) {
      throw new FormatError(`extra_ids (${extraIds}) and the ${count} <extra_id_N> tokens of additional_special_tokens disagree`, {
        hint: 'fix tokenizer_config.json: additional_special_tokens must list the extra_ids sentinels',
      });
    } else {
      additional = given;
    }
  } else {
    count = extraIds;
    additional = generated();
  }
  const defaults = new Map<number, AddedToken>();
  for (let i = 0; i < count; i++) {
    const content = `<extra_id_${i}>`;
    defaults.set(spSize - 1 + extraIds - i, { content, lstrip: true, rstrip: true, singleWord: false, normalized: false, special: true });
  }
  return { additional, defaults };
}

/**
 * `_add_tokens(special_tokens=True)` for special tokens absent from the added tokens: a token spelled
 * like a vocabulary entry takes that id, any other one the next id after the whole vocabulary.
 */
function addMissingSpecialTokens(
  specials: readonly AddedToken[],
  added: Map<number, AddedToken>,
  addedIds: Map<string, number>,
  pieces: readonly string[],
): void {
  const missing = specials.filter((t) => t.content !== '' && !addedIds.has(t.content));
  if (missing.length === 0) return;
  const vocab = new Map<string, number>();
  for (let i = 0; i < pieces.length; i++) vocab.set(added.get(i)?.content ?? (pieces[i] as string), i);
  for (const [content, id] of addedIds) vocab.set(content, id);
  const base = vocab.size;
  let appended = 0;
  for (const t of missing) {
    let id = vocab.get(t.content);
    if (id === undefined) {
      id = base + appended++;
      vocab.set(t.content, id);
    }
    added.set(id, { ...t, special: true });
    addedIds.set(t.content, id);
  }
}

export class T5Tokenizer implements Tokenizer {
  readonly kind = 't5' as const;
  readonly size: number;
  readonly special: SpecialTokenIds;
  readonly specialTokens: readonly string[];
  readonly legacy: boolean;
  readonly modelMaxLength: number | undefined;
  readonly cleanUpTokenizationSpaces: boolean;
  /** SentencePiece pieces (transformers' `vocab_size` in 4.37.2). */
  readonly spSize: number;
  /** The processor in use: with legacy = false, the model re-loaded without the dummy prefix. */
  readonly sp: SentencePieceProcessor;
  private readonly tokenOfId: (string | undefined)[];
  private readonly addedIds: Map<string, number>;
  private readonly addedById: Map<number, AddedToken>;
  private readonly splitter: AddedTokenSplitter;
  private readonly specialSet: Set<string>;
  private readonly specialIdSet: Set<number>;
  /** Tokens `_decode` emits on their own, joined with spaces (sentinels, non-special added tokens). */
  private readonly legacyAdded: Set<string>;
  /** Final id of each SentencePiece id (an added token with the same content takes precedence). */
  private readonly pieceIds: Int32Array;
  private readonly unkToken: string;
  private readonly unkTokenLength: number;
  private readonly eosId: number;

  constructor(files: T5TokenizerFiles, options: T5TokenizerOptions = {}) {
    const config = files.tokenizerConfig === undefined ? {} : files.tokenizerConfig;
    if (!isObject(config)) throw new FormatError('tokenizer_config.json is not a JSON object');
    if (files.specialTokensMap !== undefined && !isObject(files.specialTokensMap)) {
      throw new FormatError('special_tokens_map.json is not a JSON object');
    }
    const hasSavedDecoder = isObject(config.added_tokens_decoder);
    const settings = specialTokenSettings(config, hasSavedDecoder ? undefined : (files.specialTokensMap as Json | undefined));

    const legacyConfig = config.legacy;
    this.legacy = options.legacy ?? (typeof legacyConfig === 'boolean' ? legacyConfig : true);
    this.modelMaxLength = typeof config.model_max_length === 'number' ? config.model_max_length : undefined;
    this.cleanUpTokenizationSpaces =
      typeof config.clean_up_tokenization_spaces === 'boolean' ? config.clean_up_tokenization_spaces : true;

    // legacy = false re-serialises the model with add_dummy_prefix = false and uses it for everything.
    const processorOptions = this.legacy ? {} : { addDummyPrefix: false };
    if (files.spieceModel !== undefined) {
      this.sp = new SentencePieceProcessor(decodeModelProto(files.spieceModel), processorOptions);
    } else if (files.tokenizerJson !== undefined) {
      const { model } = modelFromTokenizerJson(files.tokenizerJson);
      this.sp = new SentencePieceProcessor(model, { ...processorOptions, what: 'tokenizer.json' });
    } else {
      throw new NotFoundError('no spiece.model or tokenizer.json given', { hint: 'a T5 tokenizer needs one of them' });
    }
    const spSize = this.sp.size;
    this.spSize = spSize;

    const { additional, defaults } = sentinels(config, settings.additional, spSize);

    // all_special_tokens: the single attributes in transformers' order, then the list, without repeats.
    const specialList: AddedToken[] = [];
    const seen = new Set<string>();
    for (const t of [...SPECIAL_ATTRIBUTES.map((k) => settings.single.get(k)), ...additional]) {
      if (t === undefined || seen.has(t.content)) continue;
      seen.add(t.content);
      specialList.push(t);
    }
    this.specialTokens = specialList.map((t) => t.content);
    this.specialSet = seen;

    // PreTrainedTokenizer.__init__: the saved decoder overrides the class defaults, then the special
    // tokens still missing are added.
    const added = defaults;
    for (const [id, t] of savedAddedTokens(config, files, seen)) added.set(id, t);
    const addedIds = new Map<string, number>();
    for (const [id, t] of added) addedIds.set(t.content, id);
    addMissingSpecialTokens(specialList, added, addedIds, this.sp.pieces);
    this.addedById = added;
    this.addedIds = addedIds;
    this.splitter = new AddedTokenSplitter(addedIds.keys());

    // convert_ids_to_tokens over every id; len(tokenizer) counts distinct token strings.
    let maxId = spSize - 1;
    for (const id of added.keys()) maxId = Math.max(maxId, id);
    this.tokenOfId = new Array<string | undefined>(maxId + 1);
    const vocabStrings = new Set<string>(addedIds.keys());
    for (let id = 0; id <= maxId; id++) {
      const token = added.get(id)?.content ?? this.sp.idToPiece(id);
      this.tokenOfId[id] = token;
      if (id < spSize && token !== undefined) vocabStrings.add(token);
    }
    this.size = vocabStrings.size;

    // convertTokenToId of every piece string, without the second map lookup of piece_to_id.
    this.pieceIds = this.sp.canonicalIds();
    for (let i = 0; i < spSize; i++) {
      const id = addedIds.get(this.sp.pieces[i] as string);
      if (id !== undefined) this.pieceIds[i] = id;
    }
    const idOf = (attr: SpecialAttribute): number | undefined => {
      const t = settings.single.get(attr);
      return t === undefined ? undefined : this.convertTokenToId(t.content);
    };
    const eos = idOf('eos_token');
    const unk = idOf('unk_token');
    const pad = idOf('pad_token');
    if (eos === undefined || unk === undefined || pad === undefined) {
      throw new FormatError('a T5 tokenizer needs eos, unk and pad tokens', { hint: 'check special_tokens_map.json / tokenizer_config.json' });
    }
    const bos = idOf('bos_token');
    const mask = idOf('mask_token');
    this.special = { pad, eos, unk, ...(bos === undefined ? {} : { bos }), ...(mask === undefined ? {} : { mask }) };
    this.eosId = eos;
    this.specialIdSet = new Set(this.specialTokens.map((t) => this.convertTokenToId(t)));
    this.legacyAdded = new Set([...addedIds.keys()].filter((t) => !this.specialSet.has(t)));
    for (const t of additional) if (this.convertTokenToId(t.content) >= spSize) this.legacyAdded.add(t.content);

    this.unkToken = (settings.single.get('unk_token') as AddedToken).content;
    this.unkTokenLength = this.sp.encode(this.unkToken).pieces.length;
  }

  /** `_convert_token_to_id_with_added_voc`: added tokens, then `sp.piece_to_id` (unknown → unk id). */
  private convertTokenToId(token: string): number {
    return this.addedIds.get(token) ?? this.sp.pieceToId(token);
  }

  /** `_tokenize` of one piece of text between added tokens. */
  private encodeText(text: string, tokens: string[], ids: number[]): void {
    const start = tokens.length;
    if (this.legacy || !(text.startsWith(SPIECE_UNDERLINE) || text.startsWith(' '))) {
      this.sp.encodeInto(text, tokens, ids);
    } else {
      // Without the dummy prefix SentencePiece would eat a leading "▁"; encoding "<unk>" + text and
      // dropping the pieces of "<unk>" keeps it.
      const withUnk = this.sp.encode(this.unkToken + text);
      const drop = withUnk.pieces.length >= this.unkTokenLength ? this.unkTokenLength : 0;
      for (let i = drop; i < withUnk.pieces.length; i++) {
        tokens.push(withUnk.pieces[i] as string);
        ids.push(withUnk.ids[i] as number);
      }
    }
    const unk = this.sp.unkId;
    for (let i = start; i < ids.length; i++) {
      const id = ids[i] as number;
      // A merged run of unknown characters is looked up by its string, as transformers does.
      ids[i] = id === unk ? this.convertTokenToId(tokens[i] as string) : (this.pieceIds[id] as number);
    }
  }

  /** `tokenize(text)` with the ids of the tokens alongside. */
  private tokenizeInto(text: string, tokens: string[], ids: number[]): void {
    const prefixed = !this.legacy && text.length > 0;
    const input = prefixed ? SPIECE_UNDERLINE + text.replaceAll(SPIECE_UNDERLINE, ' ') : text;
    const parts = this.splitter.split(input);
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      const id = this.addedIds.get(part);
      if (id === undefined) continue;
      const token = this.addedById.get(id) as AddedToken;
      const left = i > 0 ? (parts[i - 1] as string) : '';
      const right = i < parts.length - 1 ? (parts[i + 1] as string) : '';
      // rstrip: the token eats the whitespace on its right, so the next piece loses its leading spaces.
      if (token.rstrip && right !== '') parts[i + 1] = pyLstrip(right);
      if (token.lstrip && left !== '') parts[i - 1] = pyRstrip(left);
      if (token.singleWord && left !== '' && !left.endsWith(' ')) {
        parts[i - 1] = (parts[i - 1] as string) + part;
        parts[i] = '';
      } else if (token.singleWord && right !== '' && !right.startsWith(' ')) {
        parts[i] = part + (parts[i + 1] as string);
        parts[i + 1] = '';
      }
    }
    for (const part of parts) {
      if (part === '') continue;
      const id = this.addedIds.get(part);
      if (id !== undefined) {
        tokens.push(part);
        ids.push(id);
      } else {
        this.encodeText(part, tokens, ids);
      }
    }
    if (prefixed && tokens.length > 1 && tokens[0] === SPIECE_UNDERLINE && this.specialSet.has(tokens[1] as string)) {
      tokens.shift();
      ids.shift();
    }
  }

  tokenize(text: string): string[] {
    const tokens: string[] = [];
    this.tokenizeInto(text, tokens, []);
    return tokens;
  }

  encode(text: string, options: EncodeOptions = {}): Encoding {
    const tokens: string[] = [];
    const ids: number[] = [];
    this.tokenizeInto(text, tokens, ids);
    if ((options.addSpecialTokens ?? true) && ids[ids.length - 1] !== this.eosId) ids.push(this.eosId);
    return { ids, tokens: ids.map((id) => this.tokenOfId[id] as string) };
  }

  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.tokenOfId[id] : undefined;
  }

  tokenToId(token: string): number | undefined {
    return this.addedIds.get(token) ?? this.sp.findPiece(token);
  }

  /** T5Tokenizer.convert_tokens_to_string of 4.37.2. */
  private tokensToString(tokens: string[]): string {
    if (tokens[0]?.startsWith(SPIECE_UNDERLINE)) tokens[0] = tokens[0].slice(SPIECE_UNDERLINE.length);
    let out = '';
    let run: string[] = [];
    let prevSpecial = false;
    for (const token of tokens) {
      if (this.specialSet.has(token)) {
        if (!prevSpecial) out += ' ';
        out += this.sp.decodePieces(run) + token;
        prevSpecial = true;
        run = [];
      } else {
        run.push(token);
        prevSpecial = false;
      }
    }
    out += this.sp.decodePieces(run);
    return pyStrip(out);
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const subTexts: string[] = [];
    let run: string[] = [];
    for (const id of ids) {
      if (skip && this.specialIdSet.has(id)) continue;
      const token = this.idToToken(id);
      if (token === undefined) throw new TokenIdError(id, this.size);
      if (!this.legacyAdded.has(token)) {
        run.push(token);
        continue;
      }
      if (run.length > 0) {
        const text = this.tokensToString(run);
        if (text.length > 0) subTexts.push(text);
        run = [];
      }
      subTexts.push(token);
    }
    if (run.length > 0) subTexts.push(this.tokensToString(run));
    const text = subTexts.join(' ');
    return (options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) ? cleanUpTokenization(text) : text;
  }
}

/** Builds a T5 tokenizer from files already read (tests, or callers that fetched them). */
export function createT5Tokenizer(files: T5TokenizerFiles, options: T5TokenizerOptions = {}): T5Tokenizer {
  return new T5Tokenizer(files, options);
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioErrorFrom(err, path, 'read');
  }
}

function parseJson(bytes: Buffer | undefined, path: string): unknown {
  if (bytes === undefined) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Loads the tokenizer of a T5 / FLAN-T5 / FLAN-UL2 directory: spiece.model when present (as the slow
 * tokenizer does), else tokenizer.json, plus tokenizer_config.json, special_tokens_map.json and
 * added_tokens.json.
 */
export async function loadT5Tokenizer(dir: string, options: T5TokenizerOptions = {}): Promise<T5Tokenizer> {
  const path = (name: string): string => join(dir, name);
  const [spiece, configBytes, mapBytes, addedBytes] = await Promise.all([
    readOptional(path('spiece.model')),
    readOptional(path('tokenizer_config.json')),
    readOptional(path('special_tokens_map.json')),
    readOptional(path('added_tokens.json')),
  ]);
  const tokenizerConfig = parseJson(configBytes, path('tokenizer_config.json'));
  // tokenizer.json is the model without spiece.model, and otherwise only matters for the added-token
  // flags that transformers takes from it when tokenizer_config.json saved none.
  const needJson = spiece === undefined || !(isObject(tokenizerConfig) && isObject(tokenizerConfig.added_tokens_decoder));
  const jsonBytes = needJson ? await readOptional(path('tokenizer.json')) : undefined;
  if (spiece === undefined && jsonBytes === undefined) {
    throw new NotFoundError(`${dir} has neither spiece.model nor tokenizer.json`, {
      hint: 'download the tokenizer files of the model (FLAN-UL2 uses the FLAN-T5 spiece.model)',
    });
  }
  return new T5Tokenizer(
    {
      spieceModel: spiece === undefined ? undefined : new Uint8Array(spiece.buffer, spiece.byteOffset, spiece.byteLength),
      tokenizerJson: parseJson(jsonBytes, path('tokenizer.json')),
      tokenizerConfig,
      specialTokensMap: parseJson(mapBytes, path('special_tokens_map.json')),
      addedTokensJson: parseJson(addedBytes, path('added_tokens.json')),
    },
    options,
  );
}
