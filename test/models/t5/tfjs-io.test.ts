/**
 * Converted artifacts load into the T5 model through stock tf.io: tf.io.decodeWeights turns model.json +
 * shards into named tensors, which feed loadT5 unchanged (told which ones model.json lists as stored
 * transposed) and give the golden first-step logits.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { initBackend, tf } from '../../../src/backend/index.js';
import { convertModel } from '../../../src/commands/convert.js';
import type { CheckpointReader, RawTensor, TensorInfo } from '../../../src/formats/tensor.js';
import type { ModelJson } from '../../../src/formats/tfjs-artifacts.js';
import { silentLog } from '../../../src/log.js';
import { parseT5Config } from '../../../src/models/t5/config.js';
import { loadT5 } from '../../../src/models/t5/model.js';
import { goldenDir, needsShared, repoPath } from '../../helpers/shared.js';
import { tempDir } from '../../helpers/tmp.js';

/** A CheckpointReader over tensors tf.io decoded (aliases and transposed tensors as model.json lists them). */
function readerOf(map: tf.NamedTensorMap, info: ModelJson['userDefinedMetadata']['tfhf']): CheckpointReader & { transposed: Set<string> } {
  const { aliases } = info;
  const target = (name: string): string => aliases[name] ?? name;
  const tensors: TensorInfo[] = Object.entries(map).map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape }));
  const stored = new Set(info.transposed ?? []);
  return {
    tensors,
    transposed: new Set([...stored, ...Object.keys(aliases).filter((a) => stored.has(target(a)))]),
    files: [],
    has: (name) => target(name) in map,
    read: async (name): Promise<RawTensor> => {
      const t = map[target(name)] as tf.Tensor;
      const data = (await t.data()) as Float32Array;
      return { name, dtype: 'F32', shape: t.shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    },
    close: async () => {},
  };
}

before(() => initBackend('wasm', { notice() {}, verbose() {} }));

test('tfhf convert → tf.io.decodeWeights → loadT5 gives the golden first-step logits', { skip: needsShared }, async () => {
  const out = join(await tempDir(), 'flan-t5-tfjs');
  await convertModel({ modelDir: repoPath('flan-t5'), outputDir: out, dtype: 'float32', shardBytes: 1 << 16, overwrite: false, log: silentLog });
  const modelJson = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as ModelJson;
  const group = modelJson.weightsManifest[0]!;
  const bytes = Buffer.concat(await Promise.all(group.paths.map((p) => readFile(join(out, p)))));
  const map = tf.io.decodeWeights(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), group.weights as tf.io.WeightsManifestEntry[]);
  // T5's decoder matrices and lm_head are stored [in, out], as the model multiplies them.
  assert.equal(modelJson.userDefinedMetadata.tfhf.formatVersion, 2);
  assert.ok(modelJson.userDefinedMetadata.tfhf.transposed?.includes('lm_head.weight'));
  assert.deepEqual(map['decoder.block.0.layer.0.SelfAttention.q.weight']?.shape, [64, 64]);
  assert.deepEqual(map['decoder.block.0.layer.2.DenseReluDense.wi_0.weight']?.shape, [64, 96]);
  assert.deepEqual(map['encoder.block.0.layer.1.DenseReluDense.wi_0.weight']?.shape, [96, 64]);
  const model = await loadT5(readerOf(map, modelJson.userDefinedMetadata.tfhf), parseT5Config(modelJson.userDefinedMetadata.config), { warmUp: false });
  tf.dispose(Object.values(map));
  const golden = JSON.parse(await readFile(join(goldenDir, 'flan-t5.json'), 'utf8')) as {
    cases: { forward: { input_ids: number[]; first_step_logits: number[] }[] };
  };
  try {
    for (const c of golden.cases.forward) {
      const state = model.start({ inputIds: Int32Array.from(c.input_ids), attentionMask: Int32Array.from(c.input_ids, () => 1), batch: 1, seqLen: c.input_ids.length }, 1);
      const { logits, state: next } = model.step(state, Int32Array.of(0));
      next.dispose();
      let worst = 0;
      c.first_step_logits.forEach((v, i) => (worst = Math.max(worst, Math.abs((logits[i] as number) - v))));
      assert.ok(worst < 1e-4, `max abs error ${worst}`);
    }
  } finally {
    model.dispose();
  }
});
