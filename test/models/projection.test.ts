/**
 * Decode-step projections: packed in the matvec engine on wasm and cpu, a tensor elsewhere (forced here),
 * the same products either way; nothing leaks on dispose, and a kept tensor stays alive.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { initBackend, tf } from '../../src/backend/index.js';
import { engineEnabled, forceEngine, Projection } from '../../src/models/projection.js';

before(() => initBackend('wasm', { notice() {}, verbose() {} }));
after(async () => {
  forceEngine(undefined);
  await tf.setBackend('wasm');
});

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

describe('Projection', () => {
  for (const backend of ['wasm', 'cpu']) {
    test(`${backend}: the engine's product equals tf.matMul, for 1 and several rows`, async () => {
      await tf.setBackend(backend);
      assert.ok(engineEnabled());
      forceEngine(false);
      assert.ok(!engineEnabled(), 'tests can turn the engine off');
      forceEngine(undefined);
      const w = tf.randomNormal([96, 61], 0, 1, 'float32', 1) as tf.Tensor2D;
      const expected = tf.randomNormal([96, 61], 0, 1, 'float32', 1) as tf.Tensor2D;
      const before = tf.memory().numTensors;
      const p = Projection.from(w, true);
      assert.ok(w.isDisposed, 'the engine holds the only copy');
      for (const rows of [1, 5]) {
        const x = tf.randomNormal([rows, 96], 0, 1, 'float32', rows) as tf.Tensor2D;
        const y = p.apply(x);
        const want = tf.matMul(x, expected);
        assert.deepEqual(y.shape, [rows, 61]);
        assert.ok(maxDiff(y.dataSync(), want.dataSync()) < 1e-5);
        tf.dispose([x, y, want]);
      }
      p.dispose();
      p.dispose();
      assert.equal(tf.memory().numTensors, before - 1);
      assert.throws(() => p.apply(tf.zeros([1, 96])), /disposed/);
      expected.dispose();
    });
  }

  test('kept tensors survive, and unpacked the projection is a tf.matMul on the tensor', async () => {
    await tf.setBackend('wasm');
    const w = tf.randomNormal([8, 4], 0, 1, 'float32', 2) as tf.Tensor2D;
    const packed = Projection.from(w, true, { keep: true });
    assert.ok(!w.isDisposed);
    const plain = Projection.from(w, false, { keep: true });
    const x = tf.ones([2, 8]) as tf.Tensor2D;
    const [a, b] = [packed.apply(x), plain.apply(x)];
    assert.ok(maxDiff(a.dataSync(), b.dataSync()) < 1e-6);
    packed.dispose();
    plain.dispose();
    assert.ok(!w.isDisposed, 'a kept tensor is the caller’s to free');
    tf.dispose([w, x, a, b]);
  });

  test('screened: bounds that hold apply()\'s outputs, and exact outputs bit for bit, few or many', async () => {
    await tf.setBackend('wasm');
    const [k, n] = [96, 1000];
    const w = tf.randomNormal([k, n], 0, 1, 'float32', 3) as tf.Tensor2D;
    const plain = Projection.from(tf.clone(w), true);
    const p = Projection.from(w, true, { screen: true });
    assert.ok(p.screened && !plain.screened);
    const x = tf.randomNormal([2, k], 0, 1, 'float32', 4) as tf.Tensor2D;
    const y = p.apply(x);
    const want = y.dataSync();
    const bounded = p.bounded(x.dataSync() as Float32Array, 2);
    const all = Array.from({ length: n }, (_, j) => j);
    for (const row of [0, 1]) {
      const { lower, upper } = bounded.bounds(row, all);
      for (const j of all) {
        const v = want[row * n + j] as number;
        if (!((lower[j] as number) <= v && v <= (upper[j] as number))) assert.fail(`row ${row} output ${j}: ${v} outside [${lower[j]}, ${upper[j]}]`);
      }
      // A few columns (their groups alone), then more than a quarter of the matrix's groups (one whole product).
      for (const tokens of [[3, 500, 999], all.filter((j) => j % 3 === 0)]) {
        const exact = bounded.exact(row, tokens);
        tokens.forEach((j, i) => assert.ok(Object.is(exact[i], want[row * n + j]), `row ${row} output ${j}`));
      }
    }
    tf.dispose([x, y]);
    p.dispose();
    plain.dispose();
  });
});
