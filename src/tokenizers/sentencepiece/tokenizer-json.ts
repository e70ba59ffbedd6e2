/**
 * Reads a Hugging Face `tokenizer.json` whose model is Unigram (the fast-tokenizer serialisation of a
 * SentencePiece model) back into the ModelProto that produced it, so that the one SentencePiece
 * implementation serves both files and gives the same ids.
 *
 * Mapping (inverse of transformers' SpmConverter / T5Converter):
 * - `model.vocab` [piece, score] pairs are the pieces, minus the added tokens appended after them
 *   (T5's `<extra_id_N>`); `unk_id` marks the UNKNOWN piece; pieces that are special added tokens
 *   (`<pad>`, `</s>`) were CONTROL pieces and stay unmatchable.
 * - normalizer `Precompiled` carries the charsmap (base64); `Replace(" {2,}" → " ")` or a
 *   `WhitespaceSplit` pre-tokenizer means remove_extra_whitespaces; `Metaspace` (or `Prepend("▁")` with
 *   `Replace(" " → "▁")`) means escape_whitespaces and, with its prefix flag, add_dummy_prefix.
 */
import { FormatError, UnsupportedError } from '../../errors.js';
import { type AddedToken, addedTokensFromTokenizerJson } from '../added-tokens.js';
import { isObject, type JsonObject } from '../json-files.js';
import { defaultNormalizerSpec, defaultTrainerSpec, type ModelPiece, type ModelProto, PieceType } from './proto.js';
import { encodeUtf8 } from './utf8.js';

const SPACE_SYMBOL = '\u2581';

export interface TokenizerJsonModel {
  model: ModelProto;
  addedTokens: Array<AddedToken & { id: number }>;
}

function bool(v: unknown, fallback: boolean): boolean {
  return typeof v === 'boolean' ? v : fallback;
}

interface WhitespaceFlags {
  charsmap?: Uint8Array;
  removeExtra: boolean;
  escape: boolean;
  prefix: boolean;
}

function unsupported(what: string, part: string, node: JsonObject): UnsupportedError {
  return new UnsupportedError(`${what}: ${part} of type '${String(node.type)}' is not supported`, {
    hint: 'tfhf reads SentencePiece Unigram tokenizer.json files (T5 family); spiece.model is read when present',
  });
}

function readNormalizer(node: unknown, flags: WhitespaceFlags, what: string): void {
  if (node === null || node === undefined) return;
  if (!isObject(node)) throw new FormatError(`${what}: normalizer is not an object`);
  switch (node.type) {
    case 'Sequence': {
      const list = node.normalizers;
      if (!Array.isArray(list)) throw new FormatError(`${what}: normalizer Sequence without a list`);
      for (const n of list) readNormalizer(n, flags, what);
      return;
    }
    case 'Precompiled': {
      const b64 = node.precompiled_charsmap;
      if (b64 === null || b64 === undefined || b64 === '') return;
      if (typeof b64 !== 'string') throw new FormatError(`${what}: precompiled_charsmap is not a base64 string`);
      flags.charsmap = new Uint8Array(Buffer.from(b64, 'base64'));
      return;
    }
    case 'Replace': {
      const pattern = isObject(node.pattern) ? node.pattern : {};
      if (pattern.Regex === ' {2,}' && node.content === ' ') flags.removeExtra = true;
      else if (pattern.String === ' ' && node.content === SPACE_SYMBOL) flags.escape = true;
      else throw unsupported(what, `normalizer Replace(${JSON.stringify(pattern)} → ${JSON.stringify(node.content)})`, node);
      return;
    }
    case 'Prepend':
      if (node.prepend !== SPACE_SYMBOL) throw unsupported(what, 'normalizer Prepend', node);
      flags.prefix = true;
      return;
    default:
      throw unsupported(what, 'normalizer', node);
  }
}

function readPreTokenizer(node: unknown, flags: WhitespaceFlags, what: string): void {
  if (node === null || node === undefined) return;
  if (!isObject(node)) throw new FormatError(`${what}: pre_tokenizer is not an object`);
  switch (node.type) {
    case 'Sequence': {
      const list = node.pretokenizers;
      if (!Array.isArray(list)) throw new FormatError(`${what}: pre_tokenizer Sequence without a list`);
      for (const n of list) readPreTokenizer(n, flags, what);
      return;
    }
    case 'WhitespaceSplit':
      flags.removeExtra = true;
      return;
    case 'Metaspace': {
      if (node.replacement !== undefined && node.replacement !== SPACE_SYMBOL) throw unsupported(what, 'Metaspace replacement', node);
      flags.escape = true;
      // Older files say add_prefix_space, newer ones prepend_scheme ("always" / "first" / "never").
      if (typeof node.prepend_scheme === 'string') flags.prefix = flags.prefix || node.prepend_scheme !== 'never';
      else flags.prefix = flags.prefix || bool(node.add_prefix_space, true);
      return;
    }
    default:
      throw unsupported(what, 'pre_tokenizer', node);
  }
}

/** Converts a parsed tokenizer.json; `what` names it in error messages. */
export function modelFromTokenizerJson(json: unknown, what = 'tokenizer.json'): TokenizerJsonModel {
  if (!isObject(json)) throw new FormatError(`${what} is not a JSON object`);
  const model = json.model;
  if (!isObject(model)) throw new FormatError(`${what} has no model`);
  if (model.type !== undefined && model.type !== 'Unigram') throw unsupported(what, 'model', model);
  const vocab = model.vocab;
  if (!Array.isArray(vocab) || vocab.length === 0) {
    throw new UnsupportedError(`${what}: model has no Unigram vocabulary`, { hint: 'only SentencePiece Unigram tokenizers are supported' });
  }
  const unkId = model.unk_id;
  if (!Number.isInteger(unkId) || (unkId as number) < 0 || (unkId as number) >= vocab.length) {
    throw new FormatError(`${what}: Unigram unk_id is missing or out of range`);
  }
  const addedTokens = addedTokensFromTokenizerJson(json, what);
  const added = new Map(addedTokens.map((t) => [t.id, t]));

  // The SentencePiece vocabulary ends where the trailing run of added tokens (the sentinels) begins.
  let size = vocab.length;
  while (size > 0 && size - 1 !== unkId && added.has(size - 1)) size--;

  const pieces: ModelPiece[] = [];
  for (let id = 0; id < size; id++) {
    const entry: unknown = vocab[id];
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') {
      throw new FormatError(`${what}: vocab[${id}] is not a [piece, score] pair`);
    }
    const piece = entry[0];
    let type: number = PieceType.normal;
    if (id === unkId) type = PieceType.unknown;
    else if (added.get(id)?.special === true) type = PieceType.control;
    pieces.push({ piece, bytes: encodeUtf8(piece), score: Math.fround(entry[1]), type });
  }

  const flags: WhitespaceFlags = { removeExtra: false, escape: false, prefix: false };
  readNormalizer(json.normalizer, flags, what);
  readPreTokenizer(json.pre_tokenizer, flags, what);
  const normalizerSpec = defaultNormalizerSpec();
  normalizerSpec.name = 'tokenizer.json';
  normalizerSpec.precompiledCharsmap = flags.charsmap ?? new Uint8Array(0);
  normalizerSpec.addDummyPrefix = flags.prefix;
  normalizerSpec.removeExtraWhitespaces = flags.removeExtra;
  normalizerSpec.escapeWhitespaces = flags.escape;
  const trainerSpec = defaultTrainerSpec();
  trainerSpec.unkId = unkId as number;
  trainerSpec.byteFallback = bool(model.byte_fallback, false);
  if (trainerSpec.byteFallback) {
    pieces.forEach((p) => {
      if (/^<0x[0-9A-F]{2}>$/.test(p.piece) && p.type === PieceType.normal) p.type = PieceType.byte;
    });
  }
  return { model: { pieces, trainerSpec, normalizerSpec }, addedTokens };
}
