import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { resolveGenerationConfig } from '../../src/generation/config.js';
import {
  applyAll,
  argmax,
  bannedNgramTokens,
  buildLogitsProcessors,
  buildLogitsWarpers,
  logSoftmaxInPlace,
  minNewTokens,
  noRepeatNgram,
  repetitionPenalty,
  softmax,
  temperature,
  topK,
  topP,
} from '../../src/generation/logits-processors.js';

const f32 = (values: number[]): Float32Array => Float32Array.from(values);
const NEG = -Infinity;

function assertClose(actual: ArrayLike<number>, expected: readonly number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (e === NEG || e === Infinity) assert.equal(a, e, `index ${i}`);
    else assert.ok(Math.abs(a - e) <= tol, `index ${i}: ${a} vs ${e}`);
  }
}

const t5Ids = { decoder_start_token_id: 0, eos_token_id: 1, pad_token_id: 0 };
const config = (options: Parameters<typeof resolveGenerationConfig>[1]) =>
  resolveGenerationConfig({ generationConfig: t5Ids }, options);

describe('repetition penalty', () => {
  test('divides positive and multiplies negative scores of seen tokens, once per distinct token', () => {
    const scores = f32([2, -2, 3, 0.5]);
    repetitionPenalty(2)([0, 1, 1, 1], scores);
    assertClose(scores, [1, -4, 3, 0.5]);
  });

  test('the decoder start token counts as seen', () => {
    const scores = f32([1.3, 1, 1]);
    repetitionPenalty(1.3)([0], scores);
    assertClose(scores, [1, 1, 1]);
  });
});

describe('no-repeat n-gram', () => {
  test('bans the continuations of earlier occurrences of the last n-1 tokens', () => {
    assert.deepEqual(bannedNgramTokens([0, 5, 6, 5], 2), [6]);
    assert.deepEqual(bannedNgramTokens([0, 5, 6, 7, 5, 6], 3), [7]);
    assert.deepEqual(bannedNgramTokens([0, 5, 6, 5, 7, 5], 2), [6, 7]);
  });

  test('needs at least n-1 tokens; size 1 bans everything seen, the start token included', () => {
    assert.deepEqual(bannedNgramTokens([0], 3), []);
    assert.deepEqual(bannedNgramTokens([0, 4], 3), []);
    assert.deepEqual(bannedNgramTokens([0, 4, 4], 1).sort(), [0, 4, 4]);
    const scores = f32([1, 1, 1, 1, 1]);
    noRepeatNgram(1)([0, 3], scores);
    assertClose(scores, [NEG, 1, 1, NEG, 1]);
  });
});

describe('min new tokens', () => {
  test('suppresses every eos id while fewer than min tokens follow the start token', () => {
    const p = minNewTokens(2, [1, 3]);
    const early = f32([0, 0, 0, 0]);
    p([0, 2], early);
    assertClose(early, [0, NEG, 0, NEG]);
    const late = f32([0, 0, 0, 0]);
    p([0, 2, 2], late);
    assertClose(late, [0, 0, 0, 0]);
  });
});

describe('warpers', () => {
  test('temperature divides', () => {
    const s = f32([1, -2, 4]);
    temperature(0.5)([], s);
    assertClose(s, [2, -4, 8]);
  });

  test('top-k keeps ties with the k-th score', () => {
    const s = f32([1, 3, 3, 2]);
    topK(1)([], s);
    assertClose(s, [NEG, 3, 3, NEG]);
    const t = f32([1, 3, 3, 2]);
    topK(3)([], t);
    assertClose(t, [NEG, 3, 3, 2]);
  });

  test('top-k honours min_tokens_to_keep and vocabularies smaller than k', () => {
    const s = f32([1, 4, 3, 2]);
    topK(1, 2)([], s);
    assertClose(s, [NEG, 4, 3, NEG]);
    const t = f32([1, 4]);
    topK(50)([], t);
    assertClose(t, [1, 4]);
  });

  // probabilities 0.1, 0.2, 0.3, 0.4 in shuffled order
  const probs = [0.3, 0.1, 0.4, 0.2];
  const logits = () => f32(probs.map(Math.log));

  test('top-p drops the low tail whose mass is at most 1 - p', () => {
    const a = logits();
    topP(0.75)([], a); // tail 0.1 (<= 0.25), next cumulative 0.3 > 0.25 stays
    assert.deepEqual([...a].map((x) => x === NEG), [false, true, false, false]);
    const b = logits();
    topP(0.5)([], b); // 0.1, 0.3 (cumulative) <= 0.5 go
    assert.deepEqual([...b].map((x) => x === NEG), [false, true, false, true]);
    const c = logits();
    topP(0.3)([], c); // 0.1, 0.3, 0.6 <= 0.7 go: only the best remains
    assert.deepEqual([...c].map((x) => x === NEG), [true, true, false, true]);
  });

  test('top-p keeps min_tokens_to_keep and does nothing at p = 1', () => {
    const a = logits();
    topP(0.1, 3)([], a);
    assert.deepEqual([...a].map((x) => x === NEG), [false, true, false, false]);
    const b = logits();
    topP(1)([], b);
    assert.ok([...b].every((x) => x !== NEG));
  });

  test('softmax and log_softmax', () => {
    assertClose(softmax(f32([Math.log(1), Math.log(3), NEG])), [0.25, 0.75, 0]);
    const s = f32([0, Math.log(3)]);
    logSoftmaxInPlace(s);
    assertClose(s, [Math.log(0.25), Math.log(0.75)]);
  });
});

describe('composition', () => {
  test('processors in transformers order: repetition penalty, n-gram ban, min new tokens', () => {
    const list = buildLogitsProcessors(config({ repetitionPenalty: 2, noRepeatNgramSize: 2, minNewTokens: 5 }));
    assert.equal(list.length, 3);
    const scores = f32([4, 4, 4, 4, -4]);
    applyAll(list, [0, 3, 4, 3], scores);
    // 0, 3 and 4 penalised; 3 was followed by 4, so 4 is banned; eos (1) suppressed.
    assertClose(scores, [2, NEG, 4, 2, NEG]);
    assert.equal(buildLogitsProcessors(config({})).length, 0);
  });

  test('no warpers without sampling; temperature before top-k before top-p', () => {
    assert.equal(buildLogitsWarpers(config({ temperature: 0.5, topP: 0.9 })).length, 0);
    const warpers = buildLogitsWarpers(config({ doSample: true, temperature: 0.5, topK: 0, topP: 0.8 }));
    assert.equal(warpers.length, 2);
    // Probabilities 0.5, 0.3, 0.2 sharpened by T = 0.5 become 0.66, 0.24, 0.11: top-p 0.8 drops only the last,
    // and the kept scores are the tempered ones.
    const scores = f32([0.5, 0.3, 0.2].map(Math.log));
    applyAll(warpers, [0], scores);
    assertClose(scores, [2 * Math.log(0.5), 2 * Math.log(0.3), NEG], 1e-5);
    // The default top_k 50 is active when sampling.
    assert.equal(buildLogitsWarpers(config({ doSample: true })).length, 1);
  });

  test('beam sampling keeps one token more than there are eos ids', () => {
    const [k] = buildLogitsWarpers(config({ doSample: true, numBeams: 2, topK: 1 }));
    const scores = f32([1, 3, 2, 0]);
    k!([0], scores);
    assertClose(scores, [NEG, 3, 2, NEG]);
    const [k3] = buildLogitsWarpers(config({ doSample: true, numBeams: 2, topK: 1, eosTokenId: [1, 2] }));
    const more = f32([1, 3, 2, 0]);
    k3!([0], more);
    assertClose(more, [1, 3, 2, NEG]);
  });
});

describe('processors for bounded greedy search (bounded-argmax.ts)', () => {
  const processors: [string, ReturnType<typeof buildLogitsProcessors>[number]][] = [
    ['repetition penalty 1.7', repetitionPenalty(1.7)],
    ['repetition penalty 0.5', repetitionPenalty(0.5)],
    ['2-gram ban', noRepeatNgram(2)],
    ['min new tokens', minNewTokens(9, [1, 4])],
  ];
  const ids = [0, 4, 2, 4, 7, 2, 4];
  for (const [name, p] of processors) {
    test(`${name}: changes only the tokens it touches, each by a non-decreasing function of its score`, () => {
      let s = 7;
      const random = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 31 - 1);
      const touches = new Set(p.touches(ids));
      assert.ok(touches.size > 0, 'the case exercises the processor');
      for (let trial = 0; trial < 50; trial++) {
        const lower = Float32Array.from({ length: 10 }, () => 5 * random());
        const upper = lower.map((v) => v + Math.abs(random()));
        const [pl, pu] = [lower.slice(), upper.slice()];
        p(ids, pl);
        p(ids, pu);
        for (let j = 0; j < 10; j++) {
          if (!touches.has(j)) assert.ok(pl[j] === lower[j] && pu[j] === upper[j], `token ${j} changed`);
          assert.ok(pl[j]! <= pu[j]!, `token ${j}: ${pl[j]} > ${pu[j]}`);
        }
      }
    });
  }
});

describe('argmax', () => {
  test('the first maximum, or the first NaN, as torch.argmax', () => {
    assert.equal(argmax(f32([2, 5, 5, 1])), 1);
    assert.equal(argmax(f32([1, NaN, 3, NaN])), 1);
    assert.equal(argmax(f32([NaN, 9])), 0);
    assert.equal(argmax(f32([NEG, NEG])), 0);
  });
});
