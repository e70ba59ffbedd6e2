import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError } from '../../src/errors.js';
import { createT5Tokenizer, loadT5Tokenizer, T5Tokenizer, TokenIdError } from '../../src/tokenizers/t5.js';
import { goldenDir, hubDir, needsShared, referenceDir, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { padBatch } from './pad-batch.js';

interface GoldenCase {
  text: string;
  sentencepiece_pieces: string[];
  tokens_without_special: string[];
  input_ids: number[];
  attention_mask: number[];
  tokens: string[];
  decode: string;
  decode_skip_special_tokens: string;
  decode_no_cleanup: string;
  input_ids_legacy_false: number[];
}

interface Golden {
  repo: string;
  tokenizer_facts: {
    len_tokenizer: number;
    sp_vocab_size: number;
    pad_token_id: number;
    eos_token_id: number;
    unk_token_id: number;
    extra_id_0: number;
    extra_id_99: number;
    legacy: boolean;
    clean_up_tokenization_spaces: boolean;
  };
  cases: GoldenCase[];
  batch_padding_case: { texts: string[]; input_ids: number[][]; attention_mask: number[][] };
}

function readGolden(name: string): Golden | undefined {
  return needsShared ? undefined : (JSON.parse(readFileSync(join(goldenDir, name), 'utf8')) as Golden);
}

const flanLarge = join(hubDir, 'google', 'flan-t5-large');

/** input_ids and attention_mask of `tokenizer(texts, padding=True)`. */
function padTexts(tokenizer: T5Tokenizer, texts: string[]): { ids: number[][]; mask: number[][] } {
  const batch = padBatch(texts.map((t) => tokenizer.encode(t)), tokenizer.special.pad);
  return { ids: batch.inputIds, mask: batch.attentionMask };
}

for (const file of ['tokenizer-t5.json', 'tokenizer-t5-test-sentencepiece.json', 'tokenizer-hub-flan-t5.json']) {
  const golden = readGolden(file);
  describe(`T5Tokenizer vs golden/${file}`, { skip: needsShared }, () => {
    let tok: T5Tokenizer;
    let tokLegacyFalse: T5Tokenizer;
    before(async () => {
      const dir = join(referenceDir, (golden as Golden).repo);
      tok = await loadT5Tokenizer(dir);
      tokLegacyFalse = await loadT5Tokenizer(dir, { legacy: false });
    });

    test('tokenizer facts', () => {
      const facts = (golden as Golden).tokenizer_facts;
      assert.equal(tok.size, facts.len_tokenizer);
      assert.equal(tok.spSize, facts.sp_vocab_size);
      assert.deepEqual(
        { pad: tok.special.pad, eos: tok.special.eos, unk: tok.special.unk },
        { pad: facts.pad_token_id, eos: facts.eos_token_id, unk: facts.unk_token_id },
      );
      assert.equal(tok.tokenToId('<extra_id_0>'), facts.extra_id_0);
      assert.equal(tok.tokenToId('<extra_id_99>'), facts.extra_id_99);
      assert.equal(tok.legacy, facts.legacy);
      assert.equal(tok.cleanUpTokenizationSpaces, facts.clean_up_tokenization_spaces);
    });

    for (const [i, c] of (golden?.cases ?? []).entries()) {
      test(`case ${i}: ${JSON.stringify(c.text).slice(0, 60)}`, () => {
        assert.deepEqual(tok.sp.encode(c.text).pieces, c.sentencepiece_pieces, 'sentencepiece_pieces');
        assert.deepEqual(tok.tokenize(c.text), c.tokens_without_special, 'tokens_without_special');
        const enc = tok.encode(c.text);
        assert.deepEqual(enc.ids, c.input_ids, 'input_ids');
        assert.deepEqual(enc.ids.map(() => 1), c.attention_mask, 'attention_mask');
        assert.deepEqual(enc.tokens, c.tokens, 'tokens');
        assert.equal(tok.decode(c.input_ids), c.decode, 'decode');
        assert.equal(tok.decode(c.input_ids, { skipSpecialTokens: true }), c.decode_skip_special_tokens, 'decode_skip_special_tokens');
        assert.equal(tok.decode(c.input_ids, { cleanUpTokenizationSpaces: false }), c.decode_no_cleanup, 'decode_no_cleanup');
        assert.deepEqual(tokLegacyFalse.encode(c.text).ids, c.input_ids_legacy_false, 'input_ids_legacy_false');
      });
    }

    test('batch_padding_case', () => {
      const b = (golden as Golden).batch_padding_case;
      const { ids, mask } = padTexts(tok, b.texts);
      assert.deepEqual(ids, b.input_ids);
      assert.deepEqual(mask, b.attention_mask);
    });

    test('ids past the tokenizer raise, as the slow tokenizer does', () => {
      assert.throws(() => tok.decode([tok.size]), TokenIdError);
      assert.throws(() => tok.decode([-1]), TokenIdError);
      assert.equal(tok.idToToken(tok.size), undefined);
    });
  });
}

/** A generation record of the model goldens (golden/<t5 model>.json, cases.*). */
interface GenerationRecord {
  prompt?: string;
  prompts?: string[];
  input_ids?: number[] | number[][];
  attention_mask?: number[] | number[][];
  sequences?: number[][];
  decoded_skip_special_tokens?: (string | null)[];
  decode_errors?: (string | null)[];
}

for (const file of ['flan-t5.json', 't5-relu.json', 'ul2.json']) {
  describe(`model golden/${file}: prompts encode, generated ids decode or raise`, { skip: needsShared }, () => {
    test('every record', async () => {
      const golden = JSON.parse(await readFile(join(goldenDir, file), 'utf8')) as { repo: string; cases: Record<string, GenerationRecord | GenerationRecord[]> };
      const tok = await loadT5Tokenizer(join(referenceDir, golden.repo));
      let decoded = 0;
      let raised = 0;
      for (const group of Object.values(golden.cases)) {
        for (const r of Array.isArray(group) ? group : [group]) {
          if (r.prompt !== undefined && r.input_ids !== undefined && r.prompts === undefined) {
            assert.deepEqual(tok.encode(r.prompt).ids, r.input_ids, r.prompt);
          }
          if (r.prompts !== undefined && r.input_ids !== undefined) {
            const { ids, mask } = padTexts(tok, r.prompts);
            assert.deepEqual(ids, r.input_ids);
            assert.deepEqual(mask, r.attention_mask);
          }
          if (r.sequences === undefined || r.decoded_skip_special_tokens === undefined) continue;
          r.sequences.forEach((row, i) => {
            if (r.decode_errors?.[i]) {
              assert.equal(r.decode_errors[i], 'IndexError: piece id is out of range.');
              assert.throws(() => tok.decode(row, { skipSpecialTokens: true }), TokenIdError);
              raised++;
            } else {
              assert.equal(tok.decode(row, { skipSpecialTokens: true }), r.decoded_skip_special_tokens?.[i], JSON.stringify(row));
              decoded++;
            }
          });
        }
      }
      assert.ok(decoded > 0);
      if (file === 'flan-t5.json') assert.ok(raised > 0, 'flan-t5 generates ids past the tokenizer (config vocab 1128 > 1100)');
    });
  });
}

describe('tokenizer.json gives the same ids as spiece.model', { skip: needsShared }, () => {
  const golden = readGolden('tokenizer-hub-flan-t5.json');
  let fromSpiece: T5Tokenizer;
  before(async () => {
    fromSpiece = await loadT5Tokenizer(flanLarge);
  });

  /** The tokenizer.json path alone: the directory's other files, but no spiece.model. */
  async function fromJsonOnly(dir: string, legacy?: boolean): Promise<T5Tokenizer> {
    const read = async (name: string): Promise<unknown> => {
      try {
        return JSON.parse(await readFile(join(dir, name), 'utf8')) as unknown;
      } catch {
        return undefined;
      }
    };
    return createT5Tokenizer(
      {
        tokenizerJson: await read('tokenizer.json'),
        tokenizerConfig: await read('tokenizer_config.json'),
        specialTokensMap: await read('special_tokens_map.json'),
      },
      { legacy },
    );
  }

  test('flan-t5-large: every golden text, both legacy settings, tokens and ids', async () => {
    const json = await fromJsonOnly(flanLarge);
    const jsonLegacyFalse = await fromJsonOnly(flanLarge, false);
    const spLegacyFalse = await loadT5Tokenizer(flanLarge, { legacy: false });
    assert.equal(json.size, fromSpiece.size);
    assert.equal(json.spSize, 32000);
    for (const c of (golden as Golden).cases) {
      assert.deepEqual(json.encode(c.text), fromSpiece.encode(c.text), c.text);
      assert.deepEqual(json.tokenize(c.text), c.tokens_without_special, c.text);
      assert.deepEqual(json.sp.encode(c.text).pieces, c.sentencepiece_pieces, c.text);
      assert.deepEqual(jsonLegacyFalse.encode(c.text).ids, spLegacyFalse.encode(c.text).ids, c.text);
      assert.equal(json.decode(c.input_ids), c.decode, c.text);
    }
  });

  for (const name of ['t5-small', join('google', 'flan-t5-small'), join('google', 'flan-t5-base')]) {
    test(`${name}/tokenizer.json encodes like flan-t5-large's spiece.model`, async () => {
      const json = await fromJsonOnly(join(hubDir, name));
      assert.equal(json.size, 32100);
      for (const c of (golden as Golden).cases) {
        assert.deepEqual(json.encode(c.text).ids, c.input_ids, c.text);
      }
    });
  }

  test('loadT5Tokenizer falls back to tokenizer.json (t5-small ships no spiece.model)', async () => {
    const tok = await loadT5Tokenizer(join(hubDir, 't5-small'));
    const c = (golden as Golden).cases[2] as GoldenCase;
    assert.deepEqual(tok.encode(c.text).ids, c.input_ids);
    assert.equal(tok.special.eos, 1);
    assert.equal(tok.tokenToId('<extra_id_0>'), 32099);
  });
});

describe('reference encodings of the documentation', { skip: needsShared }, () => {
  let tok: T5Tokenizer;
  let tokLegacyFalse: T5Tokenizer;
  before(async () => {
    tok = await loadT5Tokenizer(flanLarge);
    tokLegacyFalse = await loadT5Tokenizer(flanLarge, { legacy: false });
  });

  // shared/docs/tokenizers.md §A.1: plain SentencePieceProcessor.encode (no EOS) on the real model.
  const a1: [string, string, number[]][] = [
    ['translate English to German: How old are you?', '▁translate ▁English ▁to ▁German : ▁How ▁old ▁are ▁you ?', [13959, 1566, 12, 2968, 10, 571, 625, 33, 25, 58]],
    ['A step by step recipe to make bolognese pasta:', '▁A ▁step ▁by ▁step ▁recipe ▁to ▁make ▁ b ologne s e ▁pasta :', [71, 1147, 57, 1147, 2696, 12, 143, 3, 115, 23443, 7, 15, 13732, 10]],
    ['Hello  world', '▁Hello ▁world', [8774, 296]],
    [' leading space', '▁leading ▁space', [1374, 628]],
    ['Ça va? 1,5 km', '▁ Ç a ▁va ? ▁1,5 ▁km', [3, 2, 9, 409, 58, 18694, 2280]],
    ['tab\there', '▁tab ▁here', [3808, 270]],
  ];
  for (const [text, pieces, ids] of a1) {
    test(`tokenizers.md A.1: ${JSON.stringify(text)}`, () => {
      const r = tok.sp.encode(text);
      assert.deepEqual(r.pieces, pieces.split(' '));
      assert.deepEqual(r.ids, ids);
      assert.deepEqual(tok.encode(text).ids, [...ids, 1]);
    });
  }

  test('tokenizers.md A.1: id facts', () => {
    assert.equal(tok.idToToken(3), '▁');
    assert.equal(tok.idToToken(31999), '▁Internațional');
    assert.equal(tok.tokenToId('Ç'), undefined);
    assert.deepEqual(tok.encode('Ç', { addSpecialTokens: false }).ids, [3, 2]);
    assert.equal(tok.decode([8774, 296, 55]), 'Hello world!');
  });

  // shared/docs/sentencepiece.md §7.4 (Hub flan-t5-large, input_ids incl. EOS), legacy true and false.
  const s74: [string, number[], number[]][] = [
    ['Hello <extra_id_0>. World', [8774, 32099, 3, 5, 1150, 1], [8774, 32099, 5, 1150, 1]],
    ['<extra_id_0>. Hello', [32099, 3, 5, 8774, 1], [32099, 5, 8774, 1]],
    ['a<extra_id_0>b', [3, 9, 32099, 3, 115, 1], [3, 9, 32099, 115, 1]],
    ['a <pad>b', [3, 9, 0, 3, 115, 1], [3, 9, 0, 115, 1]],
    ['你好<extra_id_1>世界', [3, 2, 32098, 3, 2, 1], [3, 2, 32098, 2, 1]],
    ['Hey <extra_id_0>  ▁x', [9459, 32099, 3, 226, 1], [9459, 32099, 3, 226, 1]],
  ];
  for (const [text, legacyIds, newIds] of s74) {
    test(`sentencepiece.md 7.4: ${JSON.stringify(text)}`, () => {
      assert.deepEqual(tok.encode(text).ids, legacyIds);
      assert.deepEqual(tokLegacyFalse.encode(text).ids, newIds);
    });
  }

  test('sentencepiece.md 7.3: EOS is not doubled, empty text is [eos]', () => {
    assert.deepEqual(tok.encode('Hello </s>').ids, [8774, 1]);
    assert.deepEqual(tok.encode('').ids, [1]);
    assert.deepEqual(tok.encode('Hello', { addSpecialTokens: false }).ids, [8774]);
    const mid = tok.encode('The end token </s> appears').ids;
    assert.deepEqual(mid.slice(-1), [1]);
    assert.ok(mid.indexOf(1) < mid.length - 1);
  });

  test('sentencepiece.md 7.2: stripping uses Python whitespace, only for tokens that strip', async () => {
    // The Hub flan-t5-large tokens take lstrip/rstrip = false from tokenizer.json: U+0085 stays and is unknown.
    assert.deepEqual(tok.tokenize('x\u0085<extra_id_0>\u0085y'), ['▁', 'x', '\u0085', '<extra_id_0>', '▁', '\u0085', 'y']);
    // Built by the class itself (no tokenizer.json) the sentinels strip on both sides.
    const files = {
      spieceModel: new Uint8Array(await readFile(join(flanLarge, 'spiece.model'))),
      tokenizerConfig: JSON.parse(await readFile(join(flanLarge, 'tokenizer_config.json'), 'utf8')) as unknown,
      specialTokensMap: JSON.parse(await readFile(join(flanLarge, 'special_tokens_map.json'), 'utf8')) as unknown,
    };
    const stripping = createT5Tokenizer(files);
    assert.deepEqual(stripping.tokenize('x\u0085<extra_id_0>\u0085y'), ['▁', 'x', '<extra_id_0>', '▁', 'y']);
    // U+FEFF is not Python whitespace: it is kept, then normalised to a space by the charsmap.
    assert.deepEqual(stripping.tokenize('x\ufeff<extra_id_0>'), ['▁', 'x', '<extra_id_0>']);
    assert.deepEqual(stripping.tokenize('x \u001c<extra_id_0> \u3000 y'), ['▁', 'x', '<extra_id_0>', '▁', 'y']);
  });
});

describe('FLAN-UL2', { skip: needsShared }, () => {
  const ul2 = join(hubDir, 'google', 'flan-ul2');

  test('its Hub folder here has added_tokens.json and config.json but no tokenizer model', async () => {
    await assert.rejects(loadT5Tokenizer(ul2), NotFoundError);
  });

  test('with the FLAN-T5 spiece.model the [new_id_N] tokens take ids 32100…32127', async () => {
    // FLAN-UL2 uses the FLAN-T5 SentencePiece model (tokenizers.md A.2); link the files into one folder.
    const dir = await tempDir('tfhf-ul2-');
    for (const f of ['spiece.model', 'tokenizer_config.json', 'special_tokens_map.json']) await symlink(join(flanLarge, f), join(dir, f));
    await symlink(join(ul2, 'added_tokens.json'), join(dir, 'added_tokens.json'));
    const tok = await loadT5Tokenizer(dir);
    assert.equal(tok.size, 32128);
    assert.equal(tok.tokenToId('[new_id_0]'), 32100);
    assert.equal(tok.tokenToId('[new_id_27]'), 32127);
    assert.equal(tok.idToToken(32110), '[new_id_10]');
    // Added tokens split the text; they are not special, so they survive skip_special_tokens.
    assert.deepEqual(tok.tokenize('a [new_id_1] b[new_id_10]'), ['▁', 'a', '[new_id_1]', '▁', 'b', '[new_id_10]']);
    assert.deepEqual(tok.encode('a [new_id_1] b').ids, [3, 9, 32101, 3, 115, 1]);
    assert.equal(tok.decode([3, 9, 32101, 3, 115, 1], { skipSpecialTokens: true }), 'a [new_id_1] b');
    assert.equal(tok.decode([32127, 32099, 1]), '[new_id_27] <extra_id_0> </s>');
    assert.throws(() => tok.decode([32128]), TokenIdError);
    assert.deepEqual(tok.encode('Hello world').ids, [8774, 296, 1]);
  });
});

describe('loading', { skip: needsShared }, () => {
  test('t5-tokenizer-test-sentencepiece: no <pad> piece, so transformers appends it as id 1100', async () => {
    const tok = await loadT5Tokenizer(repoPath('t5-tokenizer-test-sentencepiece'));
    assert.equal(tok.special.pad, 1100);
    assert.equal(tok.idToToken(1100), '<pad>');
    assert.equal(tok.special.eos, 2);
    assert.equal(tok.special.unk, 0);
    assert.deepEqual(tok.specialTokens.slice(0, 3), ['</s>', '<unk>', '<pad>']);
    assert.equal(tok.specialTokens.length, 103);
  });

  test('a folder without tokenizer files is NotFoundError', async () => {
    const dir = await tempDir();
    await assert.rejects(loadT5Tokenizer(dir), NotFoundError);
  });
});
