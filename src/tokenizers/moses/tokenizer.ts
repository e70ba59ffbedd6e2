/**
 * sacremoses 0.1.1 `MosesTokenizer(lang="fr").tokenize(text, aggressive_dash_splits=False, return_str=False,
 * escape=False)` with no protected patterns: the word splitter of FlauBERT's `moses_tokenize`. Step numbers
 * refer to shared/docs/tokenizers.md §C.2–C.3.
 */
import { isPyWhitespace, pySplit, pyStrip } from '../python-str.js';
import { ALNUM, ALPHA, LOWER, NUMERIC, WHITESPACE } from './charclasses.js';
import { FRENCH_NONBREAKING_PREFIX_SET } from './nonbreaking-prefixes.js';

const WS_RUN = new RegExp(`[${WHITESPACE.classBody}]+`, 'gu');
const ASCII_CONTROL = /[\x00-\x1f]/g;
// The class spells sacremoses' `[^{IsAlnum}\s\.'\`\,\-]`.
const PAD_NOT_ALNUM = new RegExp(`([^${ALNUM.classBody}${WHITESPACE.classBody}.'\`,\\-])`, 'gu');
const NOT_N = `[^${NUMERIC.classBody}]`;
const COMMA_AFTER_NON_NUMBER = new RegExp(`(${NOT_N}),`, 'gu');
const COMMA_BEFORE_NON_NUMBER = new RegExp(`,(${NOT_N})`, 'gu');
const FINAL_COMMA_AFTER_NUMBER = new RegExp(`([${NUMERIC.classBody}]),$`, 'u');
const A = `[${ALPHA.classBody}]`;
const NOT_A = `[^${ALPHA.classBody}]`;
const APOSTROPHE_RULES: ReadonlyArray<readonly [RegExp, string]> = [
  [new RegExp(`(${NOT_A})'(${NOT_A})`, 'gu'), "$1 ' $2"],
  [new RegExp(`(${NOT_A})'(${A})`, 'gu'), "$1 ' $2"],
  [new RegExp(`(${A})'(${NOT_A})`, 'gu'), "$1 ' $2"],
  // Elision: the apostrophe stays on the left word (l' homme).
  [new RegExp(`(${A})'(${A})`, 'gu'), "$1' $2"],
];
const MULTIDOT_START = /\.(\.+)/g;
const DOTMULTI_DOTS = /DOTMULTI(\.+)/g;
const DOT_CHAIN = /(?:DOT)*DOTMULTI/g;

/**
 * `replace_multidots`. sacremoses turns `..`+ into ` DOTMULTI.`+, then loops over the whole text while a
 * `DOTMULTI.` is left, each round running `DOTMULTI\.([^.])` → `DOTDOTMULTI $1` and then `DOTMULTI\.` →
 * `DOTDOTMULTI`. A `DOTMULTI` followed by k dots thus ends as k × `DOT` + `DOTMULTI`, plus a space when its
 * last round used the first rule, i.e. when a character follows, unless the previous occurrence ends right
 * where this one starts, has the same k and took the first rule in that same round: its match consumed this
 * occurrence's `D`, so only the second rule could apply. Computed in one pass; the loop is quadratic in the
 * longest run of dots.
 */
export function replaceMultidots(text: string): string {
  const marked = text.includes('..') ? text.replace(MULTIDOT_START, ' DOTMULTI$1') : text;
  if (!marked.includes('DOTMULTI.')) return marked;
  let previousEnd = -1;
  let previousDots = 0;
  let previousSpaced = false;
  return marked.replace(DOTMULTI_DOTS, (match: string, dots: string, offset: number, whole: string) => {
    const end = offset + match.length;
    const eclipsed = offset === previousEnd && dots.length === previousDots && previousSpaced;
    const spaced = end < whole.length && !eclipsed;
    previousEnd = end;
    previousDots = dots.length;
    previousSpaced = spaced;
    return `${'DOT'.repeat(dots.length)}DOTMULTI${spaced ? ' ' : ''}`;
  });
}

/**
 * `restore_multidots`: repeatedly `DOTDOTMULTI` → `DOTMULTI.`, then every `DOTMULTI` → `.`; a chain of m `DOT`s
 * before `DOTMULTI` thus becomes m + 1 dots.
 */
export function restoreMultidots(text: string): string {
  if (!text.includes('DOTMULTI')) return text;
  return text.replace(DOT_CHAIN, (chain: string) => '.'.repeat((chain.length - 8) / 3 + 1));
}

/**
 * `handles_nonbreaking_prefixes` for `fr` (no numeric-only prefixes exist for French), on the whitespace-split
 * tokens: a token `p.` becomes `p` `.` unless p holds a period and a letter, p is a listed prefix, or the next
 * token starts with a lower-case letter.
 */
export function splitFinalPeriods(tokens: readonly string[]): string[] {
  const out: string[] = [];
  const last = tokens.length - 1;
  for (let i = 0; i <= last; i++) {
    const token = tokens[i] as string;
    // `^(\S+)\.$`: ends with a period and has at least one character before it.
    if (token.length < 2 || token.charCodeAt(token.length - 1) !== 0x2e) {
      out.push(token);
      continue;
    }
    const prefix = token.slice(0, -1);
    const keep =
      (prefix.includes('.') && ALPHA.hasAny(prefix)) ||
      FRENCH_NONBREAKING_PREFIX_SET.has(prefix) ||
      (i !== last && LOWER.has((tokens[i + 1] as string).codePointAt(0) as number));
    if (keep) out.push(token);
    else out.push(prefix, '.');
  }
  return out;
}

/** Steps 1–2: `\s+` → space, then ASCII controls deleted; both skipped when they would change nothing. */
function squeezeSpacesAndControls(text: string): string {
  let spaces = false;
  let controls = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x20) {
      if (i + 1 < text.length && isPyWhitespace(text.charCodeAt(i + 1))) spaces = true;
    } else if (isPyWhitespace(c)) {
      spaces = true;
    } else if (c < 0x20) {
      controls = true;
    }
  }
  let out = spaces ? text.replace(WS_RUN, ' ') : text;
  if (controls) out = out.replace(ASCII_CONTROL, '');
  return out;
}

function isUnpadded(c: number): boolean {
  // . ' ` , - and whitespace stay attached, like the members of IsAlnum.
  return (
    c === 0x2e || c === 0x27 || c === 0x60 || c === 0x2c || c === 0x2d || ALNUM.has(c) || isPyWhitespace(c)
  );
}

/** Step 4, skipped when every code unit is left alone (IsAlnum is BMP-only, so surrogates always pad). */
function padNonAlnum(text: string): string {
  for (let i = 0; i < text.length; i++) {
    if (!isUnpadded(text.charCodeAt(i))) return text.replace(PAD_NOT_ALNUM, ' $1 ');
  }
  return text;
}

/** The Moses tokens of `text` (already normalised by the FlauBERT pipeline). */
export function mosesTokenizeFr(input: string): string[] {
  let text = pyStrip(squeezeSpacesAndControls(input));
  text = padNonAlnum(text);
  text = replaceMultidots(text);
  if (text.includes(',')) {
    text = text
      .replace(COMMA_AFTER_NON_NUMBER, '$1 , ')
      .replace(COMMA_BEFORE_NON_NUMBER, ' , $1')
      .replace(FINAL_COMMA_AFTER_NUMBER, '$1 , ');
  }
  if (text.includes("'")) {
    for (const [pattern, replacement] of APOSTROPHE_RULES) text = text.replace(pattern, replacement);
  }
  // Steps 9–14 run on the token list instead of re-joined text: the joins only squeeze spaces, step 11 only
  // touches the last token and no dot chain spans a space.
  const tokens = text.includes('.') ? splitFinalPeriods(pySplit(text)) : pySplit(text);
  // Step 11, `\.' ?$` → ` . ' ` on the stripped text: a final token ending in `.'` loses both.
  const final = tokens[tokens.length - 1];
  if (final !== undefined && final.endsWith(".'")) {
    tokens.pop();
    if (final.length > 2) tokens.push(final.slice(0, -2));
    tokens.push('.', "'");
  }
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as string;
    if (token.includes('DOTMULTI')) tokens[i] = restoreMultidots(token);
  }
  return tokens;
}
