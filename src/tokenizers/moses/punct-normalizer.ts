/**
 * Punctuation normalisation of FlauBERT's `moses_pipeline` (transformers 4.37 `tokenization_flaubert.py`):
 * `replace_unicode_punct`, then sacremoses 0.1.1 `MosesPunctNormalizer(lang="fr").normalize` with its
 * defaults (penn, quote/comma and number rules on, no pre/post steps, no perl parity), then
 * `remove_non_printing_char`. Rule numbers refer to shared/docs/tokenizers.md §C.1.
 *
 * Every rule is one Python `re.sub` pass; JS `replace` with the `g` flag scans the same way (leftmost,
 * non-overlapping, resuming after each match), so the rules are kept one regex each and in order: merging them
 * would change what earlier replacements expose to later ones.
 */
import { DIGIT, NON_PRINTING, WHITESPACE } from './charclasses.js';
import { pyStrip } from '../python-str.js';

/** A rule only runs when its trigger occurs in the text: a cheap `includes` skips most of the 45 passes. */
type Rule = readonly [pattern: RegExp, replacement: string, trigger: string];

const ND = `[${DIGIT.classBody}]`;
const NBSP = '\u00a0';

const FRENCH_RULES: readonly Rule[] = [
  // EXTRA_WHITESPACE (rules 1–10)
  [/\r/g, '', '\r'],
  [/\(/g, ' (', '('],
  [/\)/g, ') ', ')'],
  // ` +` → ` ` only changes runs of two or more spaces.
  [/ +/g, ' ', '  '],
  [/\) ([.!:?;,])/g, ')$1', ') '],
  [/\( /g, '(', '( '],
  [/ \)/g, ')', ' )'],
  [new RegExp(`(${ND}) %`, 'gu'), '$1%', ' %'],
  [/ :/g, ':', ' :'],
  [/ ;/g, ';', ' ;'],
  // NORMALIZE_UNICODE_IF_NOT_PENN, inserted because penn is true (11–12)
  [/`/g, "'", '`'],
  [/''/g, ' " ', "''"],
  // NORMALIZE_UNICODE (13–27)
  [/„/g, '"', '„'],
  [/“/g, '"', '“'],
  [/”/g, '"', '”'],
  [/–/g, '-', '–'],
  [/—/g, ' - ', '—'],
  [/ +/g, ' ', '  '],
  [/´/g, "'", '´'],
  [/([a-zA-Z])‘([a-zA-Z])/g, "$1'$2", '‘'],
  [/([a-zA-Z])’([a-zA-Z])/g, "$1'$2", '’'],
  [/‘/g, "'", '‘'],
  [/‚/g, "'", '‚'],
  [/’/g, "'", '’'],
  [/''/g, '"', "''"],
  // Rule 26 (´´ → ") can never match after rule 19 and is left out.
  [/…/g, '...', '…'],
  // FRENCH_QUOTES (28–33)
  [/\u00a0«\u00a0/g, '"', '«'],
  [/«\u00a0/g, '"', '«'],
  [/«/g, '"', '«'],
  [/\u00a0»\u00a0/g, '"', '»'],
  [/\u00a0»/g, '"', '»'],
  [/»/g, '"', '»'],
  // HANDLE_PSEUDO_SPACES (34–43): only U+00A0 counts as a pseudo-space.
  [/\u00a0%/g, '%', NBSP],
  [/nº\u00a0/g, 'nº ', NBSP],
  [/\u00a0:/g, ':', NBSP],
  [/\u00a0ºC/g, ' ºC', NBSP],
  [/\u00a0cm/g, ' cm', NBSP],
  [/\u00a0\?/g, '?', NBSP],
  [/\u00a0!/g, '!', NBSP],
  [/\u00a0;/g, ';', NBSP],
  [/,\u00a0/g, ', ', NBSP],
  [/ +/g, ' ', '  '],
  // DE_ES_FR_QUOTATION_FOLLOWED_BY_COMMA (44–45)
  [/,"/g, '",', ',"'],
  [new RegExp(`(\\.+)"([${WHITESPACE.classBody}]*[^<])`, 'gu'), '"$1$2', '."'],
  // DE_ES_CZ_CS_FR numbers (46)
  [new RegExp(`(${ND})\\u00a0(${ND})`, 'gu'), '$1,$2', NBSP],
];

/** Matches where any trigger does: when nothing matches, no rule can fire and the text only gets stripped. */
const ANY_TRIGGER = /[\r()`„“”–—´‘’‚…«»\u00a0]|  | [%:;]|''|,"|\."/;

/** sacremoses `MosesPunctNormalizer(lang="fr").normalize(text)` with the constructor defaults. */
export function normalizePunctuationFr(text: string): string {
  if (!ANY_TRIGGER.test(text)) return pyStrip(text);
  let out = text;
  for (const [pattern, replacement, trigger] of FRENCH_RULES) {
    if (out.includes(trigger)) out = out.replace(pattern, replacement);
  }
  return pyStrip(out);
}

/** Full-width and CJK punctuation → ASCII; `。`/`．` also swallow the Python whitespace after them. */
const UNICODE_PUNCT: ReadonlyMap<string, string> = new Map([
  ['，', ','],
  ['、', ','],
  ['”', '"'],
  ['“', '"'],
  ['∶', ':'],
  ['：', ':'],
  ['？', '?'],
  ['《', '"'],
  ['》', '"'],
  ['）', ')'],
  ['！', '!'],
  ['（', '('],
  ['；', ';'],
  ['」', '"'],
  ['「', '"'],
  ['０', '0'],
  ['１', '1'],
  ['２', '2'],
  ['３', '3'],
  ['４', '4'],
  ['５', '5'],
  ['６', '6'],
  ['７', '7'],
  ['８', '8'],
  ['９', '9'],
  ['～', '~'],
  ['’', "'"],
  ['…', '...'],
  ['━', '-'],
  ['〈', '<'],
  ['〉', '>'],
  ['【', '['],
  ['】', ']'],
  ['％', '%'],
]);

// transformers applies these as ~40 sequential replacements, but every output is ASCII and every input is
// not, so no replacement can feed another and a single pass gives the same string.
const UNICODE_PUNCT_RE = new RegExp(
  `[${[...UNICODE_PUNCT.keys()].join('')}]|[。．][${WHITESPACE.classBody}]*`,
  'gu',
);

/** transformers `replace_unicode_punct` (port of Moses replace-unicode-punctuation.perl, with `「」`). */
export function replaceUnicodePunct(text: string): string {
  return text.replace(UNICODE_PUNCT_RE, (m) => UNICODE_PUNCT.get(m) ?? '. ');
}

const NON_PRINTING_RE = new RegExp(`[${NON_PRINTING.classBody}]`, 'gu');

function hasNonPrinting(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) continue;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        if (NON_PRINTING.has(((c - 0xd800) << 10) + (low - 0xdc00) + 0x10000)) return true;
        i++;
        continue;
      }
    }
    // A lone surrogate lands here too: category Cs, deleted like the rest.
    if (NON_PRINTING.has(c)) return true;
  }
  return false;
}

/** transformers `remove_non_printing_char`: deletes Python category C* (tabs and newlines included). */
export function removeNonPrintingChar(text: string): string {
  return hasNonPrinting(text) ? text.replace(NON_PRINTING_RE, '') : text;
}
