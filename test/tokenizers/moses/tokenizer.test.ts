import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  mosesTokenizeFr,
  replaceMultidots,
  restoreMultidots,
  splitFinalPeriods,
} from '../../../src/tokenizers/moses/tokenizer.js';

describe('MosesTokenizer(lang="fr") — examples of shared/docs/tokenizers.md §C.3', () => {
  const rows: ReadonlyArray<readonly [string, string[]]> = [
    ['M. Dupont est là.', ['M.', 'Dupont', 'est', 'là', '.']],
    ['Il est né en 1999. Puis', ['Il', 'est', 'né', 'en', '1999', '.', 'Puis']],
    ['Bonjour. Salut', ['Bonjour', '.', 'Salut']],
    ['1.2. Puis', ['1.2', '.', 'Puis']],
    ["aujourd'hui", ["aujourd'", 'hui']],
    ["l'2", ['l', "'", '2']],
    ['Attends... quoi ?..', ['Attends', '...', 'quoi', '?', '..']],
    ["C'est fini.'", ["C'", 'est', 'fini', '.', "'"]],
  ];
  for (const [input, expected] of rows) {
    test(JSON.stringify(input), () => assert.deepEqual(mosesTokenizeFr(input), expected));
  }

  test('the three reasons to keep a final period (§C.3 a–c)', () => {
    // (a) a period inside and a letter; (b) a listed prefix; (c) the next token starts lower-case.
    assert.deepEqual(mosesTokenizeFr('U.S.A. c.-à-d. e.g. Fin'), ['U.S.A.', 'c.-à-d.', 'e.g.', 'Fin']);
    assert.deepEqual(mosesTokenizeFr('etc. M. p. Fin'), ['etc.', 'M.', 'p.', 'Fin']);
    assert.deepEqual(mosesTokenizeFr('bonjour. salut'), ['bonjour.', 'salut']);
    // `a` is commented out of the prefix file, prefixes are case-sensitive.
    assert.deepEqual(mosesTokenizeFr('a. Etc. Fin'), ['a', '.', 'Etc', '.', 'Fin']);
  });
});

describe('MosesTokenizer(lang="fr") — steps of §C.2', () => {
  const rows: ReadonlyArray<readonly [string, string, string[]]> = [
    ['commas stay inside numbers only', '1,5 1, 5 a,b 5,', ['1,5', '1', ',', '5', 'a', ',', 'b', '5', ',']],
    ['a leading or final apostrophe has no neighbour', "'a a'", ["'a", "a'"]],
    ['an apostrophe next to a non-letter is split off', "1'2 a' b", ['1', "'", '2', 'a', "'", 'b']],
    ['non-alphanumerics are padded', '!?"(%€/&_½😀你', Array.from('!?"(%€/&_½😀你')],
    ['. \' ` , - are not padded', "a-b c`d", ['a-b', 'c`d']],
    ['whitespace is squeezed, ASCII controls deleted', '\u001f a\u0001b\u0085\u3000c \t', ['ab', 'c']],
    ['literal DOTMULTI words turn into dots', 'DOTMULTI.x', ['..', 'x']],
    ['no XML escaping', '<a & b>', ['<', 'a', '&', 'b', '>']],
    ['empty', '  ', []],
  ];
  for (const [name, input, expected] of rows) {
    test(name, () => assert.deepEqual(mosesTokenizeFr(input), expected));
  }

  test('"..." becomes " DOTDOTDOTMULTI" before the restore (§C.2 step 6)', () => {
    assert.equal(replaceMultidots('a...'), 'a DOTDOTDOTMULTI');
    assert.equal(replaceMultidots('a...b'), 'a DOTDOTDOTMULTI b');
    assert.equal(restoreMultidots('a DOTDOTDOTMULTI b'), 'a ... b');
  });

  test('an occurrence whose D was eaten by the previous one gets no space', () => {
    // Round 1: `DOTMULTI.D` → `DOTDOTMULTI D` hides the second `DOTMULTI.` from that pass; `DOTMULTI\.` gets it.
    assert.equal(replaceMultidots('..DOTMULTI.x.D'), ' DOTDOTMULTI DOTDOTMULTIx.D');
    assert.deepEqual(mosesTokenizeFr('..DOTMULTI.x.D'), ['..', '..x.D']);
  });

  test('splitFinalPeriods works on whitespace tokens', () => {
    assert.deepEqual(splitFinalPeriods(['Fin.', 'Il', 'etc.', 'x.', 'suite', '.']), [
      'Fin',
      '.',
      'Il',
      'etc.',
      'x.',
      'suite',
      '.',
    ]);
  });
});

/** sacremoses' multi-dot loops taken literally, as the oracle for the one-pass versions. */
function replaceMultidotsLoop(input: string): string {
  let text = input.replace(/\.(\.+)/g, ' DOTMULTI$1');
  while (/DOTMULTI\./.test(text)) {
    text = text.replace(/DOTMULTI\.([^.])/gu, 'DOTDOTMULTI $1').replace(/DOTMULTI\./g, 'DOTDOTMULTI');
  }
  return text;
}

function restoreMultidotsLoop(input: string): string {
  let text = input;
  while (text.includes('DOTDOTMULTI')) text = text.replaceAll('DOTDOTMULTI', 'DOTMULTI.');
  return text.replaceAll('DOTMULTI', '.');
}

describe('one-pass multi-dot handling equals the sacremoses loops', () => {
  const pieces = ['.', '..', '...', 'DOT', 'DOTMULTI', 'DOTMULTI.', 'DOTDOTMULTI', 'MULTI', 'D', 'a', ' ', "'", '😀'];
  let seed = 12345;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };
  test('20,000 random strings', () => {
    for (let i = 0; i < 20_000; i++) {
      let s = '';
      for (let k = random(12); k >= 0; k--) s += pieces[random(pieces.length)];
      assert.equal(replaceMultidots(s), replaceMultidotsLoop(s), JSON.stringify(s));
      assert.equal(restoreMultidots(s), restoreMultidotsLoop(s), JSON.stringify(s));
      const replaced = replaceMultidots(s);
      assert.equal(restoreMultidots(replaced), restoreMultidotsLoop(replaced), JSON.stringify(replaced));
    }
  });

  test('a long run of dots stays linear', () => {
    const dots = '.'.repeat(200_000);
    const t0 = performance.now();
    assert.deepEqual(mosesTokenizeFr(`a${dots}b`), ['a', dots, 'b']);
    assert.ok(performance.now() - t0 < 2000);
  });
});
