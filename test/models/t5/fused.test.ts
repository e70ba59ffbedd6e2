/**
 * The fast paths of the T5 model against its plain forms: fused kernels (wasm and cpu) vs the same model
 * on stock tfjs ops, and a converted artifact (decoder matrices stored [in, out], read straight into the
 * wasm heap; float16 storage through the host) vs the Hub checkpoint. All against the golden logits.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initBackend, tf } from '../../../src/backend/index.js';
import { convertModel } from '../../../src/commands/convert.js';
import { openCheckpoint } from '../../../src/formats/checkpoint.js';
import { silentLog } from '../../../src/log.js';
import { parseT5Config, type T5Config } from '../../../src/models/t5/config.js';
import { addRmsNorm, forceFusedKernels, fusedKernels, gatedActivation, gatherRows, rmsNorm, selfAttentionStep } from '../../../src/models/t5/kernels.js';
import { loadT5, type T5Model } from '../../../src/models/t5/model.js';
import { forceEngine } from '../../../src/models/projection.js';
import { goldenDir, needsShared, repoPath } from '../../helpers/shared.js';
import { tempDir } from '../../helpers/tmp.js';

interface Golden {
  cases: { forward: { input_ids: number[]; first_step_logits: number[] }[]; greedy: { input_ids: number[]; sequences: number[][] }[] };
}

const readGolden = (name: string): Golden => JSON.parse(readFileSync(join(goldenDir, `${name}.json`), 'utf8')) as Golden;
const readConfig = (dir: string): T5Config =>
  parseT5Config(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>);

function single(ids: readonly number[]): { inputIds: Int32Array; attentionMask: Int32Array; batch: number; seqLen: number } {
  return { inputIds: Int32Array.from(ids), attentionMask: Int32Array.from(ids, () => 1), batch: 1, seqLen: ids.length };
}

/** First-step logits of every forward case, and greedy continuations (6 tokens) of every greedy case. */
function outputs(model: T5Model, golden: Golden): { logits: Float32Array[]; tokens: number[][] } {
  const logits = golden.cases.forward.map((c) => {
    const r = model.step(model.start(single(c.input_ids), 1), Int32Array.of(model.decoderStartTokenId));
    r.state.dispose();
    return r.logits;
  });
  const tokens = golden.cases.greedy.map((c) => {
    let state = model.start(single(c.input_ids), 1);
    const seq = [model.decoderStartTokenId];
    for (let i = 0; i < 6; i++) {
      const r = model.step(state, Int32Array.of(seq[seq.length - 1] as number));
      state = r.state;
      let best = 0;
      for (let j = 1; j < r.logits.length; j++) if ((r.logits[j] as number) > (r.logits[best] as number)) best = j;
      seq.push(best);
    }
    state.dispose();
    return seq;
  });
  return { logits, tokens };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

async function load(dir: string, config: T5Config): Promise<T5Model> {
  const { reader } = await openCheckpoint(dir);
  try {
    return await loadT5(reader, config, { warmUp: false });
  } finally {
    await reader.close();
  }
}

before(() => initBackend('wasm', { notice() {}, verbose() {} }));
after(() => forceFusedKernels(undefined));

describe('fused kernels', () => {
  test('each fused kernel equals its ops form (wasm and cpu)', async () => {
    for (const backend of ['wasm', 'cpu']) {
      await tf.setBackend(backend);
      assert.ok(fusedKernels(), `fused kernels on ${backend}`);
      const rows = tf.randomNormal([3, 64], 0, 3, 'float32', 1) as tf.Tensor2D;
      const cols = tf.randomNormal([64, 5], 0, 3, 'float32', 2) as tf.Tensor2D;
      const g = tf.randomNormal([64], 1, 0.2, 'float32', 3) as tf.Tensor1D;
      const h = tf.randomNormal([3, 2 * 48], 0, 2, 'float32', 4) as tf.Tensor2D;
      const hCols = tf.randomNormal([2 * 48, 5], 0, 2, 'float32', 5) as tf.Tensor2D;
      const qkv = tf.randomNormal([2, 3 * 4 * 8], 0, 1, 'float32', 6) as tf.Tensor2D;
      const past = { k: tf.randomNormal([2, 4, 5, 8], 0, 1, 'float32', 7) as tf.Tensor4D, v: tf.randomNormal([2, 4, 5, 8], 0, 1, 'float32', 8) as tf.Tensor4D };
      const table = tf.randomNormal([1, 4, 1, 16], 0, 1, 'float32', 9) as tf.Tensor4D;
      const embeddings = tf.randomNormal([11, 64], 0, 1, 'float32', 10) as tf.Tensor2D;
      const ids = tf.tensor1d([3, 0, 10, 3], 'int32');
      const run = (): tf.Tensor[] => [
        rmsNorm(rows, g, 1e-6),
        rmsNorm(cols, g, 1e-6, true),
        ...addRmsNorm(rows, rows, g, 1e-6),
        ...addRmsNorm(cols, cols, g, 1e-6, true),
        gatedActivation(h, 'gelu_new', true),
        gatedActivation(h, 'silu', true),
        gatedActivation(hCols, 'silu', true, true),
        gatedActivation(h, 'gelu_new', false),
        gatherRows(embeddings, ids),
        ...((): tf.Tensor[] => {
          const r = selfAttentionStep(qkv, past, table, 10, 4, 8);
          return [r.ctx, r.kv.k, r.kv.v];
        })(),
        ...((): tf.Tensor[] => {
          const r = selfAttentionStep(qkv, undefined, table, 15, 4, 8);
          return [r.ctx, r.kv.k, r.kv.v];
        })(),
      ];
      const fused = tf.tidy(run);
      forceFusedKernels(false);
      const ops = tf.tidy(run);
      forceFusedKernels(undefined);
      fused.forEach((t, i) => {
        assert.deepEqual(t.shape, ops[i]?.shape, `${backend} output ${i}`);
        assert.ok(maxDiff(t.dataSync(), (ops[i] as tf.Tensor).dataSync()) < 2e-6, `${backend} output ${i}`);
      });
      tf.dispose([...fused, ...ops, rows, cols, g, h, hCols, qkv, past.k, past.v, table, embeddings, ids]);
    }
    await tf.setBackend('wasm');
  });
});

describe('fast paths give the model its golden outputs', { skip: needsShared }, () => {
  for (const name of ['flan-t5', 't5-relu', 'ul2']) {
    test(`${name}: ops form (no fused kernels) = fused form`, async () => {
      const golden = readGolden(name);
      const config = readConfig(repoPath(name));
      const model = await load(repoPath(name), config);
      try {
        const fused = outputs(model, golden);
        forceFusedKernels(false);
        const ops = outputs(model, golden);
        forceFusedKernels(undefined);
        assert.deepEqual(ops.tokens, fused.tokens);
        fused.logits.forEach((l, i) => assert.ok(maxDiff(l, ops.logits[i] as Float32Array) < 2e-5, `case ${i}`));
        golden.cases.forward.forEach((c, i) => assert.ok(maxDiff(fused.logits[i] as Float32Array, c.first_step_logits) < 1.6e-4, `golden case ${i}`));
      } finally {
        forceFusedKernels(undefined);
        model.dispose();
      }
    });

    test(`${name}: decode-step matrices as tensors (no matvec engine, as on tfjs-node-gpu) = engine`, async () => {
      const golden = readGolden(name);
      const config = readConfig(repoPath(name));
      const packed = await load(repoPath(name), config);
      forceEngine(false);
      const plain = await load(repoPath(name), config).finally(() => forceEngine(undefined));
      try {
        const a = outputs(packed, golden);
        const b = outputs(plain, golden);
        assert.deepEqual(a.tokens, b.tokens);
        // The same products summed in two float32 orders (XNNPACK's, the engine's): ~10 ulp of logits up
        // to ~30 (ul2) apart. Each side is held to the golden 1e-4 by the tests above and below.
        a.logits.forEach((l, i) => assert.ok(maxDiff(l, b.logits[i] as Float32Array) < 5e-5, `case ${i}: ${maxDiff(l, b.logits[i] as Float32Array)}`));
        a.logits.forEach((l, i) => assert.ok(maxDiff(l, golden.cases.forward[i]?.first_step_logits ?? []) < 1.6e-4, `golden case ${i}`));
      } finally {
        packed.dispose();
        plain.dispose();
      }
    });

    test(`${name}: cpu backend (fused kernels there too) gives the golden first-step logits`, async () => {
      const golden = readGolden(name);
      const config = readConfig(repoPath(name));
      await tf.setBackend('cpu');
      try {
        const model = await load(repoPath(name), config);
        try {
          const { logits } = outputs(model, golden);
          golden.cases.forward.forEach((c, i) => assert.ok(maxDiff(logits[i] as Float32Array, c.first_step_logits) < 1.6e-4, `case ${i}`));
        } finally {
          model.dispose();
        }
      } finally {
        await tf.setBackend('wasm');
      }
    });

    test(`${name}: a converted artifact (decoder stored [in, out], read into the heap) = the Hub checkpoint`, async () => {
      const golden = readGolden(name);
      const config = readConfig(repoPath(name));
      const root = await tempDir();
      const hub = await load(repoPath(name), config);
      try {
        const want = outputs(hub, golden);
        // float16 storage goes through the host (dequantised on read); t5-relu amplifies its rounding too
        // much for a useful bound, the others stay close.
        for (const dtype of name === 't5-relu' ? (['float32'] as const) : (['float32', 'float16'] as const)) {
          const out = join(root, dtype);
          await convertModel({ modelDir: repoPath(name), outputDir: out, dtype, shardBytes: 1 << 16, overwrite: false, log: silentLog });
          const before = tf.memory().numTensors;
          const converted = await load(out, config);
          try {
            const got = outputs(converted, golden);
            if (dtype === 'float32') {
              // The same float32 values in the same layout: bit-identical.
              assert.deepEqual(got.tokens, want.tokens);
              got.logits.forEach((l, i) => assert.deepEqual(l, want.logits[i]));
            } else {
              got.logits.forEach((l, i) => assert.ok(maxDiff(l, want.logits[i] as Float32Array) < 0.05, `float16 case ${i}`));
            }
          } finally {
            converted.dispose();
          }
          assert.equal(tf.memory().numTensors, before);
        }
      } finally {
        hub.dispose();
      }
    });
  }
});
