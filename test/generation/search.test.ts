import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { resolveGenerationConfig, type GenerationOptions } from '../../src/generation/config.js';
import { seededRandom, sampleIndex } from '../../src/generation/random.js';
import { generate, streamTokens, type TokenEvent } from '../../src/generation/search.js';
import { FakeModel, batchOf, hashed, logitsOf } from './fake-model.js';

const t5Ids = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };
const config = (options: GenerationOptions) => resolveGenerationConfig({ generationConfig: t5Ids }, options);

/** Vocabulary 0 pad/start, 1 eos, 2..5 words; the next token is "previous + 1", then eos after 4. */
const counting = (input: readonly number[], prefix: readonly number[]): number[] => {
  const last = prefix[prefix.length - 1]!;
  const next = last === 0 ? input[0]! : last >= 4 ? 1 : last + 1;
  return Array.from({ length: 6 }, (_, v) => (v === next ? 2 : 0) - v * 0.01);
};

function assertNoLeak(model: FakeModel): void {
  assert.equal(model.live.size, 0, 'every decoder state was consumed or disposed');
}

describe('greedy search', () => {
  test('takes the argmax, stops after eos (included) and reports why it stopped', async () => {
    const model = new FakeModel(6, counting);
    const [result] = await generate(model, batchOf([2]), config({ maxNewTokens: 10 }));
    assert.deepEqual(result!.sequences[0]!.tokens, [2, 3, 4, 1]);
    assert.equal(result!.sequences[0]!.finishedByLength, false);
    assert.equal(result!.sequences[0]!.score, undefined);
    assert.equal(model.steps, 4);
    assertNoLeak(model);

    const short = await generate(new FakeModel(6, counting), batchOf([2]), config({ maxNewTokens: 2 }));
    assert.deepEqual(short[0]!.sequences[0]!.tokens, [2, 3]);
    assert.equal(short[0]!.sequences[0]!.finishedByLength, true);
  });

  test('step scores are the raw logits when no processor is active', async () => {
    const model = new FakeModel(6, counting);
    const [result] = await generate(model, batchOf([3]), config({ maxNewTokens: 5 }), { outputScores: true });
    const seq = result!.sequences[0]!;
    assert.equal(seq.stepScores!.length, seq.tokens.length);
    assert.deepEqual([...seq.stepScores![0]!], [...Float32Array.from(counting([3], [0]))]);
  });

  test('first maximum wins a tie, as torch.argmax', async () => {
    const model = new FakeModel(4, () => [0, 0, 5, 5]);
    const [result] = await generate(model, batchOf([2]), config({ maxNewTokens: 1 }));
    assert.deepEqual(result!.sequences[0]!.tokens, [2]);
  });

  test('a batch gives what each input gives alone; finished rows are fed pad', async () => {
    const inputs = [[4], [2], [3, 9, 9]];
    const model = new FakeModel(6, counting);
    const batched = await generate(model, batchOf(...inputs), config({ maxNewTokens: 6 }));
    for (const [i, input] of inputs.entries()) {
      const alone = await generate(new FakeModel(6, counting), batchOf(input), config({ maxNewTokens: 6 }));
      assert.deepEqual(batched[i], alone[0]);
    }
    assert.deepEqual(batched.map((r) => r.sequences[0]!.tokens), [[4, 1], [2, 3, 4, 1], [3, 4, 1]]);
    // Input 0 ended at step 2: from step 3 on it is fed pad 0 while the others run.
    assert.deepEqual(model.fed.map((row) => row[0]), [0, 4, 1, 0]);
    assert.equal(model.steps, 4);
    assertNoLeak(model);
  });

  test('rows run to max_new_tokens when the model has no eos', async () => {
    const noEos = resolveGenerationConfig({ generationConfig: { decoder_start_token_id: 0 } }, { maxNewTokens: 5 });
    const [result] = await generate(new FakeModel(6, counting), batchOf([3]), noEos);
    // 1 is an ordinary token here: the count goes on after it.
    assert.deepEqual(result!.sequences[0]!.tokens, [3, 4, 1, 2, 3]);
    assert.equal(result!.sequences[0]!.finishedByLength, true);
  });

  test('eos override: generation stops at the given token instead', async () => {
    const run = (eosTokenId: number | number[]) =>
      generate(new FakeModel(6, counting), batchOf([2]), config({ maxNewTokens: 10, eosTokenId }));
    const [result] = await run(3);
    assert.deepEqual(result!.sequences[0]!.tokens, [2, 3]);
    const [list] = await run([5, 4]);
    assert.deepEqual(list!.sequences[0]!.tokens, [2, 3, 4]);
  });

  test('min_new_tokens suppresses eos until enough tokens were generated', async () => {
    const model = new FakeModel(6, counting);
    const [result] = await generate(model, batchOf([3]), config({ maxNewTokens: 10, minNewTokens: 4 }), {
      outputScores: true,
    });
    const seq = result!.sequences[0]!;
    // Without the processor: 3, 4, eos. With it, eos is -inf for the first 4 tokens; the runner-up after 4 is 0.
    assert.deepEqual(seq.tokens.slice(0, 3), [3, 4, 0]);
    assert.ok(seq.tokens.length > 4);
    for (let t = 0; t < 4; t++) assert.equal(seq.stepScores![t]![1], -Infinity);
    assert.notEqual(seq.stepScores![4]![1], -Infinity);
  });

  test('processors see the decoder start token (repetition penalty, n-gram ban)', async () => {
    // Token 0 (start/pad) is the favourite; penalised as "already seen" (3 / 1.3 = 2.31), 2 (2.5) takes over
    // once, then is penalised itself (1.92).
    const model = () => new FakeModel(4, () => [3, -9, 2.5, -9]);
    const [plain] = await generate(model(), batchOf([1]), config({ maxNewTokens: 2 }));
    assert.deepEqual(plain!.sequences[0]!.tokens, [0, 0]);
    const [penalised] = await generate(model(), batchOf([1]), config({ maxNewTokens: 2, repetitionPenalty: 1.3 }));
    assert.deepEqual(penalised!.sequences[0]!.tokens, [2, 0]);
    // Unigram ban: 0 is banned from the start, then 2; eos (1) ties with 3 at -9 and comes first.
    const [ngram] = await generate(model(), batchOf([1]), config({ maxNewTokens: 3, noRepeatNgramSize: 1 }));
    assert.deepEqual(ngram!.sequences[0]!.tokens, [2, 1]);
    assert.equal(ngram!.sequences[0]!.finishedByLength, false);
  });

  test('repetition penalty and 2-gram ban together, step scores are the processed ones', async () => {
    const model = new FakeModel(6, () => [0, -5, 1, 2, 1.6, 1.8]);
    const settings = config({ maxNewTokens: 5, repetitionPenalty: 1.3, noRepeatNgramSize: 2 });
    const [result] = await generate(model, batchOf([1]), settings, { outputScores: true });
    // 1: ids [0] -> 3 (2). 2: [0,3]: 3 = 2/1.3 = 1.54 < 5 (1.8). 3: [0,3,5]: 5 = 1.38, 3 = 1.54 < 4 (1.6).
    // 4: [0,3,5,4]: 4 = 1.23, so 3 (1.54). 5: [0,3,5,4,3]: "3 5" was seen, 5 is banned; 3 again (1.54).
    const seq = result!.sequences[0]!;
    assert.deepEqual(seq.tokens, [3, 5, 4, 3, 3]);
    const fourth = seq.stepScores![3]!;
    assert.ok(Math.abs(fourth[3]! - 2 / 1.3) < 1e-6);
    assert.ok(Math.abs(fourth[4]! - 1.6 / 1.3) < 1e-6);
    assert.equal(fourth[1], -5); // never seen: untouched
    assert.equal(seq.stepScores![4]![5], -Infinity);
    assert.ok(Math.abs(fourth[5]! - 1.8 / 1.3) < 1e-6); // seen, penalised, not banned yet
  });

  test('bounded logits, where the model gives them, pick the same tokens; sampling and step scores need exact ones', async () => {
    const settings = [config({ maxNewTokens: 8 }), config({ maxNewTokens: 8, repetitionPenalty: 1.3, noRepeatNgramSize: 2, minNewTokens: 6 })];
    for (const [i, settings_] of settings.entries()) {
      const inputs = [[4], [2, 7], [3, 9, 9]];
      const exact = await generate(new FakeModel(50, hashed(50, i)), batchOf(...inputs), settings_);
      const model = new FakeModel(50, hashed(50, i), 0.3);
      assert.deepEqual(await generate(model, batchOf(...inputs), settings_), exact);
      assert.ok(model.boundedSteps > 0);
      assertNoLeak(model);
    }
    const sampled = new FakeModel(50, hashed(50), 0.3);
    await generate(sampled, batchOf([4]), config({ maxNewTokens: 3, doSample: true, seed: 1 }));
    const scored = new FakeModel(50, hashed(50), 0.3);
    await generate(scored, batchOf([4]), config({ maxNewTokens: 3 }), { outputScores: true });
    assert.equal(sampled.boundedSteps + scored.boundedSteps, 0);
  });

  test('onToken sees every token in order; streamTokens yields the same', async () => {
    const events: TokenEvent[] = [];
    const results = await generate(new FakeModel(6, counting), batchOf([2], [4]), config({ maxNewTokens: 8 }), {
      onToken: (e) => {
        events.push(e);
      },
    });
    assert.deepEqual(
      events.map((e) => [e.step, e.input, e.token]),
      [[0, 0, 2], [0, 1, 4], [1, 0, 3], [1, 1, 1], [2, 0, 4], [3, 0, 1]],
    );
    const model = new FakeModel(6, counting);
    const stream = streamTokens(model, batchOf([2]), config({ maxNewTokens: 8 }));
    const streamed: number[] = [];
    let next = await stream.next();
    while (!next.done) {
      streamed.push(next.value);
      next = await stream.next();
    }
    assert.deepEqual(streamed, results[0]!.sequences[0]!.tokens);
    assert.deepEqual(next.value.sequences[0]!.tokens, streamed);
    assertNoLeak(model);
  });

  test('leaving a stream early or failing in onToken frees the model state', async () => {
    const model = new FakeModel(6, () => [0, 0, 5, 0, 0, 0]);
    for await (const token of streamTokens(model, batchOf([2]), config({ maxNewTokens: 50 }))) {
      assert.ok(token >= 0);
      break;
    }
    assertNoLeak(model);
    const failing = new FakeModel(6, counting);
    await assert.rejects(
      generate(failing, batchOf([2]), config({ maxNewTokens: 8 }), {
        onToken: () => {
          throw new Error('consumer failed');
        },
      }),
      /consumer failed/,
    );
    assertNoLeak(failing);
  });

  test('an aborted signal stops between steps', async () => {
    const controller = new AbortController();
    const model = new FakeModel(6, () => [0, 0, 5, 0, 0, 0]);
    await assert.rejects(
      generate(model, batchOf([2]), config({ maxNewTokens: 50 }), {
        onToken: (e) => {
          if (e.step === 2) controller.abort(new Error('interrupted'));
        },
        signal: controller.signal,
      }),
      /interrupted/,
    );
    assert.equal(model.steps, 3);
    assertNoLeak(model);
  });

  test('streaming refuses batches and beams; eos ids must fit the vocabulary', async () => {
    const drain = async (gen: AsyncGenerator<number, unknown>) => {
      for await (const _ of gen) void _;
    };
    await assert.rejects(drain(streamTokens(new FakeModel(6, counting), batchOf([2], [3]), config({}))), UsageError);
    const beams = config({ numBeams: 2 });
    await assert.rejects(drain(streamTokens(new FakeModel(6, counting), batchOf([2]), beams)), UsageError);
    await assert.rejects(generate(new FakeModel(6, counting), batchOf([2]), config({ eosTokenId: 6 })), UsageError);
  });
});

describe('sampling', () => {
  const sampling = (options: GenerationOptions) => config({ doSample: true, topK: 0, ...options });

  test('reproducible for a seed, different across seeds', async () => {
    const run = (seed: number) =>
      generate(new FakeModel(20, hashed(20)), batchOf([5, 6]), sampling({ maxNewTokens: 30, seed, eosTokenId: 19 }));
    const a = await run(7);
    assert.deepEqual(await run(7), a);
    const b = await run(8);
    assert.notDeepEqual(b[0]!.sequences[0]!.tokens, a[0]!.sequences[0]!.tokens);
  });

  test('an input samples the same alone or in a batch; return sequences differ from each other', async () => {
    const opts = sampling({ maxNewTokens: 20, seed: 11, numReturnSequences: 3, eosTokenId: 19 });
    const batched = await generate(new FakeModel(20, hashed(20)), batchOf([5], [7, 8]), opts);
    const alone = await generate(new FakeModel(20, hashed(20)), batchOf([7, 8]), opts);
    assert.deepEqual(batched[1], alone[0]);
    const seqs = batched[0]!.sequences.map((s) => s.tokens.join(','));
    assert.equal(seqs.length, 3);
    assert.equal(new Set(seqs).size, 3);
  });

  test('the injected randomness is used', async () => {
    const zero = () => () => 0;
    const model = new FakeModel(4, () => [0, -9, 1, 2]);
    const [result] = await generate(model, batchOf([1]), sampling({ maxNewTokens: 3 }), { random: zero });
    // u = 0 picks the first token with non-zero probability.
    assert.deepEqual(result!.sequences[0]!.tokens, [0, 0, 0]);
  });

  test('frequencies follow the softmax (chi-square, 5000 draws)', () => {
    const probs = [0.5, 0.3, 0.15, 0.05];
    const random = seededRandom(123);
    const counts = [0, 0, 0, 0];
    const n = 5000;
    for (let i = 0; i < n; i++) counts[sampleIndex(probs, random)]!++;
    const chi2 = counts.reduce((acc, c, i) => acc + (c - n * probs[i]!) ** 2 / (n * probs[i]!), 0);
    assert.ok(chi2 < 16.3, `chi2 ${chi2} (3 dof, p = 0.001)`); // would fail for a broken sampler
  });

  test('top-k and top-p restrict the tokens that can be drawn', async () => {
    const probs = [0.02, 0.03, 0.4, 0.25, 0.2, 0.1];
    const seen = (options: GenerationOptions) => {
      const tokens = new Set<number>();
      return (async () => {
        for (let seed = 0; seed < 300; seed++) {
          const model = new FakeModel(6, () => logitsOf(probs));
          const [r] = await generate(model, batchOf([1]), sampling({ maxNewTokens: 1, seed, ...options }));
          tokens.add(r!.sequences[0]!.tokens[0]!);
        }
        return [...tokens].sort();
      })();
    };
    assert.deepEqual(await seen({ topK: 2 }), [2, 3]);
    // ascending 0.02, 0.03, 0.1, 0.2 sum to 0.35 <= 0.4: top-p 0.6 keeps 0.25 and 0.4
    assert.deepEqual(await seen({ topP: 0.6 }), [2, 3]);
    assert.deepEqual(await seen({ topP: 0.7 }), [2, 3, 4]);
    assert.deepEqual(await seen({}), [0, 1, 2, 3, 4, 5]);
  });

  test('temperature sharpens: at T = 0.02 sampling equals greedy', async () => {
    const model = () => new FakeModel(20, hashed(20, 3));
    const [greedy] = await generate(model(), batchOf([4]), config({ maxNewTokens: 15, eosTokenId: 19 }));
    const coldSettings = sampling({ maxNewTokens: 15, eosTokenId: 19, temperature: 0.02, seed: 1 });
    const [cold] = await generate(model(), batchOf([4]), coldSettings);
    assert.deepEqual(cold!.sequences[0]!.tokens, greedy!.sequences[0]!.tokens);
  });
});
