import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Normalizer } from '../../../src/tokenizers/sentencepiece/normalizer.js';
import { SentencePieceProcessor } from '../../../src/tokenizers/sentencepiece/processor.js';
import { decodeModelProto, type ModelProto } from '../../../src/tokenizers/sentencepiece/proto.js';
import { hubDir, needsShared, referenceDir, repoPath } from '../../helpers/shared.js';

/** shared/reference/t5-charsmap-vectors.json (schema: shared/docs/sentencepiece.md §8). */
interface Vectors {
  single: Record<string, string>;
  multi: { kind: string; input: string; input_codepoints: string; output: string }[];
  golden: { text: string; normalized: string; charsmap_only: string; pieces: string[]; ids: number[] }[];
  tiny_repo_charsmap_differences: {
    extra_multi_char_rule: { input_codepoints: string; output: string };
    single: { codepoint: string; t5: string; tiny: string }[];
  };
}

const vectors: Vectors | undefined = needsShared
  ? undefined
  : (JSON.parse(readFileSync(join(referenceDir, 't5-charsmap-vectors.json'), 'utf8')) as Vectors);

function fromCodepoints(list: string): string {
  return String.fromCodePoint(...list.split(' ').map((h) => parseInt(h.replace(/^U\+/, ''), 16)));
}

/** What `spm_normalize --remove_extra_whitespaces=false` applies: the charsmap alone. */
function charsmapOnly(model: ModelProto): Normalizer {
  return new Normalizer({
    spec: { ...model.normalizerSpec, addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: false },
  });
}

describe('T5 charsmap vectors (sentencepiece 0.1.97 spm_normalize / encode)', { skip: needsShared }, () => {
  let t5: ModelProto;
  let only: Normalizer;
  let sp: SentencePieceProcessor;
  before(async () => {
    t5 = decodeModelProto(new Uint8Array(await readFile(join(hubDir, 'google', 'flan-t5-large', 'spiece.model'))));
    only = charsmapOnly(t5);
    sp = new SentencePieceProcessor(t5);
  });

  test('single: all 4837 listed code points map as listed', () => {
    const entries = Object.entries((vectors as Vectors).single);
    assert.equal(entries.length, 4837);
    for (const [hex, expected] of entries) {
      assert.equal(only.normalize(String.fromCodePoint(parseInt(hex, 16))), expected, `U+${hex}`);
    }
  });

  test('single: every other scalar value U+0000…U+10FFFF maps to itself', () => {
    const single = (vectors as Vectors).single;
    let checked = 0;
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const hex = cp.toString(16).toUpperCase().padStart(4, '0');
      if (hex in single) continue;
      const ch = String.fromCodePoint(cp);
      const out = only.normalize(ch);
      if (out !== ch) assert.fail(`U+${hex} became ${JSON.stringify(out)}`);
      checked++;
    }
    assert.equal(checked + 4837, 1112064);
  });

  test('multi: 205 longest-match and context sequences', () => {
    const multi = (vectors as Vectors).multi;
    assert.equal(multi.length, 205);
    for (const m of multi) {
      assert.equal(fromCodepoints(m.input_codepoints), m.input);
      assert.equal(only.normalize(m.input), m.output, `${m.kind} ${m.input_codepoints}`);
    }
  });

  test('golden texts: full normaliser, charsmap only, pieces and ids', () => {
    const golden = (vectors as Vectors).golden;
    assert.equal(golden.length, 28);
    for (const g of golden) {
      assert.equal(sp.normalize(g.text), g.normalized, g.text);
      assert.equal(only.normalize(g.text), g.charsmap_only, g.text);
      const r = sp.encode(g.text);
      assert.deepEqual(r.pieces, g.pieces, g.text);
      assert.deepEqual(r.ids, g.ids, g.text);
      assert.equal(r.pieces.join(''), g.normalized, 'pieces join back to the normalised text');
    }
  });

  test('tiny repos: the newer charsmap differs exactly where listed', async () => {
    const tiny = decodeModelProto(new Uint8Array(await readFile(join(repoPath('flan-t5'), 'spiece.model'))));
    assert.equal(tiny.normalizerSpec.precompiledCharsmap.length, 237561);
    const tinyOnly = charsmapOnly(tiny);
    const diff = (vectors as Vectors).tiny_repo_charsmap_differences;
    assert.equal(diff.single.length, 15);
    for (const d of diff.single) {
      const ch = String.fromCodePoint(parseInt(d.codepoint.slice(2), 16));
      assert.equal(tinyOnly.normalize(ch), d.tiny, d.codepoint);
      assert.equal(only.normalize(ch), d.t5, d.codepoint);
    }
    const rule = fromCodepoints(diff.extra_multi_char_rule.input_codepoints);
    assert.equal(tinyOnly.normalize(rule), diff.extra_multi_char_rule.output);
    assert.equal(only.normalize(rule), rule);
  });
});
