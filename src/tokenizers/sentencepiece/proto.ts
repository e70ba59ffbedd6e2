/**
 * Reads `spiece.model`: the protobuf `sentencepiece.ModelProto` (proto2) of SentencePiece 0.1.97
 * (`src/sentencepiece_model.proto`). Only the fields that encoding and decoding use are kept; every other
 * field is skipped by wire type. Absent fields take the .proto defaults, several of which are `true`
 * and are relied on by the real T5 file (`escape_whitespaces` is not stored there).
 */
import { FormatError } from '../../errors.js';

/** `ModelProto.SentencePiece.Type`. */
export const PieceType = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;
export type PieceTypeValue = (typeof PieceType)[keyof typeof PieceType];

/** `TrainerSpec.ModelType`. */
export const ModelType = { unigram: 1, bpe: 2, word: 3, char: 4 } as const;

export interface ModelPiece {
  piece: string;
  /** The piece's UTF-8 bytes as stored (the matching trie is keyed on these, not on `piece`). */
  bytes: Uint8Array;
  /** A float32 value. */
  score: number;
  type: number;
}

export interface TrainerSpec {
  modelType: number;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  /** What `decode` prints for the `<unk>` piece itself. */
  unkSurface: string;
}

export interface NormalizerSpec {
  name: string;
  /** Empty means: no character map. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface ModelProto {
  pieces: ModelPiece[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
}

export function defaultTrainerSpec(): TrainerSpec {
  return {
    modelType: ModelType.unigram,
    treatWhitespaceAsSuffix: false,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkSurface: ' \u2047 ',
  };
}

export function defaultNormalizerSpec(): NormalizerSpec {
  return {
    name: '',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const utf8 = new TextDecoder('utf-8');

class Reader {
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    start: number,
    readonly end: number,
    private readonly what: string,
    private readonly view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
  ) {
    this.pos = start;
  }

  fail(message: string): never {
    throw new FormatError(`${this.what}: ${message} at byte ${this.pos}`, {
      hint: 'the SentencePiece model file is damaged or not a spiece.model',
    });
  }

  /**
   * Low 32 bits of a varint (int32 fields store negatives as 10-byte sign-extended varints, so the low
   * word read as signed is the value) and whether any higher bit was set.
   */
  varint(): { lo: number; high: boolean } {
    let lo = 0;
    let high = false;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++] as number;
      const bits = b & 0x7f;
      if (shift < 32) {
        lo |= bits << shift;
        if (shift + 7 > 32 && bits >>> (32 - shift) !== 0) high = true;
      } else if (bits !== 0) {
        high = true;
      }
      if ((b & 0x80) === 0) return { lo: lo >>> 0, high };
    }
    return this.fail('varint longer than 10 bytes');
  }

  int32(): number {
    return this.varint().lo | 0;
  }

  bool(): boolean {
    const v = this.varint();
    return v.lo !== 0 || v.high;
  }

  /** Bounds of a length-delimited field's payload; advances past it. */
  delimited(): [number, number] {
    const { lo, high } = this.varint();
    if (high || lo > this.end - this.pos) this.fail('length-delimited field runs past its message');
    const start = this.pos;
    this.pos += lo;
    return [start, this.pos];
  }

  string(): string {
    const [s, e] = this.delimited();
    return utf8.decode(this.buf.subarray(s, e));
  }

  bytes(): Uint8Array {
    const [s, e] = this.delimited();
    return this.buf.subarray(s, e);
  }

  float(): number {
    if (this.end - this.pos < 4) this.fail('truncated float');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        if (this.end - this.pos < 8) this.fail('truncated fixed64');
        this.pos += 8;
        return;
      case WIRE_LEN:
        this.delimited();
        return;
      case WIRE_FIXED32:
        if (this.end - this.pos < 4) this.fail('truncated fixed32');
        this.pos += 4;
        return;
      default:
        this.fail(`unsupported wire type ${wire}`);
    }
  }

  /** Iterates the fields of the current message, calling `onField` with the field number and wire type. */
  fields(onField: (field: number, wire: number) => boolean): void {
    while (this.pos < this.end) {
      const key = this.varint();
      if (key.high) this.fail('field number out of range');
      const field = key.lo >>> 3;
      const wire = key.lo & 7;
      if (field === 0) this.fail('field number 0');
      if (!onField(field, wire)) this.skip(wire);
    }
  }

  sub(what: string): Reader {
    const [s, e] = this.delimited();
    return new Reader(this.buf, s, e, what, this.view);
  }
}

function readPiece(r: Reader): ModelPiece {
  let bytes: Uint8Array | undefined;
  let score = 0;
  let type: number = PieceType.normal;
  r.fields((field, wire) => {
    if (field === 1 && wire === WIRE_LEN) {
      bytes = r.bytes();
    } else if (field === 2 && wire === WIRE_FIXED32) {
      score = r.float();
    } else if (field === 3 && wire === WIRE_VARINT) {
      // proto2 keeps an unknown enum value as an unknown field, so the piece stays NORMAL.
      const v = r.int32();
      if (v >= PieceType.normal && v <= PieceType.byte) type = v;
    } else {
      return false;
    }
    return true;
  });
  if (bytes === undefined) r.fail('piece without a string');
  return { piece: utf8.decode(bytes), bytes, score, type };
}

function readTrainerSpec(r: Reader, spec: TrainerSpec): void {
  r.fields((field, wire) => {
    if (wire === WIRE_VARINT && field === 3) spec.modelType = r.int32();
    else if (wire === WIRE_VARINT && field === 24) spec.treatWhitespaceAsSuffix = r.bool();
    else if (wire === WIRE_VARINT && field === 35) spec.byteFallback = r.bool();
    else if (wire === WIRE_VARINT && field === 40) spec.unkId = r.int32();
    else if (wire === WIRE_VARINT && field === 41) spec.bosId = r.int32();
    else if (wire === WIRE_VARINT && field === 42) spec.eosId = r.int32();
    else if (wire === WIRE_VARINT && field === 43) spec.padId = r.int32();
    else if (wire === WIRE_LEN && field === 44) spec.unkSurface = r.string();
    else return false;
    return true;
  });
}

function readNormalizerSpec(r: Reader, spec: NormalizerSpec): void {
  r.fields((field, wire) => {
    if (wire === WIRE_LEN && field === 1) spec.name = r.string();
    else if (wire === WIRE_LEN && field === 2) spec.precompiledCharsmap = r.bytes();
    else if (wire === WIRE_VARINT && field === 3) spec.addDummyPrefix = r.bool();
    else if (wire === WIRE_VARINT && field === 4) spec.removeExtraWhitespaces = r.bool();
    else if (wire === WIRE_VARINT && field === 5) spec.escapeWhitespaces = r.bool();
    else return false;
    return true;
  });
}

/**
 * Decodes a serialized ModelProto. `what` names the source in error messages. The returned byte
 * fields are views into `bytes`, which must therefore stay unchanged.
 */
export function decodeModelProto(bytes: Uint8Array, what = 'spiece.model'): ModelProto {
  const r = new Reader(bytes, 0, bytes.length, what);
  const pieces: ModelPiece[] = [];
  const trainerSpec = defaultTrainerSpec();
  const normalizerSpec = defaultNormalizerSpec();
  // A singular message field that occurs twice is merged field by field (proto2 rule), hence the shared objects.
  r.fields((field, wire) => {
    if (wire !== WIRE_LEN) return false;
    if (field === 1) pieces.push(readPiece(r.sub(what)));
    else if (field === 2) readTrainerSpec(r.sub(what), trainerSpec);
    else if (field === 3) readNormalizerSpec(r.sub(what), normalizerSpec);
    else return false;
    return true;
  });
  if (pieces.length === 0) {
    throw new FormatError(`${what} has no vocabulary pieces`, { hint: 'the file is empty or not a SentencePiece model' });
  }
  return { pieces, trainerSpec, normalizerSpec };
}
