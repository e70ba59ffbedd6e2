/**
 * Greedy search's argmax from bounded logits against argmax over the exact processed logits, on rows built
 * to be hard: near-ties and exact ties within the bounds, tokens without a bound, every processor.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { boundedArgmax, BoundsScratch } from '../../src/generation/bounded-argmax.js';
import { argmax, minNewTokens, noRepeatNgram, repetitionPenalty, type LogitsProcessor } from '../../src/generation/logits-processors.js';
import type { BoundedLogits } from '../../src/generation/seq2seq.js';
import { boundedFromArrays } from './fake-model.js';

/** Deterministic uniform values in [0, 1). */
function uniform(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Case {
  exact: Float32Array;
  logits: BoundedLogits;
  asked: number[][];
}

/** `logits`, recording the tokens each exact() call asks for. */
function counting(logits: BoundedLogits, asked: number[][]): BoundedLogits {
  return {
    ...logits,
    exact: (row, tokens) => {
      asked.push([...tokens]);
      return logits.exact(row, tokens);
    },
  };
}

/** Rows of exact logits from a few distinct levels (ties), approx off by up to the bound, some unbounded. */
function makeCase(rows: number, vocab: number, random: () => number): Case {
  const exact = new Float32Array(rows * vocab);
  const approx = new Float32Array(rows * vocab);
  const rowScale = Float64Array.from({ length: rows }, () => 0.5 + random());
  const asked: number[][] = [];
  const columnRadius = Float32Array.from({ length: vocab }, () => (random() < 0.02 ? Infinity : 0.05 * random()));
  for (let i = 0; i < rows * vocab; i++) {
    // Levels 0.01 apart: many values tie exactly or sit within each other's bounds.
    exact[i] = Math.fround(Math.floor(random() * 40) * 0.01 - (random() < 0.5 ? 0.2 : 0));
    const j = i % vocab;
    const bound = (rowScale[Math.floor(i / vocab)] as number) * (columnRadius[j] as number);
    const off = bound < Infinity ? (2 * random() - 1) * bound : 1e6 * (random() - 0.5);
    approx[i] = Math.fround((exact[i] as number) + off);
    if (bound < Infinity && !(Math.abs((approx[i] as number) - (exact[i] as number)) <= bound)) approx[i] = exact[i] as number;
    if (random() < 0.01) approx[i] = NaN;
    // A NaN logit (non-finite weights) has no bound either; argmax takes the first one, as torch does.
    if (random() < 0.003) exact[i] = approx[i] = NaN;
  }
  return { exact, logits: counting(boundedFromArrays(approx, rowScale, columnRadius, exact), asked), asked };
}

function expected(c: Case, row: number, vocab: number, ids: number[], processors: LogitsProcessor[]): number {
  const scores = c.exact.slice(row * vocab, (row + 1) * vocab);
  for (const p of processors) p(ids, scores);
  return argmax(scores);
}

describe('boundedArgmax', () => {
  const vocab = 300;
  const settings: [string, LogitsProcessor[]][] = [
    ['no processor', []],
    ['repetition penalty 1.5', [repetitionPenalty(1.5)]],
    ['repetition penalty 0.6, 2-gram ban', [repetitionPenalty(0.6), noRepeatNgram(2)]],
    ['min new tokens (eos 1 and 7 masked)', [minNewTokens(50, [1, 7])]],
  ];
  for (const [name, processors] of settings) {
    test(`${name}: the token argmax over the exact processed row picks, in 400 hard rows`, () => {
      const random = uniform(name.length * 7919);
      const scratch = new BoundsScratch(vocab);
      for (let trial = 0; trial < 100; trial++) {
        const rows = 4;
        const c = makeCase(rows, vocab, random);
        const ids = Array.from({ length: 12 }, () => Math.floor(random() * vocab));
        ids.push(ids[3] as number); // a repeated n-gram prefix, so the ban has something to ban
        for (let row = 0; row < rows; row++) {
          const got = boundedArgmax(c.logits, row, ids, processors, scratch);
          assert.equal(got, expected(c, row, vocab, ids, processors), `trial ${trial} row ${row}`);
        }
      }
    });
  }

  test('asks for few exact logits when the bounds are tight', () => {
    const random = uniform(5);
    const scratch = new BoundsScratch(vocab);
    const exact = Float32Array.from({ length: vocab }, () => 10 * random());
    const asked: number[][] = [];
    const logits = counting(boundedFromArrays(exact.map((v) => v + 0.0005), Float64Array.of(1), new Float32Array(vocab).fill(0.001), exact), asked);
    assert.equal(boundedArgmax(logits, 0, [0], [repetitionPenalty(2)], scratch), argmax(exact));
    assert.ok((asked[0]?.length ?? 0) <= 3, `asked for ${asked[0]?.length} tokens`);
  });

  test('every token masked: the first index, as argmax over a row of -Infinity', () => {
    const scratch = new BoundsScratch(3);
    const ban: LogitsProcessor = Object.assign(
      (_ids: readonly number[], scores: Float32Array) => scores.fill(-Infinity),
      { touches: () => [0, 1, 2] },
    );
    const logits = boundedFromArrays(Float32Array.of(1, 3, 2), Float64Array.of(1), new Float32Array(3).fill(0.1), Float32Array.of(1, 3, 2));
    assert.equal(boundedArgmax(logits, 0, [], [ban], scratch), 0);
  });
});
