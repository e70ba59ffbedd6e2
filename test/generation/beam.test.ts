import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { sampledCandidates, topCandidates } from '../../src/generation/beam.js';
import { resolveGenerationConfig, type GenerationOptions } from '../../src/generation/config.js';
import { seededRandom } from '../../src/generation/random.js';
import { generate, type GenerationResult } from '../../src/generation/search.js';
import { FakeModel, batchOf, hashed, logitsOf, scripted } from './fake-model.js';

const t5Ids = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };
const config = (options: GenerationOptions) => resolveGenerationConfig({ generationConfig: t5Ids }, options);

const near = (a: number | undefined, b: number, tol = 1e-5) => assert.ok(Math.abs(a! - b) <= tol, `${a} vs ${b}`);

/**
 * Vocabulary: 0 pad/start, 1 eos, 2 "a", 3 "b". Greedy reads a, a, eos; the better hypothesis is b, eos,
 * which only a second beam finds. Other prefixes are uniform over all four tokens.
 */
const table = {
  '0': logitsOf([0, 0.1, 0.5, 0.4]),
  '0,2': logitsOf([0, 0.2, 0.4, 0.4]),
  '0,3': logitsOf([0, 0.9, 0.05, 0.05]),
  '0,2,2': logitsOf([0, 0.5, 0.25, 0.25]),
  '0,2,3': logitsOf([0, 0.1, 0.1, 0.8]),
};
const handModel = () => new FakeModel(4, scripted(4, table));

const tokensOf = (r: GenerationResult) => r.sequences.map((s) => s.tokens);

describe('beam search by hand', () => {
  /*
   * num_beams 2, max_new_tokens 3, length_penalty 1, early_stopping false.
   * Step 1: a (ln .5) and b (ln .4) open the beams.
   * Step 2: candidates b·eos ln .36, a·a ln .2, a·b ln .2 (tie, lower index first), a·eos ln .1:
   *   "b eos" closes with ln .36 / 2 = -0.5108; beams a·a, a·b.
   * Step 3: a·b·b ln .16, a·a·eos ln .1, a·a·a ln .05: "a a eos" closes with ln .1 / 3 = -0.7675;
   *   not done (-0.7675 < ln .16 / 3); length limit reached.
   * Finalize: open a·b·b scores ln .16 / 3 = -0.6109 and evicts "a a eos"; a·a·a (-0.9986) does not enter.
   */
  test('finds the better hypothesis greedy misses; scores are length-normalised log-probs', async () => {
    const [greedy] = await generate(handModel(), batchOf([7]), config({ maxNewTokens: 3 }));
    assert.deepEqual(tokensOf(greedy!), [[2, 2, 1]]);

    const model = handModel();
    const [beam] = await generate(model, batchOf([7]), config({ maxNewTokens: 3, numBeams: 2, numReturnSequences: 2 }));
    assert.deepEqual(tokensOf(beam!), [[3, 1], [2, 3, 3]]);
    near(beam!.sequences[0]!.score, Math.log(0.36) / 2);
    near(beam!.sequences[1]!.score, Math.log(0.16) / 3);
    assert.deepEqual(beam!.sequences.map((s) => s.finishedByLength), [false, true]);
    assert.equal(model.steps, 3);
    assert.equal(model.live.size, 0);

    const [one] = await generate(handModel(), batchOf([7]), config({ maxNewTokens: 3, numBeams: 2 }));
    assert.deepEqual(tokensOf(one!), [[3, 1]]);
  });

  test('step scores follow each hypothesis through the beams', async () => {
    const settings = config({ maxNewTokens: 3, numBeams: 2, numReturnSequences: 2 });
    const [beam] = await generate(handModel(), batchOf([7]), settings, { outputScores: true });
    const [first, second] = beam!.sequences;
    assert.equal(first!.stepScores!.length, 2);
    near(first!.stepScores![0]![3], Math.log(0.4));
    near(first!.stepScores![1]![1], Math.log(0.9));
    assert.equal(second!.stepScores!.length, 3);
    near(second!.stepScores![1]![3], Math.log(0.4));
    near(second!.stepScores![2]![3], Math.log(0.8));
  });

  test('length_penalty 2 favours the longer open beam', async () => {
    const [beam] = await generate(
      handModel(),
      batchOf([7]),
      config({ maxNewTokens: 3, numBeams: 2, numReturnSequences: 2, lengthPenalty: 2 }),
    );
    assert.deepEqual(tokensOf(beam!), [[2, 3, 3], [3, 1]]);
    near(beam!.sequences[0]!.score, Math.log(0.16) / 9);
    near(beam!.sequences[1]!.score, Math.log(0.36) / 4);
  });

  /*
   * With room for 10 tokens: after step 3 two hypotheses exist (worst -0.7675).
   * true: done at once (3 steps). false: at step 4 the best open beam is ln .16 + ln .25 = -3.219 and
   * -3.219 / 4 <= -0.7675: done (4 steps). "never": bound by max length, -0.7675 >= best / 10 first holds at
   * step 8 (ln .16 + 5 ln .25 = -8.76). The uniform continuations never beat the two hypotheses.
   */
  for (const [earlyStopping, steps] of [
    [true, 3],
    [false, 4],
    ['never', 8],
  ] as const) {
    test(`early_stopping ${String(earlyStopping)} stops after ${steps} steps`, async () => {
      const model = handModel();
      const [beam] = await generate(
        model,
        batchOf([7]),
        config({ maxNewTokens: 10, numBeams: 2, numReturnSequences: 2, earlyStopping }),
      );
      assert.deepEqual(tokensOf(beam!), [[3, 1], [2, 2, 1]]);
      near(beam!.sequences[1]!.score, Math.log(0.1) / 3);
      assert.equal(model.steps, steps);
    });
  }

  test('a hypothesis closed by any eos id ends with the first one, as transformers writes it', async () => {
    const model = new FakeModel(4, scripted(4, { '0': logitsOf([0, 0.6, 0.3, 0.1]) }));
    const [beam] = await generate(model, batchOf([7]), config({ maxNewTokens: 1, numBeams: 2, eosTokenId: [3, 1] }));
    assert.deepEqual(tokensOf(beam!), [[3]]);
    near(beam!.sequences[0]!.score, Math.log(0.6));
  });
});

describe('beam search invariants', () => {
  const inputs = [[5], [6, 7, 8], [9, 2]];
  const opts = { maxNewTokens: 7, numBeams: 4, numReturnSequences: 4, lengthPenalty: 1.2 };

  test('returned sequences are ranked, and each score is its path log-prob over length ** penalty', async () => {
    const model = new FakeModel(12, hashed(12));
    const results = await generate(model, batchOf(...inputs), config(opts), { outputScores: true });
    for (const result of results) {
      assert.equal(result.sequences.length, 4);
      const scores = result.sequences.map((s) => s.score!);
      for (let i = 1; i < scores.length; i++) assert.ok(scores[i - 1]! >= scores[i]!, `ranked: ${scores.join(', ')}`);
      for (const seq of result.sequences) {
        const sum = seq.tokens.reduce((acc, token, t) => acc + seq.stepScores![t]![token]!, 0);
        near(seq.score, sum / seq.tokens.length ** 1.2, 1e-4);
        assert.equal(seq.finishedByLength, seq.tokens[seq.tokens.length - 1] !== 1);
        if (seq.finishedByLength) assert.equal(seq.tokens.length, 7);
        assert.ok(!seq.tokens.slice(0, -1).includes(1), 'eos only at the end');
      }
    }
  });

  test('a batch gives what each input gives alone, also when inputs finish at different steps', async () => {
    for (const salt of [0, 1, 2]) {
      const model = new FakeModel(12, hashed(12, salt));
      const batched = await generate(model, batchOf(...inputs), config(opts));
      assert.equal(model.live.size, 0);
      for (const [i, input] of inputs.entries()) {
        const alone = await generate(new FakeModel(12, hashed(12, salt)), batchOf(input), config(opts));
        assert.deepEqual(batched[i], alone[0]);
      }
    }
  });

  test('a vocabulary barely larger than the beam still fills every beam', async () => {
    // Tiny vocabulary: the 2 × beams candidates span nearly all of beams × vocab.
    const settings = config({ maxNewTokens: 4, numBeams: 3, numReturnSequences: 3 });
    const results = await generate(new FakeModel(3, hashed(3)), batchOf([1]), settings);
    assert.equal(results[0]!.sequences.length, 3);
  });
});

describe('beam sampling', () => {
  const opts = { maxNewTokens: 6, numBeams: 3, numReturnSequences: 2, doSample: true, topK: 0, eosTokenId: 1 };

  test('reproducible for a seed, independent of the batch, ranked', async () => {
    const run = (seed: number, ...rows: number[][]) =>
      generate(new FakeModel(12, hashed(12)), batchOf(...rows), config({ ...opts, seed }));
    const a = await run(5, [4], [6, 6]);
    assert.deepEqual(await run(5, [4], [6, 6]), a);
    assert.deepEqual((await run(5, [6, 6]))[0], a[1]);
    for (const r of a) assert.ok(r.sequences[0]!.score! >= r.sequences[1]!.score!);
    const seeds = await Promise.all([1, 2, 3, 4, 6].map((s) => run(s, [4])));
    assert.ok(seeds.some((r) => JSON.stringify(r) !== JSON.stringify(a.slice(0, 1))));
  });
});

describe('candidate selection', () => {
  test('top candidates are sorted, equal scores by lower index', () => {
    const c = topCandidates(Float32Array.from([1, 5, 3, 5, -Infinity, 2]), 4);
    assert.deepEqual(c.map((x) => x.index), [1, 3, 2, 5]);
    const all = topCandidates(Float32Array.from([-Infinity, 0]), 2);
    assert.deepEqual(all.map((x) => x.index), [1, 0]);
  });

  test('sampled candidates are distinct and sorted; zero-probability picks fall back to the best scores', () => {
    const scores = Float32Array.from([0, 1, 2, 3, -Infinity, -Infinity]);
    const c = sampledCandidates(scores, 6, seededRandom(3));
    assert.equal(new Set(c.map((x) => x.index)).size, 6);
    assert.deepEqual(c.map((x) => x.index).slice(0, 4).sort(), [0, 1, 2, 3]);
    for (let i = 1; i < c.length; i++) assert.ok(c[i - 1]!.score >= c[i]!.score);
  });
});
