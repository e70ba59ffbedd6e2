import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, UnsupportedError } from '../../../src/errors.js';
import { CharsMap } from '../../../src/tokenizers/sentencepiece/charsmap.js';
import { SentencePieceProcessor } from '../../../src/tokenizers/sentencepiece/processor.js';
import {
  decodeModelProto,
  defaultNormalizerSpec,
  defaultTrainerSpec,
  type ModelProto,
  PieceType,
} from '../../../src/tokenizers/sentencepiece/proto.js';
import { hubDir, needsShared } from '../../helpers/shared.js';

/** A model built in memory: [piece, score, type?] entries, no charsmap unless given. */
function model(entries: [string, number, number?][], tweak: (m: ModelProto) => void = () => {}): ModelProto {
  const m: ModelProto = {
    pieces: entries.map(([piece, score, type]) => ({ piece, bytes: new TextEncoder().encode(piece), score, type: type ?? PieceType.normal })),
    trainerSpec: defaultTrainerSpec(),
    normalizerSpec: defaultNormalizerSpec(),
  };
  tweak(m);
  return m;
}

const base: [string, number, number?][] = [
  ['<unk>', 0, PieceType.unknown],
  ['<s>', 0, PieceType.control],
  ['</s>', 0, PieceType.control],
  ['▁', -1],
  ['a', -2],
  ['b', -2],
  ['ab', -3.4],
  ['▁a', -2.5],
  ['c', -3],
  ['ba', -0.5, PieceType.unused],
];

describe('Unigram encoder on a small model', () => {
  const sp = new SentencePieceProcessor(model(base));

  test('best path: ▁ + ab (-4.4) beats ▁a + b (-4.5)', () => {
    assert.deepEqual(sp.encode('ab'), { pieces: ['▁', 'ab'], ids: [3, 6] });
  });

  test('UNUSED pieces are found but never used; CONTROL pieces are never matched', () => {
    assert.deepEqual(sp.encode('ba').pieces, ['▁', 'b', 'a']);
    assert.deepEqual(sp.encode('<s>'), { pieces: ['▁', '<s>'], ids: [3, 0] });
  });

  test('runs of unknown characters merge into one unknown piece holding their text', () => {
    assert.deepEqual(sp.encode('xyz'), { pieces: ['▁', 'xyz'], ids: [3, 0] });
    assert.deepEqual(sp.encode('xaé'), { pieces: ['▁', 'x', 'a', 'é'], ids: [3, 0, 4, 0] });
    assert.deepEqual(sp.encode('x y'), { pieces: ['▁', 'x', '▁', 'y'], ids: [3, 0, 3, 0] });
    assert.deepEqual(sp.encode('😀'), { pieces: ['▁', '😀'], ids: [3, 0] });
  });

  test('an unknown node covers one character even when a longer piece starts there', () => {
    // No piece is exactly "é", but "éa" is: the path may still use the longer piece.
    const withLonger = new SentencePieceProcessor(model([...base, ['éa', -1]]));
    assert.deepEqual(withLonger.encode('éa').pieces, ['▁', 'éa']);
    assert.deepEqual(withLonger.encode('éb').pieces, ['▁', 'é', 'b']);
  });

  test('USER_DEFINED pieces win and are matched inside words', () => {
    const user = new SentencePieceProcessor(model([...base, ['<sep>', 0, PieceType.userDefined], ['bab', -1, PieceType.userDefined]]));
    assert.deepEqual(user.encode('a<sep>b').pieces, ['▁a', '<sep>', 'b']);
    // The user piece scores about -0.1 (length × FLT_MIN - 0.1), so ▁a + bab (-2.6) beats ▁ + ab + ab (-7.8).
    assert.deepEqual(user.encode('abab').pieces, ['▁a', 'bab']);
  });

  test('decode: ▁ to spaces, the first one dropped; control pieces vanish; <unk> prints ⁇', () => {
    assert.equal(sp.decodePieces(['▁a', 'b', '▁', 'c']), 'ab c');
    assert.equal(sp.decodePieces(['<s>', '▁a', '</s>']), 'a');
    assert.equal(sp.decodePieces(['▁a', '<unk>', 'xyz']), 'a \u2047 xyz');
    assert.equal(sp.decodePieces([]), '');
  });

  test('byte fallback: unknown characters become <0xXX> pieces, decoded back to UTF-8', () => {
    const bytes: [string, number, number?][] = [];
    for (let b = 0; b < 256; b++) bytes.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, PieceType.byte]);
    const fb = new SentencePieceProcessor(model([...base, ...bytes], (m) => (m.trainerSpec.byteFallback = true)));
    const r = fb.encode('é');
    assert.deepEqual(r.pieces, ['▁', '<0xC3>', '<0xA9>']);
    assert.deepEqual(r.ids, [3, 10 + 0xc3, 10 + 0xa9]);
    assert.equal(fb.decodePieces(r.pieces), 'é');
    assert.equal(fb.decodePieces(['<0xC3>', '▁a']), '\ufffd a');
  });

  test('model errors: no unknown piece, two unknown pieces, byte piece without byte_fallback, BPE', () => {
    assert.throws(() => new SentencePieceProcessor(model([['a', 0]])), FormatError);
    assert.throws(() => new SentencePieceProcessor(model([['<unk>', 0, 2], ['<u2>', 0, 2]])), FormatError);
    assert.throws(() => new SentencePieceProcessor(model([['<unk>', 0, 2], ['<0x41>', 0, 6]])), FormatError);
    assert.throws(() => new SentencePieceProcessor(model([['<unk>', 0, 2], ['a', 0], ['a', -1]])), FormatError);
    assert.throws(() => new SentencePieceProcessor(model([['<unk>', 0, 2]], (m) => (m.trainerSpec.modelType = 2))), UnsupportedError);
  });

  test('a broken charsmap blob is a FormatError', () => {
    assert.throws(() => new CharsMap(new Uint8Array([1, 0, 0, 0])), FormatError);
    assert.throws(() => new CharsMap(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0])), FormatError);
  });
});

// shared/docs/sentencepiece.md §4.5 and §6, on the real model.
describe('normaliser and unknowns on the real T5 model', { skip: needsShared }, () => {
  let sp: SentencePieceProcessor;
  before(async () => {
    sp = new SentencePieceProcessor(decodeModelProto(new Uint8Array(await readFile(join(hubDir, 'google', 'flan-t5-large', 'spiece.model')))));
  });

  const normalised: [string, string][] = [
    ['Hello  world', '▁Hello▁world'],
    [' leading', '▁leading'],
    ['a▁b', '▁a▁b'],
    ['▁▁x', '▁x'],
    ['x\u200By', '▁x▁y'],
    ['\uFEFFHi', '▁Hi'],
    ['\t\n x \r', '▁x'],
    ['ﬁne', '▁fine'],
    ['①②', '▁12'],
    ['ｆｕｌｌ', '▁full'],
    ['½', '▁1⁄2'],
    ['e\u0301', '▁é'],
    ['a\u0000b', '▁a\u0000b'],
    ['', ''],
    [' ', ''],
    ['▁▁', ''],
    ['\u200B', ''],
    ['\u0001', ''],
  ];
  for (const [input, expected] of normalised) {
    test(`§4.5 normalise ${JSON.stringify(input)}`, () => {
      assert.equal(sp.normalize(input), expected);
      if (expected === '') assert.deepEqual(sp.encode(input).pieces, []);
    });
  }

  test('§6 unknown merging', () => {
    assert.deepEqual(sp.encode('你好世界'), { pieces: ['▁', '你好世界'], ids: [3, 2] });
    assert.deepEqual(sp.encode('ÇÇa'), { pieces: ['▁', 'ÇÇ', 'a'], ids: [3, 2, 9] });
    assert.deepEqual(sp.encode('Ç Ç').ids, [3, 2, 3, 2]);
  });

  test('§5.1 literal control strings are split into ordinary pieces', () => {
    assert.deepEqual(sp.encode('</s>').pieces, ['▁', '<', '/', 's', '>']);
    assert.equal(sp.pieceToId('</s>'), 1);
    assert.equal(sp.pieceToId('not a piece'), 2);
  });

  test('§4.1 a USER_DEFINED piece is copied through before the charsmap sees it', async () => {
    const m = decodeModelProto(new Uint8Array(await readFile(join(hubDir, 'google', 'flan-t5-large', 'spiece.model'))));
    m.pieces.push({ piece: 'ﬁ', bytes: new TextEncoder().encode('ﬁ'), score: 0, type: PieceType.userDefined });
    const user = new SentencePieceProcessor(m);
    assert.equal(user.normalize('ﬁne ﬂ'), '▁ﬁne▁fl');
    assert.deepEqual(user.encode('ﬁne').pieces.slice(0, 2), ['▁', 'ﬁ']);
    assert.equal(user.encode('ﬁne').ids[1], 32000);
  });

  test('a lone surrogate is encoded as U+FFFD, which the charsmap makes a space', () => {
    assert.deepEqual(sp.encode('a\ud800b').pieces, sp.encode('a b').pieces);
  });
});
