/**
 * Python 3.11 `str.lower()` and `unicodedata.normalize("NFC")` use Unicode 14 data, whereas Node.js follows its
 * own, newer ICU: code points assigned since then must be left alone, as Python leaves them.
 */
import { NON_PRINTING } from './charclasses.js';

/**
 * Code points that Unicode 14 leaves unassigned (so Python neither lower-cases, decomposes nor composes them,
 * and treats them as uncased starters) but that this Node.js assigns: its `C` class minus the running `\p{C}`.
 */
const NEWER_CLASS = `[[${NON_PRINTING.classBody}]--\\p{C}]`;
const NEWER_AT = new RegExp(NEWER_CLASS, 'vy');
const SPLIT_NEWER = new RegExp(`(${NEWER_CLASS})`, 'v');
/** Everything below U+0378, the first code point Unicode 14 leaves unassigned, is old enough. */
const FIRST_UNASSIGNED_IN_14 = 0x378;

function hasNewerThanUnicode14(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < FIRST_UNASSIGNED_IN_14) continue;
    NEWER_AT.lastIndex = i;
    if (NEWER_AT.test(text)) return true;
    if (c >= 0xd800 && c <= 0xdbff) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) i++;
    }
  }
  return false;
}

/**
 * Applies `op` only to the stretches between such code points, which is exactly how Python sees them: an
 * unassigned starter blocks composition, reordering and the final-sigma context on both sides.
 */
function withUnicode14View(text: string, op: (s: string) => string): string {
  if (!hasNewerThanUnicode14(text)) return op(text);
  const parts = text.split(SPLIT_NEWER);
  for (let i = 0; i < parts.length; i += 2) parts[i] = op(parts[i] as string);
  return parts.join('');
}

/** Python `str.lower()` (full case mapping with final sigma, Unicode 14). */
export function pyLower(text: string): string {
  return withUnicode14View(text, (s) => s.toLowerCase());
}

/** Python `unicodedata.normalize("NFC", text)` (Unicode 14). */
export function pyNfc(text: string): string {
  return withUnicode14View(text, (s) => s.normalize('NFC'));
}
