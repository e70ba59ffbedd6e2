/** Shared model building blocks: the math against hand-written formulas, the load-time transpose policy, weight ownership. */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { initBackend, tf } from '../../src/backend/index.js';
import { FormatError } from '../../src/errors.js';
import type { CheckpointReader, RawTensor, TensorInfo } from '../../src/formats/tensor.js';
import { activate, attention, CheckpointWeights, gelu, geluNew, InferenceLayer, layerNorm, linear, rmsNorm } from '../../src/models/layers.js';

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs((actual[i] as number) - (expected[i] as number)) <= tol, `[${i}] ${actual[i]} vs ${expected[i]}`);
  }
}

/** An in-memory float32 checkpoint. */
function reader(tensors: Record<string, { shape: number[]; values: number[] }>): CheckpointReader {
  const infos: TensorInfo[] = Object.entries(tensors).map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape }));
  return {
    tensors: infos,
    files: [],
    has: (name) => name in tensors,
    read: async (name): Promise<RawTensor> => {
      const t = tensors[name];
      if (!t) throw new Error(`no ${name}`);
      return { name, dtype: 'F32', shape: t.shape, data: new Uint8Array(Float32Array.from(t.values).buffer) };
    },
    close: async () => undefined,
  };
}

const xs = [-3, -1, -0.5, 0, 0.25, 1, 2.5];

describe('layers', () => {
  before(() => initBackend('wasm', { notice() {}, verbose() {} }));

  test('rmsNorm: weight · x / sqrt(mean(x²) + eps), no mean subtraction', () => {
    const out = tf.tidy(() => rmsNorm(tf.tensor2d([1, 2, 3, 4, -1, 0, 1, 0], [2, 4]), tf.tensor1d([1, 2, 1, 0.5]), 1e-6).dataSync());
    const r1 = 1 / Math.sqrt((1 + 4 + 9 + 16) / 4 + 1e-6);
    const r2 = 1 / Math.sqrt(2 / 4 + 1e-6);
    close(out, [1 * r1, 4 * r1, 3 * r1, 2 * r1, -1 * r2, 0, 1 * r2, 0]);
  });

  test('layerNorm: (x − mean) / sqrt(biased var + eps) · gamma + beta', () => {
    const out = tf.tidy(() => layerNorm(tf.tensor2d([1, 2, 3, 6], [1, 4]), tf.tensor1d([1, 1, 2, 1]), tf.tensor1d([0, 1, 0, 0]), 1e-12).dataSync());
    const mean = 3;
    const sd = Math.sqrt((4 + 1 + 0 + 9) / 4);
    close(out, [(1 - mean) / sd, (2 - mean) / sd + 1, (2 * (3 - mean)) / sd, (6 - mean) / sd], 1e-5);
  });

  test('activations match their defining formulas', () => {
    const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    tf.tidy(() => {
      const x = tf.tensor1d(xs);
      close(geluNew(x).dataSync(), xs.map(geluTanh));
      // gelu(x) = x·Φ(x): Φ(1) = 0.8413447460685429, Φ(−1) = 1 − Φ(1), Φ(0.25) = 0.5987063256829237.
      close(gelu(tf.tensor1d([1, -1, 0.25, 0])).dataSync(), [0.8413447460685429, -(1 - 0.8413447460685429), 0.25 * 0.5987063256829237, 0]);
      close(activate(x, 'silu').dataSync(), xs.map((v) => v / (1 + Math.exp(-v))));
      close(activate(x, 'relu').dataSync(), xs.map((v) => Math.max(v, 0)));
      close(activate(x, 'gelu_new').dataSync(), xs.map(geluTanh));
    });
  });

  test('linear: x @ w (+ bias, fused relu) equals the plain ops', () => {
    tf.tidy(() => {
      const x = tf.tensor2d([1, -2, 3, 0.5, 1, -1], [2, 3]);
      const w = tf.tensor2d([1, 0, -1, 2, 0.5, 1], [3, 2]);
      const b = tf.tensor1d([0.1, -5]);
      const plain = tf.add(tf.matMul(x, w), b);
      close(linear(x, w).dataSync(), tf.matMul(x, w).dataSync());
      close(linear(x, w, b).dataSync(), plain.dataSync());
      close(linear(x, w, b, 'relu').dataSync(), tf.relu(plain).dataSync());
    });
  });

  test('attention: the per-head path for long inputs equals softmax(scale·q·kᵀ + bias)·v', () => {
    tf.tidy(() => {
      for (const [lenQ, lenK] of [[3, 5], [130, 140]] as const) {
        const q = tf.randomNormal([2, 3, lenQ, 8], 0, 1, 'float32', 1) as tf.Tensor4D;
        const k = tf.randomNormal([2, 3, lenK, 8], 0, 1, 'float32', 2) as tf.Tensor4D;
        const v = tf.randomNormal([2, 3, lenK, 8], 0, 1, 'float32', 3) as tf.Tensor4D;
        const bias = tf.randomNormal([1, 3, lenQ, lenK], 0, 1, 'float32', 4);
        // Reference: one head at a time through plain 2-D ops.
        const expected = tf.stack(
          [0, 1].map((b) =>
            tf.stack(
              [0, 1, 2].map((h) => {
                const head = (t: tf.Tensor4D, len: number): tf.Tensor2D => tf.reshape(tf.slice(t, [b, h, 0, 0], [1, 1, len, 8]), [len, 8]);
                const bh = tf.reshape(tf.slice(bias, [0, h, 0, 0], [1, 1, lenQ, lenK]), [lenQ, lenK]);
                const scores = tf.add(tf.mul(tf.matMul(head(q, lenQ), tf.transpose(head(k, lenK))), 0.125), bh);
                return tf.matMul(tf.softmax(scores), head(v, lenK));
              }),
            ),
          ),
        );
        close(attention(q, k, v, bias, 0.125).dataSync(), expected.dataSync(), 1e-5);
      }
    });
  });

  test('CheckpointWeights.linear: PyTorch [out, in] becomes [in, out] once, shapes are checked', async () => {
    const w = new CheckpointWeights(
      reader({ 'fc.weight': { shape: [2, 3], values: [1, 2, 3, 4, 5, 6] }, 'v': { shape: [3], values: [1, 2, 3] } }),
    );
    const t = await w.linear('fc.weight', 3, 2);
    assert.deepEqual(t.shape, [3, 2]);
    assert.deepEqual([...t.dataSync()], [1, 4, 2, 5, 3, 6]);
    t.dispose();
    await assert.rejects(w.linear('fc.weight', 2, 3), (e: unknown) => e instanceof FormatError && /\[2, 3\], expected \[3, 2\]/.test(e.message));
    await assert.rejects(w.tensor('missing.weight', [3]), (e: unknown) => e instanceof FormatError && /missing\.weight/.test(e.message));
  });

  test('InferenceLayer: adopts loaded tensors as weights and frees them on dispose', async () => {
    class Probe extends InferenceLayer {
      static className = 'LayersTestProbe';
      w!: tf.Tensor2D;
      async load(weights: CheckpointWeights): Promise<void> {
        this.w = this.own('weight', await weights.linear('probe.weight', 3, 2));
      }
    }
    const before = tf.memory().numTensors;
    const layer = new Probe({ name: 'probe' });
    await layer.load(new CheckpointWeights(reader({ 'probe.weight': { shape: [2, 3], values: [1, 2, 3, 4, 5, 6] } })));
    assert.equal(layer.weights.length, 1);
    assert.equal(layer.weights[0]?.trainable, false);
    assert.match(layer.weights[0]?.name ?? '', /^probe\.weight/);
    assert.equal(layer.weightBytes, 24);
    assert.deepEqual([...layer.getWeights()[0]!.dataSync()], [1, 4, 2, 5, 3, 6]);
    assert.equal(tf.memory().numTensors, before + 1);
    layer.dispose();
    layer.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});
