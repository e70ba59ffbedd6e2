/**
 * Relative position buckets against values worked out by hand from transformers' `_relative_position_bucket`
 * (num_buckets 32, max_distance 128): bidirectional halves the buckets (16) and adds 16 for keys after the
 * query; max_exact is half of what remains; beyond it, max_exact + ⌊log(n/max_exact)/log(128/max_exact)·(b−max_exact)⌋,
 * capped at b−1. The golden model tests cover the bias values themselves.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bucketMatrix, relativePositionBucket } from '../../../src/models/t5/relative-position.js';

const bucket = (rel: number, bidirectional: boolean): number => relativePositionBucket(rel, bidirectional, 32, 128);

describe('T5 relative position buckets', () => {
  test('bidirectional (encoder): exact below 8, logarithmic to 128, keys after the query offset by 16', () => {
    const cases: [number, number][] = [
      [0, 0],
      [-1, 1],
      [-7, 7],
      [-8, 8], // 8 + ⌊log(1)/log(16)·8⌋
      [-15, 9], // 8 + ⌊log(15/8)/log(16)·8⌋ = 8 + ⌊1.81⌋
      [-16, 10], // exactly 8 + 2: log 2 / log 16 = 1/4 holds in float32 too
      [-32, 12],
      [-64, 14],
      [-127, 15], // 8 + ⌊7.98⌋
      [-128, 15], // 8 + 8 capped at 15
      [-1000, 15],
      [1, 17],
      [7, 23],
      [8, 24],
      [16, 26],
      [32, 28],
      [64, 30],
      [127, 31],
      [1000, 31],
    ];
    for (const [rel, expected] of cases) assert.equal(bucket(rel, true), expected, `relative position ${rel}`);
  });

  test('causal (decoder): future keys share bucket 0, exact below 16, logarithmic to 128', () => {
    const cases: [number, number][] = [
      [5, 0],
      [0, 0],
      [-1, 1],
      [-15, 15],
      [-16, 16],
      [-20, 17], // 16 + ⌊log(1.25)/log(8)·16⌋ = 16 + ⌊1.72⌋
      [-31, 21],
      [-32, 21], // 16 + ⌊5.33⌋
      [-100, 30],
      [-112, 30], // 16 + ⌊14.97⌋
      [-113, 31], // 16 + ⌊15.04⌋
      [-128, 31],
      [-500, 31],
    ];
    for (const [rel, expected] of cases) assert.equal(bucket(rel, false), expected, `relative position ${rel}`);
    assert.ok(Object.is(bucket(5, false), 0), 'a future key is bucket +0, not -0');
  });

  test('other bucket counts and distances (UL2-style configs may change them)', () => {
    // 8 buckets, max_distance 20, causal: max_exact 4; 4 + ⌊log(n/4)/log(5)·4⌋ capped at 7.
    assert.deepEqual(
      [0, 3, 4, 7, 10, 19, 20, 50].map((n) => relativePositionBucket(-n, false, 8, 20)),
      [0, 3, 4, 5, 6, 7, 7, 7],
    );
  });

  test('bucketMatrix: key minus query position, with a query offset for cached decoding', () => {
    const full = bucketMatrix(3, 3, false, 32, 128);
    assert.deepEqual([...full], [0, 0, 0, 1, 0, 0, 2, 1, 0]);
    // The last query row of the full matrix equals one row computed at offset 2.
    assert.deepEqual([...bucketMatrix(1, 3, false, 32, 128, 2)], [...full.subarray(6)]);
    assert.deepEqual([...bucketMatrix(2, 2, true, 32, 128)], [0, 17, 1, 0]);
  });
});
