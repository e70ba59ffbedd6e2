import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, NotFoundError } from '../../src/errors.js';
import {
  FlaubertTokenizer,
  XlmBpe,
  ignoredLowercaseNotice,
  loadFlaubertTokenizer,
  mosesPipeline,
  mosesTokenize,
  parseMerges,
  preprocessText,
} from '../../src/tokenizers/flaubert.js';
import { cleanUpTokenization } from '../../src/tokenizers/decode.js';
import { goldenDir, hubDir, needsShared, referenceDir, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';
import { padBatch } from './pad-batch.js';

interface GoldenCase {
  text: string;
  normalization_stages: {
    preprocess_text: string;
    moses_pipeline: string;
    moses_tokens: string[];
    bpe: string[];
  } | null;
  tokens_without_special: string[];
  input_ids: number[];
  token_type_ids: number[];
  attention_mask: number[];
  tokens: string[];
  decode: string;
  decode_skip_special_tokens: string;
  decode_no_cleanup: string;
  input_ids_do_lowercase_true?: number[];
  tokens_do_lowercase_true?: string[];
}

interface GoldenFile {
  repo: string;
  tokenizer_facts: {
    len_tokenizer: number;
    vocab_size: number;
    num_merges: number;
    do_lowercase: boolean;
    bos_token_id: number;
    sep_token_id: number;
    cls_token_id: number;
    pad_token_id: number;
    unk_token_id: number;
    mask_token: string;
    mask_token_id: number;
    clean_up_tokenization_spaces: boolean;
  };
  variant_load_kwargs: Record<string, { do_lowercase?: boolean }> | null;
  cases: GoldenCase[];
  batch_padding_case: {
    texts: string[];
    input_ids: number[][];
    token_type_ids: number[][];
    attention_mask: number[][];
  };
}

/** The golden files and the directory each was made from. */
const GOLDEN: ReadonlyArray<readonly [file: string, dir: () => string]> = [
  ['tokenizer-flaubert-cased.json', () => repoPath('flaubert-cased')],
  ['tokenizer-flaubert-uncased.json', () => repoPath('flaubert-uncased')],
  ['tokenizer-hub-flaubert-base-uncased.json', () => join(hubDir, '_derived', 'flaubert', 'flaubert_base_uncased')],
];

async function readGolden(file: string): Promise<GoldenFile> {
  return JSON.parse(await readFile(join(goldenDir, file), 'utf8')) as GoldenFile;
}

/** Read while the tests are declared, so that each golden case is a test of its own. */
function goldenCases(file: string): GoldenCase[] {
  if (needsShared !== false) return [];
  return (JSON.parse(readFileSync(join(goldenDir, file), 'utf8')) as GoldenFile).cases;
}

/** Every golden field of one case, compared one by one so a failure names the field. */
function checkCase(tok: FlaubertTokenizer, c: GoldenCase): void {
  const stages = c.normalization_stages;
  if (stages !== null) {
    const pre = preprocessText(c.text, tok.doLowercase);
    assert.equal(pre, stages.preprocess_text, 'preprocess_text');
    const pipeline = mosesPipeline(pre);
    assert.equal(pipeline, stages.moses_pipeline, 'moses_pipeline');
    const words = mosesTokenize(pipeline);
    assert.deepEqual(words, stages.moses_tokens, 'moses_tokens');
    assert.deepEqual(
      words.map((w) => tok.bpe(w)),
      stages.bpe,
      'bpe',
    );
  }
  assert.deepEqual(tok.tokenize(c.text), c.tokens_without_special, 'tokens_without_special');
  const enc = tok.encode(c.text);
  assert.deepEqual(enc.ids, c.input_ids, 'input_ids');
  assert.deepEqual(enc.tokenTypeIds, c.token_type_ids, 'token_type_ids');
  assert.deepEqual(padBatch([enc], tok.special.pad).attentionMask[0], c.attention_mask, 'attention_mask');
  assert.deepEqual(enc.tokens, c.tokens, 'tokens');
  assert.equal(tok.decode(c.input_ids), c.decode, 'decode');
  const skipped = tok.decode(c.input_ids, { skipSpecialTokens: true });
  assert.equal(skipped, c.decode_skip_special_tokens, 'decode_skip_special_tokens');
  assert.equal(tok.decode(c.input_ids, { cleanUpTokenizationSpaces: false }), c.decode_no_cleanup, 'decode_no_cleanup');
  const bare = tok.encode(c.text, { addSpecialTokens: false }).ids;
  assert.deepEqual(bare, c.input_ids.slice(1, -1), 'without special tokens');
}

for (const [file, dir] of GOLDEN) {
  describe(`golden ${file}`, { skip: needsShared }, () => {
    let golden: GoldenFile;
    let tok: FlaubertTokenizer;
    before(async () => {
      golden = await readGolden(file);
      assert.equal(join(referenceDir, golden.repo), dir());
      tok = await loadFlaubertTokenizer(dir());
    });

    test('tokenizer facts', () => {
      const f = golden.tokenizer_facts;
      assert.equal(tok.kind, 'flaubert');
      assert.equal(tok.size, f.len_tokenizer);
      assert.equal(tok.vocabSize, f.vocab_size);
      assert.equal(tok.doLowercase, f.do_lowercase);
      assert.equal(tok.cleanUpTokenizationSpaces, f.clean_up_tokenization_spaces);
      assert.deepEqual(tok.special, {
        bos: f.bos_token_id,
        eos: f.sep_token_id,
        pad: f.pad_token_id,
        unk: f.unk_token_id,
        mask: f.mask_token_id,
      });
      assert.equal(tok.sepId, f.sep_token_id);
      assert.equal(tok.tokenToId('</s>'), f.cls_token_id);
      assert.equal(tok.maskToken, f.mask_token);
      assert.deepEqual(tok.specialTokens, [
        '<s>',
        '<unk>',
        '</s>',
        '<pad>',
        '<special1>',
        ...[0, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `<special${i}>`),
      ]);
    });

    const cases = goldenCases(file);
    test('has the 29 cases', { skip: needsShared }, () => assert.equal(cases.length, 29));
    cases.forEach((c, i) => {
      test(`case ${i}: ${JSON.stringify(c.text).slice(0, 70)}`, () => checkCase(tok, c));
    });

    test('batch_padding_case', () => {
      const b = golden.batch_padding_case;
      const batch = padBatch(
        b.texts.map((t) => tok.encode(t)),
        tok.special.pad,
      );
      assert.deepEqual(batch.inputIds, b.input_ids);
      assert.deepEqual(batch.tokenTypeIds, b.token_type_ids);
      assert.deepEqual(batch.attentionMask, b.attention_mask);
    });

    test('the BPE agrees with a literal port of the reference loop on every golden word', async () => {
      const merges = parseMerges(await readFile(join(dir(), 'merges.txt'), 'utf8'));
      assert.equal(merges.size, golden.tokenizer_facts.num_merges);
      for (const c of golden.cases) {
        for (const word of c.normalization_stages?.moses_tokens ?? []) {
          assert.equal(tok.bpe(word), referenceBpe(merges, word), word);
        }
      }
    });
  });
}

describe('golden tokenizer-hub-flaubert-base-uncased.json with do_lowercase=True', { skip: needsShared }, () => {
  test('input_ids_do_lowercase_true and tokens_do_lowercase_true of every case', async () => {
    const golden = await readGolden('tokenizer-hub-flaubert-base-uncased.json');
    assert.deepEqual(golden.variant_load_kwargs, { do_lowercase_true: { do_lowercase: true } });
    const dir = join(hubDir, '_derived', 'flaubert', 'flaubert_base_uncased');
    const plain = await loadFlaubertTokenizer(dir);
    assert.deepEqual(plain.lowercase, { doLowercase: false, source: 'default', ignoredDoLowerCase: true });
    assert.match(ignoredLowercaseNotice(plain.lowercase) ?? '', /do_lower_case/);
    const tok = await loadFlaubertTokenizer(dir, { doLowercase: true });
    assert.equal(tok.lowercase.source, 'override');
    for (const c of golden.cases) {
      const enc = tok.encode(c.text);
      assert.deepEqual(enc.ids, c.input_ids_do_lowercase_true, JSON.stringify(c.text));
      assert.deepEqual(enc.tokens, c.tokens_do_lowercase_true, JSON.stringify(c.text));
    }
  });
});

// ---------------------------------------------------------------------------------------------------------

/** FLB `bpe` taken literally (min over pairs, merge every occurrence left to right, repeat), as an oracle. */
function referenceBpe(ranks: ReadonlyMap<string, number>, token: string): string {
  let word = Array.from(token);
  if (word.length === 0) return '';
  word[word.length - 1] += '</w>';
  if (word.length === 1) return word[0] as string;
  for (;;) {
    let best: [string, string] | undefined;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = [word[i] as string, word[i + 1] as string];
      }
    }
    if (best === undefined) break;
    const [first, second] = best;
    const merged: string[] = [];
    for (let i = 0; i < word.length; ) {
      if (word[i] === first && i + 1 < word.length && word[i + 1] === second) {
        merged.push(first + second);
        i += 2;
      } else {
        merged.push(word[i] as string);
        i += 1;
      }
    }
    word = merged;
    if (word.length === 1) break;
  }
  return word.join(' ');
}

describe('BPE', () => {
  test('matches the literal reference loop on random merges and words', () => {
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor((seed / 2147483648) * n);
    };
    const alphabet = ['a', 'b', 'c', 'é', '😀'];
    for (let trial = 0; trial < 40; trial++) {
      // Merges over symbols that can actually occur: random pairs of earlier results.
      const symbols = [...alphabet, ...alphabet.map((s) => `${s}</w>`)];
      const lines: string[] = [];
      for (let m = 0; m < 60; m++) {
        const a = symbols[random(symbols.length)] as string;
        const b = symbols[random(symbols.length)] as string;
        if (a.endsWith('</w>')) continue;
        lines.push(`${a} ${b}`);
        symbols.push(a + b);
      }
      const ranks = parseMerges(`${lines.join('\n')}\n`);
      const bpe = new XlmBpe(ranks);
      for (let w = 0; w < 200; w++) {
        let word = '';
        for (let k = random(14); k >= 0; k--) word += alphabet[random(alphabet.length)];
        assert.equal(bpe.joined(word), referenceBpe(ranks, word), word);
      }
    }
  });

  test('a single character gets </w> without any merge', () => {
    const bpe = new XlmBpe(new Map());
    assert.deepEqual(bpe.pieces('x'), ['x</w>']);
    assert.deepEqual(bpe.pieces('😀'), ['😀</w>']);
    assert.deepEqual(bpe.pieces('ab'), ['a', 'b</w>']);
  });

  test('long words stay fast', () => {
    const bpe = new XlmBpe(parseMerges('a a\naa aa\naaaa aaaa\na a</w>\n'));
    const t0 = performance.now();
    const pieces = bpe.pieces('a'.repeat(100_000));
    assert.equal(pieces.join('').length, 100_000 + 4);
    assert.ok(performance.now() - t0 < 3000);
  });
});

describe('merges.txt reading (FLB __init__)', () => {
  test('fastBPE "a b count" and save_pretrained "a b" lines give the same ranks', () => {
    assert.deepEqual([...parseMerges('e s</w> 68\no u 45\n')], [...parseMerges('e s</w>\no u\n')]);
    assert.deepEqual([...parseMerges('e s</w>\no u\n')], [
      ['e s</w>', 0],
      ['o u', 1],
    ]);
  });

  test('the last element after the final "\\n" is dropped, so an unterminated last line is lost', () => {
    assert.deepEqual([...parseMerges('a b\nc d')], [['a b', 0]]);
  });

  test('CRLF, blank lines, one-field lines and repeated pairs', () => {
    assert.deepEqual([...parseMerges('a b\r\n\r\nx\r\nc\u00a0d\r\na b\r\n')], [
      ['a b', 4],
      ['c d', 3],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------

const SPECIALS = ['<s>', '</s>', '<pad>', '<unk>', ...Array.from({ length: 10 }, (_, i) => `<special${i}>`)];

/** A minimal FlauBERT directory: the 14 special tokens, then the given units. */
interface TinyRepoFiles {
  units?: string[];
  merges?: string;
  config?: object;
  specialMap?: object;
}

async function tinyRepo(files: TinyRepoFiles = {}): Promise<string> {
  const dir = await tempDir('tfhf-flaubert-');
  const units = files.units ?? ['a', 'b', 'a</w>', 'b</w>', 'ab</w>', 'l', "l'</w>", "'</w>", '.</w>', 'A', 'A</w>'];
  const vocab = Object.fromEntries([...SPECIALS, ...units].map((t, i) => [t, i]));
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), files.merges ?? "a b</w>\nl '</w>\n");
  if (files.config !== undefined) await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  if (files.specialMap !== undefined) {
    await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify(files.specialMap));
  }
  return dir;
}

describe('loading', () => {
  test('defaults without tokenizer_config.json: FlauBERT special tokens, no lower-casing', async () => {
    const tok = await loadFlaubertTokenizer(await tinyRepo());
    assert.equal(tok.size, 25);
    assert.deepEqual(tok.special, { bos: 0, eos: 1, pad: 2, unk: 3, mask: 5 });
    assert.equal(tok.maskToken, '<special1>');
    assert.deepEqual(tok.lowercase, { doLowercase: false, source: 'default', ignoredDoLowerCase: undefined });
    assert.deepEqual(tok.encode("l'ab A").ids, [0, 20, 18, 24, 1]);
    assert.deepEqual(tok.encode("l'ab A").tokenTypeIds, [0, 0, 0, 0, 0]);
  });

  test('do_lowercase is read, do_lower_case is only reported, the override wins', async () => {
    const lower = await loadFlaubertTokenizer(await tinyRepo({ config: { do_lowercase: true } }));
    assert.deepEqual(lower.lowercase, {
      doLowercase: true,
      source: 'tokenizer_config.json',
      ignoredDoLowerCase: undefined,
    });
    assert.deepEqual(lower.tokenize('AB'), ['ab</w>']);
    const hubStyle = await loadFlaubertTokenizer(await tinyRepo({ config: { do_lower_case: true } }));
    assert.deepEqual(hubStyle.lowercase, { doLowercase: false, source: 'default', ignoredDoLowerCase: true });
    assert.deepEqual(hubStyle.tokenize('A'), ['A</w>']);
    const forced = await loadFlaubertTokenizer(await tinyRepo({ config: { do_lowercase: true } }), {
      doLowercase: false,
    });
    assert.deepEqual(forced.lowercase, { doLowercase: false, source: 'override', ignoredDoLowerCase: undefined });
    assert.notEqual(ignoredLowercaseNotice(hubStyle.lowercase), undefined);
    assert.equal(ignoredLowercaseNotice(lower.lowercase), undefined);
    const hubForced = await loadFlaubertTokenizer(await tinyRepo({ config: { do_lower_case: true } }), {
      doLowercase: true,
    });
    assert.equal(ignoredLowercaseNotice(hubForced.lowercase), undefined);
  });

  test('special tokens are cut out before Moses and never lower-cased', async () => {
    const tok = await loadFlaubertTokenizer(await tinyRepo({ config: { do_lowercase: true } }));
    assert.deepEqual(tok.tokenize('A<special1>B <s>'), ['a</w>', '<special1>', 'b</w>', '<s>']);
    assert.deepEqual(tok.encode('<special1>').ids, [0, 5, 1]);
  });

  test('lstrip/rstrip from added_tokens_decoder strip the neighbouring text before normalisation', async () => {
    const strips = (t: string): boolean => t === '<special1>';
    const decoder = Object.fromEntries(
      SPECIALS.map((t, i) => [
        String(i),
        { content: t, lstrip: strips(t), rstrip: strips(t), single_word: false, normalized: false, special: true },
      ]),
    );
    const strip = await loadFlaubertTokenizer(await tinyRepo({ config: { added_tokens_decoder: decoder } }));
    const plain = await loadFlaubertTokenizer(await tinyRepo());
    // Without lstrip the segment is `a." `, and rule 45 of the normaliser moves the period behind the quote.
    assert.deepEqual(strip.tokenize('a." <special1>'), ['a</w>', '.</w>', '"</w>', '<special1>']);
    assert.deepEqual(plain.tokenize('a." <special1>'), ['a</w>', '"</w>', '.</w>', '<special1>']);
    assert.deepEqual(strip.tokenize('<special1>\u0085 b'), ['<special1>', 'b</w>']);
  });

  test('special_tokens_map.json overrides the defaults; an unknown special token gets a new id', async () => {
    const tok = await loadFlaubertTokenizer(await tinyRepo({ specialMap: { mask_token: '<mask>' } }));
    assert.equal(tok.maskToken, '<mask>');
    assert.equal(tok.special.mask, 25);
    assert.equal(tok.size, 26);
    assert.deepEqual(tok.encode('a<mask>').ids, [0, 16, 25, 1]);
    assert.equal(tok.decode([0, 16, 25, 1]), '<s>a <mask></s>');
  });

  test('missing and malformed files are typed errors', async () => {
    await assert.rejects(loadFlaubertTokenizer(join(await tempDir(), 'nowhere')), NotFoundError);
    const dir = await tinyRepo();
    await writeFile(join(dir, 'vocab.json'), '{"a": 1,');
    await assert.rejects(loadFlaubertTokenizer(dir), FormatError);
    await writeFile(join(dir, 'vocab.json'), '{"a": "x"}');
    await assert.rejects(loadFlaubertTokenizer(dir), FormatError);
    await writeFile(join(dir, 'vocab.json'), '["a"]');
    await assert.rejects(loadFlaubertTokenizer(dir), FormatError);
  });
});

describe('decoding (XLM convert_tokens_to_string + transformers _decode)', () => {
  test('</w> becomes a space, the clean-up joins punctuation, unknown ids read as <unk>', async () => {
    const tok = await loadFlaubertTokenizer(await tinyRepo());
    assert.equal(tok.decode([0, 20, 18, 22, 1]), "<s>l' ab. </s>");
    assert.equal(tok.decode([0, 20, 18, 22, 1], { cleanUpTokenizationSpaces: false }), "<s>l' ab . </s>");
    assert.equal(tok.decode([0, 20, 18, 22, 1], { skipSpecialTokens: true }), "l' ab.");
    assert.equal(tok.decode([999, 14]), '<unk>a');
    assert.equal(tok.idToToken(999), undefined);
    assert.equal(tok.tokenToId('zzz'), undefined);
  });

  test('clean_up_tokenization replaces exactly the transformers list', () => {
    assert.equal(
      cleanUpTokenization("a . b ? c ! d , e ' f do n't I 'm it 's we 've they 're"),
      "a. b? c! d, e'f don't I'm it's we've they're",
    );
  });
});
