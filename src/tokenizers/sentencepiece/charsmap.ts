/**
 * The `precompiled_charsmap` of a SentencePiece normaliser: a darts-clone double array whose keys are
 * UTF-8 strings, each mapped to a NUL-terminated replacement in a string pool
 * (SentencePiece `normalizer.cc` `DecodePrecompiledCharsMap`, `third_party/darts_clone/darts.h`).
 *
 * Blob layout: uint32 LE trie size T, then T bytes of 32-bit units, then the string pool.
 */
import { FormatError } from '../../errors.js';

/** SentencePiece keeps at most this many prefix matches per position (`kMaxTrieResultsSize`). */
const MAX_RESULTS = 32;

export class CharsMap {
  private readonly units: Uint32Array;
  /** The string pool: replacements, each ended by a NUL byte. */
  readonly pool: Uint8Array;
  /** Pool offset of the last successful `longestMatch`. */
  matchOffset = 0;

  constructor(blob: Uint8Array, what = 'precompiled_charsmap') {
    const broken = (why: string): FormatError =>
      new FormatError(`${what} is broken: ${why}`, { hint: 'the SentencePiece model file is damaged' });
    if (blob.length <= 4) throw broken('shorter than its header');
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieSize = view.getUint32(0, true);
    if (trieSize >= blob.length) throw broken('trie size exceeds the blob');
    const count = Math.floor(trieSize / 4);
    // Copied unit by unit: the blob is a view into the model file and need not be 4-byte aligned.
    this.units = new Uint32Array(count);
    for (let i = 0; i < count; i++) this.units[i] = view.getUint32(4 + i * 4, true);
    this.pool = blob.subarray(4 + trieSize);
  }

  /**
   * darts-clone `commonPrefixSearch` over `key[pos..end)`, keeping the longest of the first 32 matches.
   * Returns the matched length in bytes (0 if none) and sets `matchOffset` to its pool offset.
   */
  longestMatch(key: Uint8Array, pos: number, end: number): number {
    const units = this.units;
    let unit = units[0] as number;
    // offset(u) = (u >> 10) << ((u & 0x200) >> 6); `>>> 0` because the shifted offset may exceed 2^31.
    let node = ((unit >>> 10) << ((unit & 0x200) >>> 6)) >>> 0;
    let found = 0;
    let best = 0;
    for (let i = pos; i < end; i++) {
      const c = key[i] as number;
      node = (node ^ c) >>> 0;
      unit = units[node] ?? 0;
      // label(u) = u & 0x800000FF: a leaf unit has bit 31 set and never equals a byte.
      if (((unit & 0x800000ff) >>> 0) !== c) break;
      node = (node ^ ((unit >>> 10) << ((unit & 0x200) >>> 6))) >>> 0;
      if ((unit >>> 8) & 1) {
        if (found < MAX_RESULTS) {
          best = i + 1 - pos;
          this.matchOffset = (units[node] ?? 0) & 0x7fffffff;
        }
        found++;
      }
    }
    return best;
  }

  /** End (exclusive) of the NUL-terminated replacement starting at `offset` in the pool. */
  replacementEnd(offset: number): number {
    const pool = this.pool;
    let e = offset;
    while (e < pool.length && pool[e] !== 0) e++;
    return e;
  }
}
