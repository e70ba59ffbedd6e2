/**
 * The parts of SentencePiece 0.1.97 `SentencePieceProcessor` that T5Tokenizer calls: `encode(text,
 * out_type=str)` (normalise, Viterbi, then `PopulateSentencePieceText`, which merges runs of unknown
 * pieces or expands them to byte pieces), `piece_to_id`, `IdToPiece` and `decode(pieces)`.
 */
import { FormatError, UnsupportedError } from '../../errors.js';
import { Normalizer } from './normalizer.js';
import { type ModelProto, ModelType, PieceType } from './proto.js';
import { UnigramModel } from './unigram.js';
import { decodeUtf8, Utf8Scratch } from './utf8.js';

const SPACE_SYMBOL = '\u2581';
const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

export interface ProcessorOptions {
  /** Overrides `normalizer_spec.add_dummy_prefix` (transformers' legacy=false re-serialises the model with false). */
  addDummyPrefix?: boolean;
  /** Names the model's source in error messages. */
  what?: string;
}

export interface EncodedPieces {
  pieces: string[];
  ids: number[];
}

function byteOfPiece(piece: string): number {
  const m = BYTE_PIECE.exec(piece);
  return m ? parseInt(m[1] as string, 16) : -1;
}

function byteToPiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

export class SentencePieceProcessor {
  /** Piece string of each id. */
  readonly pieces: readonly string[];
  readonly unkId: number;
  readonly normalizer: Normalizer;
  private readonly types: Uint8Array;
  /** NORMAL / USER_DEFINED / UNUSED pieces, and separately the reserved ones (CONTROL, UNKNOWN, BYTE). */
  private readonly normalIds = new Map<string, number>();
  private readonly reservedIds = new Map<string, number>();
  private readonly byteFallback: boolean;
  private readonly unkSurface: string;
  private readonly model: UnigramModel;
  private readonly scratch = new Utf8Scratch();

  constructor(proto: ModelProto, options: ProcessorOptions = {}) {
    const what = options.what ?? 'spiece.model';
    const { trainerSpec } = proto;
    if (trainerSpec.modelType !== ModelType.unigram) {
      throw new UnsupportedError(`${what}: SentencePiece model type ${trainerSpec.modelType} is not supported`, {
        hint: 'only Unigram models (T5, FLAN-T5, FLAN-UL2) are supported',
      });
    }
    this.byteFallback = trainerSpec.byteFallback;
    this.unkSurface = trainerSpec.unkSurface;
    this.pieces = proto.pieces.map((p) => p.piece);
    this.types = Uint8Array.from(proto.pieces, (p) => p.type);
    const userDefined: Uint8Array[] = [];
    proto.pieces.forEach((p, id) => {
      if (p.bytes.length === 0) throw new FormatError(`${what}: piece ${id} is empty`);
      const normal = p.type === PieceType.normal || p.type === PieceType.userDefined || p.type === PieceType.unused;
      const map = normal ? this.normalIds : this.reservedIds;
      if (map.has(p.piece)) throw new FormatError(`${what}: piece '${p.piece}' is defined twice`);
      map.set(p.piece, id);
      if (p.type === PieceType.userDefined) userDefined.push(p.bytes);
      if (p.type === PieceType.byte) {
        if (!this.byteFallback) throw new FormatError(`${what}: byte piece '${p.piece}' but byte_fallback is off`);
        if (byteOfPiece(p.piece) < 0) throw new FormatError(`${what}: invalid byte piece '${p.piece}'`);
      }
    });
    this.model = new UnigramModel(proto.pieces, what);
    this.unkId = this.model.unkId;
    const spec = { ...proto.normalizerSpec };
    if (options.addDummyPrefix !== undefined) spec.addDummyPrefix = options.addDummyPrefix;
    this.normalizer = new Normalizer({ spec, treatWhitespaceAsSuffix: trainerSpec.treatWhitespaceAsSuffix, userDefined });
  }

  get size(): number {
    return this.pieces.length;
  }

  /**
   * `piece_to_id(IdToPiece(id))` for every id: the id itself, unless a reserved piece has the same
   * string (reserved pieces are looked up first).
   */
  canonicalIds(): Int32Array {
    const ids = Int32Array.from(this.pieces, (_, i) => i);
    for (const [piece, reserved] of this.reservedIds) {
      const normal = this.normalIds.get(piece);
      if (normal !== undefined) ids[normal] = reserved;
    }
    return ids;
  }

  /** `piece_to_id`: reserved pieces first, then the vocabulary, else the unknown id. */
  pieceToId(piece: string): number {
    return this.reservedIds.get(piece) ?? this.normalIds.get(piece) ?? this.unkId;
  }

  /** The id of a piece of the vocabulary (reserved or not), or undefined where `piece_to_id` would give unk. */
  findPiece(piece: string): number | undefined {
    return this.reservedIds.get(piece) ?? this.normalIds.get(piece);
  }

  /** `IdToPiece`, or undefined where SentencePiece raises "piece id is out of range". */
  idToPiece(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.pieces[id] : undefined;
  }

  isControl(id: number): boolean {
    return this.types[id] === PieceType.control;
  }

  isUnknown(id: number): boolean {
    return this.types[id] === PieceType.unknown;
  }

  isByte(id: number): boolean {
    return this.types[id] === PieceType.byte;
  }

  normalize(text: string): string {
    return this.normalizer.normalize(text);
  }

  /** Appends the pieces of `sp.encode(text, out_type=str)` and their ids. */
  encodeInto(text: string, pieces: string[], ids: number[]): void {
    const n = this.scratch.encode(text);
    const len = this.normalizer.normalizeBytes(this.scratch.bytes, n);
    const normalized = this.normalizer.out;
    const count = this.model.encode(normalized, len);
    const { starts, ends, ids: pieceIds } = this.model;
    const unk = this.unkId;
    for (let i = 0; i < count; i++) {
      const id = pieceIds[i] as number;
      if (id !== unk) {
        pieces.push(this.pieces[id] as string);
        ids.push(id);
        continue;
      }
      const s = starts[i] as number;
      if (this.byteFallback) {
        for (let k = s; k < (ends[i] as number); k++) {
          const piece = byteToPiece(normalized[k] as number);
          pieces.push(piece);
          ids.push(this.pieceToId(piece));
        }
        continue;
      }
      // A run of unknown characters becomes one piece holding their normalised text.
      let e = ends[i] as number;
      while (i + 1 < count && pieceIds[i + 1] === unk) e = ends[++i] as number;
      pieces.push(decodeUtf8(normalized, s, e));
      ids.push(unk);
    }
  }

  encode(text: string): EncodedPieces {
    const result: EncodedPieces = { pieces: [], ids: [] };
    this.encodeInto(text, result.pieces, result.ids);
    return result;
  }

  /**
   * `decode(pieces)`: control pieces vanish, the `<unk>` piece prints the unknown surface, other
   * unknown strings are copied, byte pieces are re-assembled into UTF-8, and `▁` becomes a space, the
   * very first one dropped.
   */
  decodePieces(pieces: readonly string[]): string {
    const out: string[] = [];
    let empty = true;
    let bytes: number[] = [];
    const flushBytes = (): void => {
      if (bytes.length === 0) return;
      const text = decodeUtf8(Uint8Array.from(bytes));
      out.push(text);
      if (text.length > 0) empty = false;
      bytes = [];
    };
    for (const piece of pieces) {
      const id = this.pieceToId(piece);
      if (this.isByte(id)) {
        bytes.push(byteOfPiece(piece));
        continue;
      }
      flushBytes();
      let surface: string;
      if (this.isControl(id)) {
        surface = '';
      } else if (this.isUnknown(id)) {
        surface = this.pieces[id] === piece ? this.unkSurface : piece;
      } else {
        const body = empty && piece.startsWith(SPACE_SYMBOL) ? piece.slice(SPACE_SYMBOL.length) : piece;
        surface = body.replaceAll(SPACE_SYMBOL, ' ');
      }
      out.push(surface);
      if (surface.length > 0) empty = false;
    }
    flushBytes();
    return out.join('');
  }
}
