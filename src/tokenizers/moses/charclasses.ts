/**
 * The character sets sacremoses 0.1.1 and transformers' FlauBERT preprocessing test against, as code-point
 * sets usable both as predicates and inside `u`-flag regular expressions. The data is pinned (see
 * charclass-tables.ts) instead of `\p{…}` because the Node.js Unicode version drifts from the Perl and
 * Python 3.11 (Unicode 14) data the reference outputs were made with.
 */
import { IS_ALNUM, IS_ALPHA, IS_LOWER, IS_N, PY_CATEGORY_C, PY_ND } from './charclass-tables.js';

export type CodePointRange = readonly [first: number, last: number];

export function decodeRanges(table: string): CodePointRange[] {
  const out: CodePointRange[] = [];
  let next = 0;
  for (const token of table.split(/\s+/)) {
    if (token === '') continue;
    const dot = token.indexOf('.');
    const gap = parseInt(dot < 0 ? token : token.slice(0, dot), 36);
    const span = dot < 0 ? 0 : parseInt(token.slice(dot + 1), 36);
    const first = next + gap;
    out.push([first, first + span]);
    next = first + span + 1;
  }
  return out;
}

function escapeCodePoint(cp: number): string {
  return `\\u{${cp.toString(16)}}`;
}

export class CodePointSet {
  /** Body of a regex character class (no brackets) matching exactly this set; needs the `u` flag. */
  readonly classBody: string;
  /** One bit per BMP code point: the per-character tests of the pipeline mostly see BMP text. */
  private readonly bmp = new Uint8Array(0x10000 / 8);
  private readonly firsts: Uint32Array;
  private readonly lasts: Uint32Array;

  constructor(readonly ranges: readonly CodePointRange[]) {
    this.firsts = Uint32Array.from(ranges, (r) => r[0]);
    this.lasts = Uint32Array.from(ranges, (r) => r[1]);
    this.classBody = ranges
      .map(([a, b]) => (a === b ? escapeCodePoint(a) : `${escapeCodePoint(a)}-${escapeCodePoint(b)}`))
      .join('');
    for (const [a, b] of ranges) {
      for (let cp = a; cp <= Math.min(b, 0xffff); cp++) {
        this.bmp[cp >>> 3] = (this.bmp[cp >>> 3] as number) | (1 << (cp & 7));
      }
    }
  }

  has(cp: number): boolean {
    if (cp < 0x10000) return (((this.bmp[cp >>> 3] as number) >>> (cp & 7)) & 1) === 1;
    let lo = 0;
    let hi = this.firsts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cp < (this.firsts[mid] as number)) hi = mid - 1;
      else if (cp > (this.lasts[mid] as number)) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** True when any code point of `text` is in the set (sacremoses `isanyalpha`). */
  hasAny(text: string): boolean {
    for (const ch of text) if (this.has(ch.codePointAt(0) as number)) return true;
    return false;
  }
}

/** sacremoses `MosesTokenizer.IsAlnum`: what PAD_NOT_ISALNUM leaves unpadded. */
export const ALNUM = new CodePointSet(decodeRanges(IS_ALNUM));
/** sacremoses `MosesTokenizer.IsAlpha`: the French apostrophe rules and the prefix test. */
export const ALPHA = new CodePointSet(decodeRanges(IS_ALPHA));
/** sacremoses `MosesTokenizer.IsN`: the comma rules. */
export const NUMERIC = new CodePointSet(decodeRanges(IS_N));
/** sacremoses `MosesTokenizer.IsLower`: "next token starts lower-case" in the prefix test. */
export const LOWER = new CodePointSet(decodeRanges(IS_LOWER));
/** Python `\d` (category Nd, Unicode 14): the normaliser's digit rules. */
export const DIGIT = new CodePointSet(decodeRanges(PY_ND));
/** Python category C* (Unicode 14, unassigned included): what `remove_non_printing_char` deletes. */
export const NON_PRINTING = new CodePointSet(decodeRanges(PY_CATEGORY_C));

/**
 * Python's whitespace (`\s` in the reference regexes); `isPyWhitespace` of ../python-str.ts tests the same set
 * one code unit at a time.
 */
export const WHITESPACE = new CodePointSet([
  [0x09, 0x0d],
  [0x1c, 0x20],
  [0x85, 0x85],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
]);
