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
import { join } from 'node:path';
import { FormatError, NotFoundError, UsageError } from '../errors.js';
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
import { isObject, type JsonObject, parseJson, readTokenizerFile, topLevelValue } from './json-files.js';
import { pyStrip } from './python-str.js';
import { SentencePieceProcessor } from './sentencepiece/processor.js';
import { decodeModelProto } from './sentencepiece/proto.js';
import { modelFromTokenizerJson } from './sentencepiece/tokenizer-json.js';
import type { DecodeOptions, EncodeOptions, Encoding, SpecialTokenIds, Tokenizer } from './tokenizer.js';

const SPIECE_UNDERLINE = '\u2581';

/** The files of a model directory that shape the tokenizer, already read; absent ones undefined. */
export interface T5TokenizerFiles {
  /** `spiece.model` bytes; preferred over tokenizer.json, as transformers' slow tokenizer does. */
  spieceModel?: Uint8Array | undefined;
  /**
   * Parsed `tokenizer.json`: the model when there is no spiece.model, and legacy added-token flags (beside
   * spiece.model, an object holding only its `added_tokens` is enough).
   */
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

const T5_DEFAULTS: Partial<Record<SpecialAttribute, string>> = { eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>' };

/**
 * T5Tokenizer.__init__'s sentinels: `<extra_id_0>`… appended to the additional special tokens unless they
 * already name some, and class defaults (lstrip/rstrip) at ids sp_size + extra_ids - 1 - i.
 */
function sentinels(config: JsonObject, given: AddedToken[], spSize: number): { additional: AddedToken[]; defaults: Map<number, AddedToken> } {
  const extraIds = config.extra_ids ?? 100;
  if (typeof extraIds !== 'number' || !Number.isInteger(extraIds) || extraIds < 0) {
    throw new FormatError('tokenizer_config.json extra_ids is not a non-negative integer');
  }
  const generated = (): AddedToken[] => Array.from({ length: extraIds }, (_, i) => parseAddedToken(`<extra_id_${i}>`, true, 'sentinel'));
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
  private readonly splitter: AddedTokenSplitter;
  private readonly specialSet: Set<string>;
  private readonly decodeSource: DecodeSource;
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
    const settings = specialTokenSettings(T5_DEFAULTS, config, files.specialTokensMap as JsonObject | undefined);

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

    const { additional, defaults } = sentinels(config, settings.additional ?? [], spSize);

    const specialList = specialTokensInOrder(settings.single, additional);
    this.specialTokens = specialList.map((t) => t.content);
    this.specialSet = new Set(this.specialTokens);

    // T5's get_vocab() runs convert_ids_to_tokens over the pieces, so an added token takes its id's place.
    const pieceVocab = (saved: ReadonlyMap<number, AddedToken>): Map<string, number> => {
      const vocab = new Map<string, number>();
      this.sp.pieces.forEach((piece, i) => vocab.set(saved.get(i)?.content ?? piece, i));
      return vocab;
    };
    const { added, addedIds } = initAddedTokens(config, files, specialList, pieceVocab, defaults);
    this.addedIds = addedIds;
    this.splitter = new AddedTokenSplitter(added.values());

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
    const idOfToken = (t: string): number => this.convertTokenToId(t);
    this.decodeSource = {
      tokenOf: (id) => {
        const token = this.idToToken(id);
        if (token === undefined) throw new TokenIdError(id, this.size);
        return token;
      },
      specialIds: new Set(this.specialTokens.map(idOfToken)),
      legacyAdded: legacyAddedTokens(addedIds.keys(), this.specialSet, additional.map((t) => t.content), idOfToken, spSize),
      convertTokensToString: (tokens) => this.tokensToString(tokens),
    };

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
    const cleanUp = options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces;
    return decodeIds(this.decodeSource, ids, options.skipSpecialTokens ?? false, cleanUp);
  }
}

/** Builds a T5 tokenizer from files already read (tests, or callers that fetched them). */
export function createT5Tokenizer(files: T5TokenizerFiles, options: T5TokenizerOptions = {}): T5Tokenizer {
  return new T5Tokenizer(files, options);
}

/**
 * Loads the tokenizer of a T5 / FLAN-T5 / FLAN-UL2 directory: spiece.model when present (as the slow
 * tokenizer does), else tokenizer.json, plus tokenizer_config.json, special_tokens_map.json and
 * added_tokens.json.
 */
export async function loadT5Tokenizer(dir: string, options: T5TokenizerOptions = {}): Promise<T5Tokenizer> {
  const path = (name: string): string => join(dir, name);
  const [spiece, configBytes, mapBytes, addedBytes] = await Promise.all([
    readTokenizerFile(path('spiece.model')),
    readTokenizerFile(path('tokenizer_config.json')),
    readTokenizerFile(path('special_tokens_map.json')),
    readTokenizerFile(path('added_tokens.json')),
  ]);
  const tokenizerConfig = parseJson(configBytes, path('tokenizer_config.json'));
  // tokenizer.json is the model without spiece.model, and otherwise only matters for the added-token
  // flags that transformers takes from it when tokenizer_config.json saved none.
  const needJson = spiece === undefined || !(isObject(tokenizerConfig) && isObject(tokenizerConfig.added_tokens_decoder));
  const jsonBytes = needJson ? await readTokenizerFile(path('tokenizer.json')) : undefined;
  if (spiece === undefined && jsonBytes === undefined) {
    throw new NotFoundError(`${dir} has neither spiece.model nor tokenizer.json`, {
      hint: 'download the tokenizer files of the model (FLAN-UL2 uses the FLAN-T5 spiece.model)',
    });
  }
  let tokenizerJson: unknown;
  if (spiece !== undefined && jsonBytes !== undefined) {
    const picked = topLevelValue(jsonBytes, 'added_tokens');
    tokenizerJson = picked === undefined ? parseJson(jsonBytes, path('tokenizer.json')) : { added_tokens: picked.value };
  } else {
    tokenizerJson = parseJson(jsonBytes, path('tokenizer.json'));
  }
  return new T5Tokenizer(
    {
      spieceModel: spiece === undefined ? undefined : new Uint8Array(spiece.buffer, spiece.byteOffset, spiece.byteLength),
      tokenizerJson,
      tokenizerConfig,
      specialTokensMap: parseJson(mapBytes, path('special_tokens_map.json')),
      addedTokensJson: parseJson(addedBytes, path('added_tokens.json')),
    },
    options,
  );
}
