/**
 * UTF-8 rules as SentencePiece 0.1.97 applies them (`util.h` / `util.cc`: `OneCharLen`, `DecodeUTF8`,
 * `IsValidDecodeUTF8`). They differ from WHATWG decoding on malformed input, which is why they are
 * spelled out here rather than left to TextDecoder.
 */

/** Lead-byte length table of `OneCharLen`: continuation bytes count as 1, so a walk never stalls. */
const ONE_CHAR_LEN = new Uint8Array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4]);

export function oneCharLen(leadByte: number): number {
  return ONE_CHAR_LEN[leadByte >>> 4] as number;
}

function isTrail(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

function isScalar(cp: number): boolean {
  return cp < 0xd800 || (cp >= 0xe000 && cp <= 0x10ffff);
}

/**
 * Length of the well-formed character at `pos`, or 0 when the bytes there are malformed (the caller then
 * consumes one byte and emits U+FFFD, as the normaliser does).
 */
export function validCharLen(bytes: Uint8Array, pos: number, end: number): number {
  const b0 = bytes[pos] as number;
  if (b0 < 0x80) return 1;
  const avail = end - pos;
  if (avail >= 2 && (b0 & 0xe0) === 0xc0) {
    const b1 = bytes[pos + 1] as number;
    const cp = ((b0 & 0x1f) << 6) | (b1 & 0x3f);
    return isTrail(b1) && cp >= 0x80 ? 2 : 0;
  }
  if (avail >= 3 && (b0 & 0xf0) === 0xe0) {
    const b1 = bytes[pos + 1] as number;
    const b2 = bytes[pos + 2] as number;
    const cp = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
    return isTrail(b1) && isTrail(b2) && cp >= 0x800 && isScalar(cp) ? 3 : 0;
  }
  if (avail >= 4 && (b0 & 0xf8) === 0xf0) {
    const b1 = bytes[pos + 1] as number;
    const b2 = bytes[pos + 2] as number;
    const b3 = bytes[pos + 3] as number;
    const cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
    return isTrail(b1) && isTrail(b2) && isTrail(b3) && cp >= 0x10000 && isScalar(cp) ? 4 : 0;
  }
  return 0;
}

const decoder = new TextDecoder('utf-8');

/** Decodes bytes that SentencePiece would copy through: malformed bytes become one U+FFFD each. */
export function decodeUtf8(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let clean = true;
  for (let i = start; i < end; ) {
    const len = validCharLen(bytes, i, end);
    if (len === 0) {
      clean = false;
      break;
    }
    i += len;
  }
  if (clean) return decoder.decode(bytes.subarray(start, end));
  const parts: string[] = [];
  let run = start;
  for (let i = start; i < end; ) {
    const len = validCharLen(bytes, i, end);
    if (len === 0) {
      if (run < i) parts.push(decoder.decode(bytes.subarray(run, i)));
      parts.push('\ufffd');
      i += 1;
      run = i;
    } else {
      i += len;
    }
  }
  if (run < end) parts.push(decoder.decode(bytes.subarray(run, end)));
  return parts.join('');
}

const encoder = new TextEncoder();

export function encodeUtf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * A growable byte buffer reused across calls, so encoding a line allocates nothing once warmed up.
 * `encodeInto` never writes more than 3 bytes per UTF-16 code unit.
 */
export class Utf8Scratch {
  bytes = new Uint8Array(1024);

  encode(text: string): number {
    const need = text.length * 3;
    if (this.bytes.length < need) this.bytes = new Uint8Array(Math.max(need, this.bytes.length * 2));
    return encoder.encodeInto(text, this.bytes).written;
  }
}
