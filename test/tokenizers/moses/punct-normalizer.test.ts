import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  normalizePunctuationFr,
  removeNonPrintingChar,
  replaceUnicodePunct,
} from '../../../src/tokenizers/moses/punct-normalizer.js';

const NBSP = '\u00a0';

describe('MosesPunctNormalizer(lang="fr") — examples of shared/docs/tokenizers.md §C.1', () => {
  const rows: ReadonlyArray<readonly [string, string]> = [
    ['Il a dit : « Non ! » ; ok', 'Il a dit: " Non ! "; ok'],
    ['Fin."  x', 'Fin". x'],
    ["``a''", '" a "'],
    ['l’été', "l'été"],
    ['x—y', 'x - y'],
    ['\r\n', ''],
    // Rule 46 consumes both digits, yet the second NBSP still follows an unconsumed digit.
    [`1${NBSP}000${NBSP}000`, '1,000,000'],
  ];
  for (const [input, expected] of rows) {
    test(JSON.stringify(input), () => assert.equal(normalizePunctuationFr(input), expected));
  }
});

describe('MosesPunctNormalizer(lang="fr") — one case per rule group', () => {
  const rows: ReadonlyArray<readonly [string, string, string]> = [
    ['extra whitespace: ( and ) get spaces, then lose the inner ones', 'a(b)c', 'a (b) c'],
    ['extra whitespace: ") ." → ").", digit + " %"', '(x) . 5 %', '(x). 5%'],
    ['extra whitespace: " :" and " ;" lose the space, other punctuation keeps it', 'a : b ; c ! d ?', 'a: b; c ! d ?'],
    ['Unicode Nd digits count for the % rule', '٣ %', '٣%'],
    ['penn: backtick → apostrophe, two apostrophes → spaced quote', "`x'' y", `'x " y`],
    ['unicode quotes and dashes', '„a“ ”b” c–d', '"a" "b" c-d'],
    ['‘ between ASCII letters, ‘ and ‚ elsewhere', 'a‘b é‘ ‚', "a'b é' '"],
    ['´ → apostrophe, so "´´" becomes two apostrophes and then a quote', 'x´´y', 'x"y'],
    ['ellipsis', 'fin…', 'fin...'],
    ['French quotes with and without NBSP', `«${NBSP}a${NBSP}» «b»`, '"a" "b"'],
    [
      'pseudo-spaces before % : ? ! ; are dropped',
      `5${NBSP}% a${NBSP}: b${NBSP}? c${NBSP}! d${NBSP};`,
      '5% a: b? c! d;',
    ],
    ['nº, ºC and cm keep a plain space', `nº${NBSP}5 20${NBSP}ºC 3${NBSP}cm`, 'nº 5 20 ºC 3 cm'],
    ['comma + NBSP', `a,${NBSP}b`, 'a, b'],
    ['quote + comma: the comma moves out of the quotes', 'dit "oui," puis', 'dit "oui", puis'],
    ['quote after periods: the periods move out unless "<" follows', 'fin."x fin."<', 'fin".x fin."<'],
    ['U+202F is not a pseudo-space', 'fine\u202f?', 'fine\u202f?'],
    ['Python whitespace is stripped at the ends', '\u0085\u3000 a \u001c', 'a'],
  ];
  for (const [name, input, expected] of rows) {
    test(name, () => assert.equal(normalizePunctuationFr(input), expected));
  }
});

describe('replace_unicode_punct (transformers)', () => {
  test('every mapping of tokenizers.md §B.2 2.1 and its correction in §C.1', () => {
    assert.equal(
      replaceUnicodePunct('，、”“∶：？《》）！（；０１２３４５６７８９～’…━〈〉【】％「」'),
      ',,""::?"")!(;0123456789~\'...-<>[]%""',
    );
  });

  test('。 and ． swallow the Python whitespace after them', () => {
    assert.equal(replaceUnicodePunct('a。  \u3000b．\u0085c。'), 'a. b. c. ');
  });

  test('leaves other text alone', () => {
    assert.equal(replaceUnicodePunct('« Déjà » ‘x’'), "« Déjà » ‘x'");
  });
});

describe('remove_non_printing_char (transformers)', () => {
  test('deletes Cc, Cf, Co, Cs and Unicode-14-unassigned code points', () => {
    assert.equal(removeNonPrintingChar('a\tb\nc\u0000d\u200be\u00adf\ue000g\ud800h\u0378i'), 'abcdefghi');
  });

  test('deletes code points assigned after Unicode 14 (unassigned for Python 3.11)', () => {
    // U+0897 (Unicode 16) and U+1E4D0 (Unicode 15) were category Cn in Unicode 14.
    assert.equal(removeNonPrintingChar('x\u0897y\u{1E4D0}z'), 'xyz');
  });

  test('keeps printable text, astral letters and emoji', () => {
    const text = "L'été 😀 你好 𝐀 \u00a0 «»";
    assert.equal(removeNonPrintingChar(text), text);
  });
});
