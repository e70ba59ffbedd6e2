/**
 * The fill-mask pipeline against transformers' FillMaskPipeline output (golden `fill_mask_pipeline`): token,
 * token_str, sequence identical, scores within 1e-5; batching, `<mask>`, targets, errors, leaks; and T5 span
 * filling by generation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { initBackend, tf } from '../../src/backend/index.js';
import { UnsupportedError, UsageError } from '../../src/errors.js';
import { openCheckpoint } from '../../src/formats/checkpoint.js';
import { silentLog } from '../../src/log.js';
import { parseFlaubertConfig } from '../../src/models/flaubert/config.js';
import { loadFlaubert } from '../../src/models/flaubert/model.js';
import { FillMaskPipeline, parseSpans, SpanFillPipeline, toSentinels, type FillMaskResult } from '../../src/pipelines/fill-mask.js';
import { Text2TextPipeline } from '../../src/pipelines/text2text.js';
import { loadTokenizer } from '../../src/tokenizers/load.js';
import type { Tokenizer } from '../../src/tokenizers/tokenizer.js';
import { needsShared, repoPath } from '../helpers/shared.js';
import { FLAUBERT_GOLDENS, readGolden, readRepoConfig, SCORE_TOLERANCE, softmax, type FlaubertGolden, type GoldenPrediction } from '../models/flaubert/golden.js';

const options = { backend: 'wasm' as const, log: silentLog };

/** Asserts one pipeline result equals transformers' FillMaskPipeline output; returns the max score error. */
function samePredictions(actual: FillMaskResult, expected: GoldenPrediction[][], what: string): number {
  let err = 0;
  assert.equal(actual.masks.length, expected.length, `${what}: masks`);
  actual.masks.forEach((ranking, m) => {
    const want = expected[m] ?? [];
    assert.deepEqual(
      ranking.map((p) => [p.token, p.tokenStr, p.sequence]),
      want.map((p) => [p.token, p.token_str, p.sequence]),
      `${what}: mask ${m}`,
    );
    ranking.forEach((p, r) => (err = Math.max(err, Math.abs(p.score - (want[r] as GoldenPrediction).score))));
  });
  return err;
}

for (const name of FLAUBERT_GOLDENS) {
  describe(`FillMaskPipeline on ${name}`, { skip: needsShared }, () => {
    let golden: FlaubertGolden;
    let pipeline: FillMaskPipeline;
    before(async () => {
      golden = readGolden(name);
      pipeline = await FillMaskPipeline.load(repoPath(name), options);
    });
    after(() => pipeline?.dispose());

    test('every golden sentence: the fields of transformers FillMaskPipeline(top_k=5)', (t) => {
      let err = 0;
      for (const c of golden.cases.fill_mask) {
        assert.deepEqual(pipeline.encode(c.text), c.input_ids);
        const [r] = pipeline.run([c.text]);
        assert.ok(r);
        err = Math.max(err, samePredictions(r, c.fill_mask_pipeline, c.text));
      }
      t.diagnostic(`max score error ${err.toExponential(2)}`);
      assert.ok(err < SCORE_TOLERANCE, `scores: ${err}`);
    });

    test('<mask> is an alias of the mask token', () => {
      for (const c of golden.cases.fill_mask) {
        const [r] = pipeline.run([c.text.replaceAll('<special1>', '<mask>')]);
        assert.ok(r);
        samePredictions(r, c.fill_mask_pipeline, c.text);
      }
    });

    test('a batch gives what one at a time gives, and leaves no tensor behind', () => {
      const texts = golden.cases.fill_mask.map((c) => c.text);
      const alone = texts.map((t) => pipeline.run([t])[0] as FillMaskResult);
      const before = tf.memory().numTensors;
      const together = pipeline.run(texts);
      assert.equal(tf.memory().numTensors, before);
      together.forEach((r, i) => {
        const a = alone[i] as FillMaskResult;
        assert.deepEqual(
          r.masks.map((m) => m.map((p) => [p.token, p.tokenStr, p.sequence])),
          a.masks.map((m) => m.map((p) => [p.token, p.tokenStr, p.sequence])),
        );
        r.masks.forEach((m, j) => m.forEach((p, k) => assert.ok(Math.abs(p.score - (a.masks[j]?.[k]?.score ?? NaN)) < 1e-6)));
      });
    });

    test('targets: vocabulary entries as is, other words by their first token, scores from the full softmax', () => {
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const best = c.fill_mask_pipeline[0]?.[0];
      assert.ok(best);
      const inVocab = pipeline.tokenizer.idToToken(best.token) as string;
      const { ids, warnings } = pipeline.targetIds([inVocab, 'chat', inVocab]);
      const chat = pipeline.tokenizer.encode('chat', { addSpecialTokens: false }).ids[0] as number;
      assert.deepEqual(ids, [...new Set([best.token, chat])].sort((a, b) => a - b));
      assert.equal(warnings.length, 1);
      assert.match(warnings[0] as string, /'chat' does not exist in the model vocabulary; replacing it with/);

      const [r] = pipeline.run([c.text], { targets: ids, topK: 10 });
      const ranking = r?.masks[0] ?? [];
      assert.equal(ranking.length, ids.length, 'top-k is capped at the number of targets');
      // The same probabilities as in the untargeted ranking (the softmax is over the whole vocabulary).
      const [full] = pipeline.run([c.text], { topK: pipeline.model.vocabSize });
      const byId = new Map(full?.masks[0]?.map((p) => [p.token, p.score]));
      for (const p of ranking) assert.equal(p.score, byId.get(p.token));
      // And near the golden logits' softmax (those are rounded to 6 digits: a relative bound).
      const probs = softmax(c.logits_at_masks[0] as number[]);
      for (const p of ranking) assert.ok(Math.abs(p.score - (probs[p.token] as number)) <= 1e-3 * (probs[p.token] as number) + 1e-7);
      assert.equal(ranking[0]?.token, best.token);
      assert.throws(() => pipeline.targetIds(['']), UsageError);
    });

    test('a predicted <pad> is filtered out of the sequence, as FillMaskPipeline.postprocess does', () => {
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const { ids } = pipeline.targetIds(['<pad>']);
      assert.deepEqual(ids, [pipeline.tokenizer.special.pad]);
      const [r] = pipeline.run([c.text], { targets: ids });
      const without = c.input_ids.filter((_, i) => i !== c.mask_positions[0]);
      assert.equal(r?.masks[0]?.[0]?.sequence, pipeline.tokenizer.decode(without, { skipSpecialTokens: true }));
    });

    test('--top-k: more or fewer predictions, same order', () => {
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const [r] = pipeline.run([c.text], { topK: 2 });
      assert.deepEqual(r?.masks[0]?.map((p) => p.token), c.fill_mask_pipeline[0]?.slice(0, 2).map((p) => p.token));
      const [all] = pipeline.run([c.text], { topK: 100_000 });
      assert.equal(all?.masks[0]?.length, pipeline.model.vocabSize);
      assert.throws(() => pipeline.run([c.text], { topK: 0 }), UsageError);
    });

    test('a text without a mask is a usage error that says how to write one', () => {
      assert.throws(
        () => pipeline.run(['Pas de masque ici.']),
        (err: unknown) => err instanceof UsageError && /no mask token/.test(err.message) && /<special1>/.test(err.hint ?? ''),
      );
    });
  });
}

describe('FillMaskPipeline refusals', { skip: needsShared }, () => {
  before(() => initBackend('wasm', silentLog));

  test('a T5 model is refused by the token pipeline (it has no mask token)', async () => {
    await assert.rejects(FillMaskPipeline.load(repoPath('flan-t5'), options), UnsupportedError);
  });

  test('a tokenizer without a mask token, or a model without an LM head, is refused', async () => {
    const dir = repoPath('flaubert-cased');
    const tokenizer = await loadTokenizer(dir);
    const config = parseFlaubertConfig(readRepoConfig('flaubert-cased'));
    const { reader } = await openCheckpoint(dir);
    const full = await loadFlaubert(reader, config, { warmUp: false });
    const base = await loadFlaubert(reader, config, { warmUp: false, lmHead: false });
    await reader.close();
    try {
      const noMask: Tokenizer = {
        kind: tokenizer.kind,
        size: tokenizer.size,
        special: { pad: tokenizer.special.pad, eos: tokenizer.special.eos, unk: tokenizer.special.unk },
        specialTokens: tokenizer.specialTokens,
        encode: (t, o) => tokenizer.encode(t, o),
        tokenize: (t) => tokenizer.tokenize(t),
        idToToken: (id) => tokenizer.idToToken(id),
        tokenToId: (t) => tokenizer.tokenToId(t),
        decode: (ids, o) => tokenizer.decode(ids, o),
      };
      assert.throws(() => FillMaskPipeline.fromParts(noMask, full), UnsupportedError);
      assert.throws(() => FillMaskPipeline.fromParts(tokenizer, base), UnsupportedError);
      assert.equal(FillMaskPipeline.fromParts(tokenizer, full).maskToken, '<special1>');
    } finally {
      full.dispose();
      base.dispose();
    }
  });
});

describe('T5 span filling', () => {
  test('toSentinels numbers each <mask> after the sentinels already written', () => {
    assert.equal(toSentinels('a <mask> b <mask>'), 'a <extra_id_0> b <extra_id_1>');
    assert.equal(toSentinels('a <extra_id_0> b <mask> c <mask>'), 'a <extra_id_0> b <extra_id_1> c <extra_id_2>');
    assert.equal(toSentinels('<extra_id_1> <mask>'), '<extra_id_1> <extra_id_0>');
  });

  test('parseSpans reads <extra_id_N> span … up to the next sentinel or end of sequence', () => {
    const sentinel = (id: number): number | undefined => (id >= 100 ? 199 - id : undefined); // 199 ↔ 0, 198 ↔ 1
    const spans = parseSpans([0, 199, 5, 6, 198, 7, 1, 8], sentinel, [1]);
    assert.deepEqual([...spans], [[0, [5, 6]], [1, [7]]]);
    assert.deepEqual([...parseSpans([4, 5, 1], sentinel, [1])], []);
  });

  describe('on flan-t5', { skip: needsShared }, () => {
    let spans: SpanFillPipeline;
    before(async () => {
      spans = await SpanFillPipeline.load(repoPath('flan-t5'), options);
    });
    after(() => spans?.dispose());

    test('one gap: an output without sentinels is the span (same ids as plain generation)', async () => {
      const config = spans.generationConfig({ maxNewTokens: 8 });
      const [r] = await spans.run(['The <mask> walks in the park.'], config);
      assert.ok(r);
      assert.equal(r.prompt, 'The <extra_id_0> walks in the park.');
      const t2t = await Text2TextPipeline.load(repoPath('flan-t5'), options);
      try {
        const g = (await t2t.run([r.prompt], config))[0]?.[0];
        assert.ok(g);
        assert.deepEqual(r.tokenIds, g.tokenIds);
        assert.equal(r.spans[0]?.text, g.text.trim());
        assert.equal(r.filled, g.text.trim() === '' ? 'The walks in the park.' : `The ${g.text.trim()} walks in the park.`);
        assert.deepEqual(r.missing, []);
      } finally {
        t2t.dispose();
      }
    });

    test('several gaps without sentinels in the output are reported missing; no mask is a usage error', async () => {
      const config = spans.generationConfig({ maxNewTokens: 4 });
      const [r] = await spans.run(['A <mask> and <mask>.'], config);
      assert.ok(r);
      assert.equal(r.prompt, 'A <extra_id_0> and <extra_id_1>.');
      if (r.missing.length === 2) assert.equal(r.filled, 'A and.');
      assert.throws(() => spans.prompt('no gap here'), UsageError);
    });
  });
});
