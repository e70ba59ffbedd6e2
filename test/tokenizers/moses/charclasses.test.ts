import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ALNUM,
  ALPHA,
  CodePointSet,
  DIGIT,
  LOWER,
  NON_PRINTING,
  NUMERIC,
  WHITESPACE,
  decodeRanges,
} from '../../../src/tokenizers/moses/charclasses.js';
import { FRENCH_NONBREAKING_PREFIXES } from '../../../src/tokenizers/moses/nonbreaking-prefixes.js';
import { pyLower, pyNfc } from '../../../src/tokenizers/moses/unicode14.js';
import { isPyWhitespace, pySplit, pyStrip } from '../../../src/tokenizers/python-str.js';
import { needsShared, referenceDir } from '../../helpers/shared.js';
import {
  TABLES_MODULE,
  encodeRanges,
  parseJsonRanges,
  readCharclassesJson,
  renderTablesModule,
} from './gen-charclass-tables.js';

const MAX_CP = 0x10ffff;

/** Membership of every code point, from the reference JSON. */
function membership(ranges: readonly string[]): Uint8Array {
  const bits = new Uint8Array(MAX_CP + 1);
  for (const [lo, hi] of parseJsonRanges(ranges)) bits.fill(1, lo, hi + 1);
  return bits;
}

function isSurrogate(cp: number): boolean {
  return cp >= 0xd800 && cp <= 0xdfff;
}

/**
 * Compares a runtime set with the reference on all of U+0000–U+10FFFF, both through `has` and through its regex
 * class body (what the Moses regexes actually use). The regex pass runs once over a string of all non-surrogate
 * code points; surrogates, which would pair up in such a string, are tested one by one.
 */
function assertSameSet(name: string, set: CodePointSet, expected: Uint8Array): void {
  const wrongHas: string[] = [];
  for (let cp = 0; cp <= MAX_CP; cp++) {
    if (set.has(cp) !== (expected[cp] === 1) && wrongHas.length < 10) wrongHas.push(cp.toString(16));
  }
  assert.deepEqual(wrongHas, [], `${name}.has differs from the reference at these code points`);

  const all: string[] = [];
  for (let cp = 0; cp <= MAX_CP; cp++) if (!isSurrogate(cp)) all.push(String.fromCodePoint(cp));
  const matched = all.join('').match(new RegExp(`[${set.classBody}]`, 'gu')) ?? [];
  const expectedMembers: number[] = [];
  for (let cp = 0; cp <= MAX_CP; cp++) if (expected[cp] === 1 && !isSurrogate(cp)) expectedMembers.push(cp);
  assert.equal(matched.length, expectedMembers.length, `${name}: regex class member count`);
  assert.ok(
    matched.every((m, i) => m.codePointAt(0) === expectedMembers[i]),
    `${name}: regex class members differ from the reference`,
  );
  const single = new RegExp(`^[${set.classBody}]$`, 'u');
  for (let cp = 0xd800; cp <= 0xdfff; cp++) {
    const member = single.test(String.fromCharCode(cp));
    assert.equal(member, expected[cp] === 1, `${name}: lone surrogate ${cp.toString(16)}`);
  }
}

describe('range table encoding', () => {
  test('decodeRanges inverts the generator encoding', () => {
    const ranges: Array<[number, number]> = [
      [0, 0],
      [2, 5],
      [0x41, 0x5a],
      [0x10ffff, 0x10ffff],
    ];
    assert.deepEqual(decodeRanges(encodeRanges(ranges).join(' ')), ranges);
    assert.deepEqual(decodeRanges('\n1c.9 7.p\n'), [
      [0x30, 0x39],
      [0x41, 0x5a],
    ]);
  });

  test('CodePointSet answers in and beyond the BMP', () => {
    const set = new CodePointSet([
      [0x41, 0x43],
      [0xffff, 0x10001],
      [0x1f600, 0x1f600],
    ]);
    assert.deepEqual(
      [0x40, 0x41, 0x43, 0x44, 0xfffe, 0xffff, 0x10000, 0x10001, 0x10002, 0x1f600].map((cp) => set.has(cp)),
      [false, true, true, false, false, true, true, true, false, true],
    );
    assert.equal(set.hasAny('xyzB'), true);
    assert.equal(set.hasAny('xyz'), false);
    assert.equal(set.hasAny('😀'), true);
  });
});

describe('character classes match shared/reference/moses-charclasses.json exactly', { skip: needsShared }, () => {
  test('the committed charclass-tables.ts is what the generator makes of the JSON', async () => {
    const committed = await readFile(TABLES_MODULE, 'utf8');
    const fresh = renderTablesModule(await readCharclassesJson());
    assert.equal(committed, fresh, 'stale: regenerate with gen-charclass-tables.js --write');
  });

  type Json = Awaited<ReturnType<typeof readCharclassesJson>>;
  const cases: ReadonlyArray<readonly [string, CodePointSet, (j: Json) => string[]]> = [
    ['IsAlnum', ALNUM, (j) => j.classes.IsAlnum?.ranges ?? []],
    ['IsAlpha', ALPHA, (j) => j.classes.IsAlpha?.ranges ?? []],
    ['IsN', NUMERIC, (j) => j.classes.IsN?.ranges ?? []],
    ['IsLower', LOWER, (j) => j.classes.IsLower?.ranges ?? []],
    ['python_decimal_digit_Nd', DIGIT, (j) => j.python_decimal_digit_Nd.ranges],
    ['python_category_C', NON_PRINTING, (j) => j.python_category_C.ranges],
  ];
  for (const [name, set, pick] of cases) {
    test(`${name}: every code point U+0000–U+10FFFF`, async () => {
      const json = await readCharclassesJson();
      assertSameSet(name, set, membership(pick(json)));
    });
  }

  test('python_whitespace: the regex class, the set and isPyWhitespace', async () => {
    const raw = JSON.parse(await readFile(join(referenceDir, 'moses-charclasses.json'), 'utf8')) as {
      python_whitespace: { ranges: string[] };
    };
    const expected = membership(raw.python_whitespace.ranges);
    assertSameSet('python_whitespace', WHITESPACE, expected);
    for (let c = 0; c <= 0xffff; c++) assert.equal(isPyWhitespace(c), expected[c] === 1, `U+${c.toString(16)}`);
  });

  test('VIRAMAS and NUKTAS are in IsAlnum and IsAlpha', async () => {
    const raw = JSON.parse(await readFile(join(referenceDir, 'moses-charclasses.json'), 'utf8')) as {
      viramas: string[];
      nuktas: string[];
    };
    const marks = [...raw.viramas, ...raw.nuktas].map((h) => parseInt(h, 16));
    assert.equal(marks.length, 63);
    for (const cp of marks) {
      assert.ok(ALNUM.has(cp) && ALPHA.has(cp), `U+${cp.toString(16)}`);
    }
  });

  test('the French prefix list is the reference file read with the sacremoses loader rule', async () => {
    const text = await readFile(join(referenceDir, 'moses-nonbreaking-prefix.fr.txt'), 'utf8');
    const words = text
      .split('\n')
      .map((l) => pyStrip(l))
      .filter((l) => l.length > 0 && !l.startsWith('#'));
    assert.deepEqual([...FRENCH_NONBREAKING_PREFIXES], words);
    assert.equal(words.length, 144);
    assert.ok(!words.some((w) => /\s#NUMERIC_ONLY#/.test(w)), 'fr has no numeric-only prefixes');
  });
});

describe('facts of tokenizers.md §C about the classes', () => {
  test('IsAlnum / IsN membership examples', () => {
    const cp = (s: string): number => s.codePointAt(0) as number;
    assert.equal(ALNUM.has(cp('_')), false);
    assert.equal(ALNUM.has(cp('ⓐ')), true);
    assert.equal(ALNUM.has(cp('Ⅻ')), true);
    for (const c of ['½', '²', '①']) {
      assert.equal(NUMERIC.has(cp(c)), true, c);
      assert.equal(ALNUM.has(cp(c)), false, c);
    }
    assert.equal(NUMERIC.has(0x0a), true);
    // BMP only: no CJK ideographs, no Hangul syllables, no mathematical letters.
    for (const c of ['你', '한', '𝐀']) assert.equal(ALNUM.has(cp(c)), false, c);
    assert.equal(FRENCH_NONBREAKING_PREFIXES.includes('a'), false);
  });
});

describe('Python str semantics', () => {
  test('strip and split use Python whitespace, not JS \\s', () => {
    assert.equal(pyStrip('\u001c\u0085 a b \u3000'), 'a b');
    assert.equal(pyStrip('\ufeffa\ufeff'), '\ufeffa\ufeff');
    assert.deepEqual(pySplit(' a\u001fb\u00a0\u00a0c\ufeffd '), ['a', 'b', 'c\ufeffd']);
    assert.deepEqual(pySplit(''), []);
    assert.deepEqual(pySplit(' \t\n'), []);
  });

  test('lower() and NFC keep Unicode 14 behaviour for later additions', () => {
    // U+A7CB (Unicode 16 capital) has no lower-case mapping in Python 3.11.
    assert.equal(pyLower('\uA7CBÉ'), '\uA7CBé');
    assert.equal(pyLower('ΟΔΟΣ ΣΑ Σ'), 'οδος σα σ');
    // The final-sigma context is broken by a code point Unicode 14 does not know.
    assert.equal(pyLower('ΑΣ\uA7CB'), 'ας\uA7CB');
    // U+105D2 U+0307 composes to U+105C9 only since Unicode 16.
    assert.equal(pyNfc('\u{105D2}\u0307'), '\u{105D2}\u0307');
    assert.equal(pyNfc('e\u0301\u{105D2}e\u0301'), 'é\u{105D2}é');
    assert.equal(pyNfc('e\u0301'), 'é');
  });
});
