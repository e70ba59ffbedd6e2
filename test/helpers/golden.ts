/**
 * Comparing results with the golden outputs of ../shared/reference: the golden files hold float32 results
 * rounded to 6 significant digits, so a comparison first allows that rounding.
 */
import assert from 'node:assert/strict';

const flat = (v: unknown): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v as number]);

/** Half a unit in the 6th significant digit of a golden value: its rounding error. */
function goldenRounding(value: number): number {
  return value === 0 ? 0 : 0.5 * 10 ** (Math.floor(Math.log10(Math.abs(value))) - 5);
}

/** Largest |actual − expected| beyond the rounding of the expected (golden) values, nested lists flattened. */
export function maxAbsDiff(actual: ArrayLike<number>, expected: unknown): number {
  const e = flat(expected);
  assert.equal(actual.length, e.length, 'length');
  let m = 0;
  for (let i = 0; i < e.length; i++) {
    const want = e[i] as number;
    m = Math.max(m, Math.abs((actual[i] as number) - want) - goldenRounding(want));
  }
  return m;
}
