/**
 * The matvec engine against float64 products: every shape edge (n not a multiple of 8, odd k, one row,
 * many rows), bit-identical results for any thread count and any batching of rows, and memory reuse.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { MatVecEngine } from '../../../src/backend/matvec/engine.js';

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function reference(x: Float32Array, rows: number, w: Float32Array, k: number, n: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < k; i++) {
      const xi = x[r * k + i] as number;
      for (let j = 0; j < n; j++) y[r * n + j] += xi * (w[i * n + j] as number);
    }
  return y;
}

const engines = [new MatVecEngine(1), new MatVecEngine(2), new MatVecEngine(3)];
after(() => Promise.all(engines.map((e) => e.close())));

describe('MatVecEngine', () => {
  const shapes: [number, number, number][] = [
    // [rows, k, n]
    [1, 512, 2048],
    [1, 7, 5],
    [3, 33, 17],
    [8, 64, 1000],
    [2, 1, 8],
    [1, 384, 4016 * 8 + 3],
  ];
  for (const [rows, k, n] of shapes) {
    test(`${rows}×${k} @ ${k}×${n} matches float64 within float32 rounding, on 1–3 threads alike`, () => {
      const x = values(rows * k, k + n);
      const w = values(k * n, n * 7 + k);
      const want = reference(x, rows, w, k, n);
      const results = engines.map((e) => {
        const m = e.pack(w, k, n);
        const out = new Float32Array(rows * n).fill(NaN);
        e.multiply(x, rows, m, out);
        e.free(m);
        return out;
      });
      const [first] = results as [Float32Array];
      // Error bound of a float32 sum of k products of terms in [-1, 1).
      const tol = k * 2 ** -22;
      for (let i = 0; i < want.length; i++) {
        assert.ok(Math.abs((first[i] as number) - (want[i] as number)) <= tol, `output ${i}: ${first[i]} vs ${want[i]}`);
      }
      for (const other of results.slice(1)) assert.deepEqual(other, first);
    });
  }

  test('rows computed together equal rows computed one by one, bit for bit', () => {
    const [e] = engines as [MatVecEngine];
    const k = 130;
    const n = 300;
    const rows = 9;
    const x = values(rows * k, 3);
    const m = e.pack(values(k * n, 4), k, n);
    const together = new Float32Array(rows * n);
    e.multiply(x, rows, m, together);
    for (let r = 0; r < rows; r++) {
      const one = new Float32Array(n);
      e.multiply(x.subarray(r * k, (r + 1) * k), 1, m, one);
      assert.deepEqual(one, together.subarray(r * n, (r + 1) * n));
    }
    e.free(m);
  });

  test('freed matrices are reused; the memory is not corrupted by a pack into reused space', () => {
    const e = engines[1] as MatVecEngine;
    const k = 64;
    const n = 64;
    const a = e.pack(values(k * n, 5), k, n);
    const b = e.pack(values(k * n, 6), k, n);
    e.free(a);
    const c = e.pack(values(k * n, 7), k, n);
    assert.equal(c.at, a.at);
    const x = values(k, 8);
    const outB = new Float32Array(n);
    e.multiply(x, 1, b, outB);
    const want = reference(x, 1, values(k * n, 6), k, n);
    outB.forEach((v, i) => assert.ok(Math.abs(v - (want[i] as number)) < 1e-4));
    e.free(b);
    e.free(c);
  });

  test('read-ahead of the predicted next matrix changes no result, also once that matrix is freed', () => {
    const e = engines[1] as MatVecEngine;
    const shapes: [number, number][] = [
      [512, 1152],
      [384, 512],
      [1024, 512],
    ];
    const packed = shapes.map(([k, n], i) => ({ k, n, m: e.pack(values(k * n, 20 + i), k, n) }));
    const x = values(1024, 9);
    const run = (): Float32Array[] =>
      packed.map(({ k, n, m }) => {
        const out = new Float32Array(n);
        e.multiply(x.subarray(0, k), 1, m, out);
        return out;
      });
    e.readAhead = false;
    const without = run();
    e.readAhead = true;
    // The second pass and later run with every successor predicted and read ahead.
    for (let pass = 0; pass < 3; pass++) assert.deepEqual(run(), without);
    const last = packed.pop()!;
    e.free(last.m);
    assert.deepEqual(run(), without.slice(0, 2));
    for (const { m } of packed) e.free(m);
  });

  test('no rows: nothing is computed or overwritten, and later products are right on every thread', async () => {
    // A fresh engine: its scratch is not allocated yet, the case where a stray write would hit the control block.
    const e = new MatVecEngine(2);
    const k = 256;
    const n = 256;
    const w = values(k * n, 11);
    const m = e.pack(w, k, n);
    e.multiply(new Float32Array(0), 0, m, new Float32Array(0));
    const x = values(k, 12);
    const out = new Float32Array(n);
    e.multiply(x, 1, m, out);
    const want = reference(x, 1, w, k, n);
    out.forEach((v, i) => assert.ok(Math.abs(v - (want[i] as number)) <= k * 2 ** -22, `output ${i}`));
    await e.close();
  });

  test('refuses arrays that do not match the shape', () => {
    const [e] = engines as [MatVecEngine];
    assert.throws(() => e.pack(new Float32Array(10), 3, 4), RangeError);
    const m = e.pack(values(12, 1), 3, 4);
    assert.throws(() => e.multiply(new Float32Array(2), 1, m, new Float32Array(4)), RangeError);
    e.free(m);
  });

  /** Each value rounded to bfloat16, to nearest with ties to even. */
  function bf16(w: Float32Array): Float32Array {
    const out = Float32Array.from(w);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i] as number;
      bits[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) << 16;
    }
    return out;
  }

  for (const [rows, k, n] of [
    [1, 512, 4016 * 8 + 3],
    [3, 33, 17],
    [2, 7, 64],
  ] as [number, number, number][]) {
    test(`a ${k}×${n} screen: the bfloat16 product, within its bounds of the float32 one, on 1–3 threads alike`, () => {
      const x = values(rows * k, 31 + k);
      const w = values(k * n, 32 + n).map((v, i) => v * 2 ** ((i % 13) - 6)); // columns of different scales
      const wRounded = bf16(w);
      const want = reference(x, rows, wRounded, k, n);
      const magnitude = reference(x.map(Math.abs), rows, wRounded.map(Math.abs), k, n);
      const results = engines.map((e) => {
        const m = e.pack(w, k, n, true);
        const screen = m.screen!;
        const approx = new Float32Array(rows * n).fill(NaN);
        const exact = new Float32Array(rows * n).fill(NaN);
        e.multiply(x, rows, screen.matrix, approx);
        e.multiply(x, rows, m, exact);
        const radius = Float32Array.from(screen.columnRadius);
        e.free(m);
        return { approx, exact, radius };
      });
      const { approx, exact, radius } = results[0]!;
      const norms = new Float64Array(n);
      for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) norms[j] += (w[i * n + j] as number) ** 2;
      for (let j = 0; j < n; j++) {
        // Not vacuous: a bfloat16 rounding is off by at most 2⁻⁹ of each weight.
        const norm = Math.sqrt(norms[j] as number);
        if (!((radius[j] as number) <= 2 ** -8 * norm)) assert.fail(`column ${j}: radius ${radius[j]} for a norm of ${norm}`);
      }
      for (let r = 0; r < rows; r++) {
        let xNorm = 0;
        for (let i = 0; i < k; i++) xNorm += (x[r * k + i] as number) ** 2;
        xNorm = Math.sqrt(xNorm);
        for (let j = 0; j < n; j++) {
          const at = r * n + j;
          // The kernel multiplies the rounded weights (each column in its place), summing in float32.
          const sumError = Math.abs((approx[at] as number) - (want[at] as number));
          if (!(sumError <= (k + 1) * 2 ** -24 * (magnitude[at] as number))) assert.fail(`row ${r} column ${j}: ${approx[at]} vs ${want[at]}`);
          const off = Math.abs((approx[at] as number) - (exact[at] as number));
          if (!(off <= xNorm * (radius[j] as number))) assert.fail(`row ${r} column ${j}: off by ${off}, bound ${xNorm * (radius[j] as number)}`);
        }
      }
      for (const other of results.slice(1)) assert.deepEqual(other, results[0]);
    });
  }

  test('a column with a non-finite weight has no bound', () => {
    const [e] = engines as [MatVecEngine];
    const k = 16;
    const n = 24;
    const w = values(k * n, 40);
    w[5 * n + 3] = NaN;
    w[2 * n + 20] = Infinity;
    const m = e.pack(w, k, n, true);
    const radius = m.screen!.columnRadius;
    for (let j = 0; j < n; j++) assert.equal((radius[j] as number) < Infinity, j !== 3 && j !== 20, `column ${j}: ${radius[j]}`);
    e.free(m);
  });

  test('multiplyColumns gives multiply()\'s values bit for bit, for the columns asked and no other', () => {
    for (const e of engines) {
      const k = 257;
      const n = 1000;
      const m = e.pack(values(k * n, 50), k, n, true);
      const x = values(k, 51);
      const full = new Float32Array(n);
      e.multiply(x, 1, m, full);
      const columns = [0, 31, 32, 517, 999, 998, 40];
      const some = new Float32Array(n).fill(NaN);
      e.multiplyColumns(x, m, columns, some);
      for (const j of columns) assert.ok(Object.is(some[j], full[j]), `column ${j}: ${some[j]} vs ${full[j]}`);
      // Whole groups of 32 columns are computed; one nobody asked for stays untouched.
      assert.ok(Number.isNaN(some[100]));
      e.free(m);
    }
  });

  test('a screen product\'s bounds hold the float32 outputs; its scans: the largest lower bound, the outputs reaching a threshold', () => {
    const e = engines[1] as MatVecEngine;
    const k = 64;
    const n = 1003; // not a multiple of 8: padding columns must never come back
    const w = values(k * n, 60);
    w[3 * n + 17] = NaN; // column 17: no bound
    // Columns 40–47: weights whose squares underflow float32, so their norms need the absolute floor.
    for (let i = 0; i < k; i++) for (let j = 40; j < 48; j++) w[i * n + j] = (w[i * n + j] as number) * 1e-25;
    const m = e.pack(w, k, n, true);
    const rows = 2;
    const x = values(rows * k, 61);
    const p = e.multiplyScreen(x, rows, m);
    const all = Array.from({ length: n }, (_, j) => j);
    const radius = m.screen!.columnRadius;
    const exact = new Float32Array(rows * n);
    e.multiply(x, rows, m, exact);
    for (let row = 0; row < rows; row++) {
      const { lower: lo, upper: hi } = e.screenBounds(p, row, all);
      for (const j of all) {
        const v = exact[row * n + j] as number;
        if (j === 17) assert.ok(lo[j] === -Infinity && hi[j] === Infinity, 'no bound');
        else if (!(lo[j]! <= v && v <= hi[j]!)) assert.fail(`row ${row} output ${j}: ${v} outside [${lo[j]}, ${hi[j]}]`);
      }
      const a = e.screenValues(p, row, all);
      // The same bounds in double precision, without the widening for float32 rounding.
      const lower = all.map((j) => (a[j] as number) - (p.scale[row] as number) * (radius[j] as number));
      const upper = all.map((j) => (a[j] as number) + (p.scale[row] as number) * (radius[j] as number));
      const finite = lower.filter((v) => !Number.isNaN(v));
      const plainMax = Math.max(...finite);
      const max = e.screenMaxLower(p, row, []);
      assert.ok(max <= plainMax && max > plainMax - 1e-4, `${max} vs ${plainMax}`);
      // Hiding the maximum's token gives the next largest.
      const top = lower.indexOf(plainMax);
      const second = Math.max(...finite.filter((_, i) => i !== finite.indexOf(plainMax)));
      const hidden = e.screenMaxLower(p, row, [top]);
      assert.ok(hidden <= second && hidden > second - 1e-4, `${hidden} vs ${second}`);
      const threshold = plainMax - 1;
      const reaching = e.screenReaching(p, row, threshold, [top]);
      const want = all.filter((j) => j !== top && !(upper[j]! < threshold));
      assert.ok(want.includes(17) && want.length > 2, 'the case has a no-bound column and several reaching');
      // The scan's bounds are a hair wider: it may add tokens right at the threshold, never drop one.
      assert.ok(want.every((j) => reaching.includes(j)), `${reaching} vs ${want}`);
      assert.ok(reaching.every((j) => j < n && j !== top && !(upper[j]! <= threshold - 1e-4)));
      assert.deepEqual(e.screenValues(p, row, all), a, 'hidden outputs are restored');
    }
    e.free(m);
  });

  test('a row whose products could overflow float32 has no bound', () => {
    const e = engines[0] as MatVecEngine;
    const k = 8;
    const n = 16;
    const m = e.pack(values(k * n, 70), k, n, true);
    const x = values(2 * k, 71);
    for (let i = 0; i < k; i++) x[i] = (x[i] as number) * 2 ** 126; // row 0 only
    const p = e.multiplyScreen(x, 2, m);
    const all = Array.from({ length: n }, (_, j) => j);
    const [huge, plain] = [e.screenBounds(p, 0, all), e.screenBounds(p, 1, all)];
    assert.ok(huge.lower.every((v) => v === -Infinity) && huge.upper.every((v) => v === Infinity));
    assert.ok(plain.lower.every((v) => Number.isFinite(v)));
    assert.equal(e.screenMaxLower(p, 0, []), -Infinity);
    assert.deepEqual(e.screenReaching(p, 0, 0, []), all);
    e.free(m);
  });

  test('empty matrices pack, with a screen, and multiply to zeros', () => {
    const e = engines[1] as MatVecEngine;
    const none = e.pack(new Float32Array(0), 5, 0, true);
    const flat = e.pack(new Float32Array(0), 0, 7, true);
    const out = new Float32Array(7).fill(NaN);
    e.multiply(new Float32Array(0), 1, flat, out);
    assert.deepEqual([...out], new Array(7).fill(0));
    e.multiply(values(5, 80), 1, none, new Float32Array(0));
    e.free(none);
    e.free(flat);
  });
});
