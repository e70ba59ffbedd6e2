/**
 * SentencePiece 0.1.97 `Normalizer::Normalize` on UTF-8 bytes: user-defined symbols first, then the
 * longest charsmap rule, else one character unchanged; leading, repeated and trailing whitespace rules;
 * the dummy prefix; spaces written as U+2581. Not Unicode NFKC: the charsmap data decides everything.
 */
import { CharsMap } from './charsmap.js';
import type { NormalizerSpec } from './proto.js';
import { ByteTrie } from './trie.js';
import { decodeUtf8, Utf8Scratch, validCharLen } from './utf8.js';

const SPACE = 0x20;
const REPLACEMENT_CHAR = new Uint8Array([0xef, 0xbf, 0xbd]);
/** PrefixMatcher keeps this many results (`PrefixMatcher::PrefixMatch`). */
const MAX_USER_MATCHES = 64;

export interface NormalizerOptions {
  spec: NormalizerSpec;
  treatWhitespaceAsSuffix?: boolean;
  /** UTF-8 strings of the USER_DEFINED pieces: copied through unchanged, ahead of the charsmap. */
  userDefined?: readonly Uint8Array[];
}

export class Normalizer {
  /** Output of the last `normalizeBytes` call (valid up to the returned length). */
  out = new Uint8Array(1024);
  private readonly charsMap: CharsMap | undefined;
  private readonly userTrie: ByteTrie | undefined;
  private readonly addDummyPrefix: boolean;
  private readonly removeExtraWhitespaces: boolean;
  private readonly escapeWhitespaces: boolean;
  private readonly suffix: boolean;
  private readonly scratch = new Utf8Scratch();
  // Result of the last `prefix` call: the replacement is buf[start..end).
  private rBuf: Uint8Array = REPLACEMENT_CHAR;
  private rStart = 0;
  private rEnd = 0;

  constructor(options: NormalizerOptions) {
    const { spec } = options;
    this.charsMap = spec.precompiledCharsmap.length > 0 ? new CharsMap(spec.precompiledCharsmap) : undefined;
    const user = options.userDefined ?? [];
    this.userTrie = user.length > 0 ? new ByteTrie(user.map((bytes) => ({ bytes, value: 0 }))) : undefined;
    this.addDummyPrefix = spec.addDummyPrefix;
    this.removeExtraWhitespaces = spec.removeExtraWhitespaces;
    this.escapeWhitespaces = spec.escapeWhitespaces;
    this.suffix = options.treatWhitespaceAsSuffix ?? false;
  }

  /** `NormalizePrefix`: sets the replacement view and returns how many input bytes it consumes. */
  private prefix(src: Uint8Array, pos: number, end: number): number {
    if (this.userTrie !== undefined) {
      let node = 0;
      let found = 0;
      let longest = 0;
      for (let i = pos; i < end; i++) {
        node = this.userTrie.next(node, src[i] as number);
        if (node < 0) break;
        if ((this.userTrie.values[node] as number) >= 0) {
          if (found < MAX_USER_MATCHES) longest = i + 1 - pos;
          found++;
        }
      }
      if (longest > 0) {
        this.rBuf = src;
        this.rStart = pos;
        this.rEnd = pos + longest;
        return longest;
      }
    }
    if (this.charsMap !== undefined) {
      const len = this.charsMap.longestMatch(src, pos, end);
      if (len > 0) {
        const offset = this.charsMap.matchOffset;
        this.rBuf = this.charsMap.pool;
        this.rStart = offset;
        this.rEnd = this.charsMap.replacementEnd(offset);
        return len;
      }
    }
    const len = validCharLen(src, pos, end);
    if (len === 0) {
      // Malformed UTF-8: emit U+FFFD but consume a single byte, bypassing the charsmap.
      this.rBuf = REPLACEMENT_CHAR;
      this.rStart = 0;
      this.rEnd = 3;
      return 1;
    }
    this.rBuf = src;
    this.rStart = pos;
    this.rEnd = pos + len;
    return len;
  }

  private reserve(size: number): void {
    if (this.out.length >= size) return;
    const grown = new Uint8Array(Math.max(size, this.out.length * 2));
    grown.set(this.out);
    this.out = grown;
  }

  /** Normalises `src[0..n)` into `this.out`; returns the output length in bytes. */
  normalizeBytes(src: Uint8Array, n: number): number {
    const rm = this.removeExtraWhitespaces;
    const esc = this.escapeWhitespaces;
    let pos = 0;
    if (rm) {
      while (pos < n) {
        const consumed = this.prefix(src, pos, n);
        if (this.rEnd - this.rStart !== 1 || this.rBuf[this.rStart] !== SPACE) break;
        pos += consumed;
      }
    }
    if (pos >= n) return 0;

    // Worst case without long replacements: every byte a space written as 3 bytes, plus the prefix.
    this.reserve((n - pos) * 3 + 6);
    let len = 0;
    const writeSpace = (): void => {
      if (esc) {
        this.out[len++] = 0xe2;
        this.out[len++] = 0x96;
        this.out[len++] = 0x81;
      } else {
        this.out[len++] = SPACE;
      }
    };
    if (this.addDummyPrefix && !this.suffix) writeSpace();

    let prevSpace = rm;
    while (pos < n) {
      const consumed = this.prefix(src, pos, n);
      const buf = this.rBuf;
      let s = this.rStart;
      const e = this.rEnd;
      if (prevSpace) while (s < e && buf[s] === SPACE) s++;
      if (s < e) {
        this.reserve(len + (e - s) * 3 + (n - pos) * 3 + 6);
        const out = this.out;
        for (let k = s; k < e; k++) {
          const b = buf[k] as number;
          if (b === SPACE && esc) {
            out[len++] = 0xe2;
            out[len++] = 0x96;
            out[len++] = 0x81;
          } else {
            out[len++] = b;
          }
        }
        prevSpace = buf[e - 1] === SPACE;
      }
      pos += consumed;
      if (!rm) prevSpace = false;
    }

    if (rm) {
      const out = this.out;
      if (esc) {
        while (len >= 3 && out[len - 3] === 0xe2 && out[len - 2] === 0x96 && out[len - 1] === 0x81) len -= 3;
      } else {
        while (len >= 1 && out[len - 1] === SPACE) len -= 1;
      }
    }
    if (this.addDummyPrefix && this.suffix) {
      this.reserve(len + 3);
      writeSpace();
    }
    return len;
  }

  /** The whole normaliser on a JS string (tests, debugging); the encoder works on bytes directly. */
  normalize(text: string): string {
    const n = this.scratch.encode(text);
    const len = this.normalizeBytes(this.scratch.bytes, n);
    return decodeUtf8(this.out, 0, len);
  }
}

