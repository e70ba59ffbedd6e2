/**
 * The heap's SIMD loops on a memory of their own, against double-precision references: dot products,
 * weighted row sums, and the gated activations whose exp is a float32 polynomial.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { heapKernels, type HeapKernels } from '../../src/backend/heap-kernels.js';

const memory = new WebAssembly.Memory({ initial: 4 });
const k = heapKernels(memory) as HeapKernels;
const f32 = (): Float32Array => new Float32Array(memory.buffer);

/** Writes `values` at byte address `at`. */
function put(at: number, values: ArrayLike<number>): void {
  f32().set(values, at / 4);
}

function get(at: number, n: number): Float32Array {
  return f32().slice(at / 4, at / 4 + n);
}

const geluNew = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const silu = (x: number): number => x / (1 + Math.exp(-x));

describe('heap kernels', () => {
  test('bind to a memory', () => assert.ok(k));

  test('dots and axpys match float64 sums within float32 rounding', () => {
    const rows = 5;
    const len = 10;
    const a = Array.from({ length: len }, (_, i) => Math.sin(i + 1));
    const b = Array.from({ length: rows * len }, (_, i) => Math.cos(i));
    put(0, a);
    put(1024, b);
    k.dots(0, 1024, rows, len, 4096);
    const dots = get(4096, rows);
    for (let r = 0; r < rows; r++) {
      const want = a.reduce((s, v, i) => s + v * (b[r * len + i] as number), 0);
      assert.ok(Math.abs((dots[r] as number) - want) < 1e-5, `dot ${r}`);
    }
    const p = [0.5, -1, 2, 0.25, 1];
    put(0, p);
    const width = 8;
    k.axpys(0, 1024, rows, width, 4096);
    const sums = get(4096, width);
    for (let i = 0; i < width; i++) {
      const want = p.reduce((s, w, r) => s + w * (b[r * width + i] as number), 0);
      assert.ok(Math.abs((sums[i] as number) - want) < 1e-5, `axpy ${i}`);
    }
  });

  for (const [name, act, loop] of [
    ['gelu_new', geluNew, 'gatedGelu'],
    ['silu', silu, 'gatedSilu'],
  ] as const) {
    test(`gated ${name}: within 1e-6 relative of float64 over [-30, 30], 0 where it underflows, gates applied per row`, () => {
      const rows = 2;
      const f = 1024;
      const h = new Float32Array(rows * 2 * f);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < f; j++) {
          h[r * 2 * f + j] = -30 + (60 * j) / f + r * 0.01;
          h[r * 2 * f + f + j] = r === 0 ? 1 : -0.5;
        }
      }
      put(0, h);
      const y0 = 4 * h.length;
      k[loop](0, y0, rows, f);
      const y = get(y0, rows * f);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < f; j++) {
          const x = h[r * 2 * f + j] as number;
          const want = act(x) * (h[r * 2 * f + f + j] as number);
          const got = y[r * f + j] as number;
          // The float32 argument (x + 0.044715·x³ for gelu) bounds the accuracy where e^u is large.
          const tol = Math.max(1e-6 * Math.abs(want), 2e-6 * Math.abs(x) * Math.exp(-Math.abs(x)), 1e-30);
          assert.ok(Math.abs(got - want) <= tol || (Math.abs(want) < 1e-30 && Math.abs(got) < 1e-30), `${name} row ${r} x=${x}: ${got} vs ${want}`);
        }
      }
    });
  }
});
