/**
 * FlauBERT conformance against transformers 4.37's golden outputs (../shared/reference): logits at the mask
 * positions (with and without token_type_ids), top-5 ids and scores, the base model's hidden states, batched
 * = one at a time, for every weight-file form (safetensors, torch zip .bin, both sharded, legacy .bin).
 * Also: config parsing, the sinusoidal table, a bare FlaubertModel checkpoint, an untied head, leaks.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { initBackend, tf } from '../../../src/backend/index.js';
import { FormatError, UnsupportedError } from '../../../src/errors.js';
import { convertModel } from '../../../src/commands/convert.js';
import { findWeightFiles, openWeights, readShardIndex, type WeightFiles } from '../../../src/formats/checkpoint.js';
import { toFloat32, type CheckpointReader, type RawTensor } from '../../../src/formats/tensor.js';
import { flaubertWeightBytes, parseFlaubertConfig, type FlaubertConfig } from '../../../src/models/flaubert/config.js';
import {
  FlaubertBlock,
  flaubertBatch,
  loadFlaubert,
  positionsOf,
  sinusoidalTable,
  type FlaubertBatch,
  type FlaubertModel,
} from '../../../src/models/flaubert/model.js';
import { silentLog } from '../../../src/log.js';
import { CheckpointWeights } from '../../../src/models/layers.js';
import { maxAbsDiff } from '../../helpers/golden.js';
import { needsShared, repoPath } from '../../helpers/shared.js';
import { tempDir } from '../../helpers/tmp.js';
import {
  FLAUBERT_GOLDENS,
  LOGIT_TOLERANCE,
  readGolden,
  readRepoConfig,
  SCORE_TOLERANCE,
  softmax,
  STATE_TOLERANCE,
  topK,
  type FlaubertGolden,
} from './golden.js';

let backendReady: Promise<unknown> | undefined;
const ready = (): Promise<unknown> => (backendReady ??= initBackend('wasm', { notice() {}, verbose() {} }));

function single(ids: readonly number[], options: { mask?: readonly number[]; types?: readonly number[] } = {}): FlaubertBatch {
  return {
    inputIds: Int32Array.from(ids),
    attentionMask: options.mask ? Int32Array.from(options.mask) : undefined,
    tokenTypeIds: options.types ? Int32Array.from(options.types) : undefined,
    batch: 1,
    seqLen: ids.length,
  };
}

async function sharded(dir: string, index: string, format: WeightFiles['format']): Promise<WeightFiles> {
  const { shards } = await readShardIndex(join(dir, index));
  return { format, index: join(dir, index), files: shards.map((s) => join(dir, s)) };
}

/** Every stored form of a golden repo's weights. */
async function weightForms(name: string, golden: FlaubertGolden): Promise<[string, WeightFiles][]> {
  const dir = repoPath(name);
  const forms: [string, WeightFiles][] = [
    ['model.safetensors', { format: 'safetensors', files: [join(dir, 'model.safetensors')] }],
    ['pytorch_model.bin', { format: 'pytorch', files: [join(dir, 'pytorch_model.bin')] }],
  ];
  if (golden.sharded_variant) {
    const sdir = repoPath(`${name}-sharded`);
    forms.push(['sharded safetensors', await sharded(sdir, 'model.safetensors.index.json', 'safetensors')]);
    forms.push(['sharded pytorch_model.bin', await sharded(sdir, 'pytorch_model.bin.index.json', 'pytorch')]);
  }
  if (name === 'flaubert-cased') {
    forms.push(['legacy .bin', { format: 'pytorch', files: [join(repoPath('flaubert-cased-legacy-bin'), 'pytorch_model.bin')] }]);
  }
  // A `tfhf convert` artifact (float32, small shards) holds the same tensors under the same names.
  const out = join(await tempDir(), 'tfjs');
  await convertModel({ modelDir: dir, outputDir: out, dtype: 'float32', shardBytes: 256 * 1024, overwrite: false, log: silentLog });
  forms.push(['tfhf convert artifact', await findWeightFiles(out)]);
  return forms;
}

async function load(files: WeightFiles | CheckpointReader, config: FlaubertConfig): Promise<FlaubertModel> {
  const reader = 'read' in files ? files : await openWeights(files);
  try {
    return await loadFlaubert(reader, config, { warmUp: false });
  } finally {
    await reader.close();
  }
}

interface Errors {
  logits: number;
  logitsNoTypes: number;
  scores: number;
  lastHidden: number;
  hidden: number;
  batched: number;
  batchedVsSingle: number;
}

/** Every golden comparison on one loaded model; asserts the bounds and returns the max errors. */
function conformance(model: FlaubertModel, golden: FlaubertGolden): Errors {
  const err: Errors = { logits: 0, logitsNoTypes: 0, scores: 0, lastHidden: 0, hidden: 0, batched: 0, batchedVsSingle: 0 };
  const V = model.vocabSize;
  for (const c of golden.cases.fill_mask) {
    const batch = single(c.input_ids, { mask: c.attention_mask, types: c.token_type_ids });
    assert.deepEqual(positionsOf(batch, model.maskIndex), c.mask_positions, c.text);
    const logits = model.logitsAt(batch, c.mask_positions);
    err.logits = Math.max(err.logits, maxAbsDiff(logits, c.logits_at_masks));
    c.mask_positions.forEach((_, m) => {
      const row = logits.subarray(m * V, (m + 1) * V);
      const probs = softmax(row);
      const want = c.top5[m] ?? [];
      assert.deepEqual(topK(row, 5), want.map((p) => p.token_id), `${c.text}: top-5 ids of mask ${m}`);
      for (const p of want) err.scores = Math.max(err.scores, Math.abs((probs[p.token_id] as number) - p.score));
    });
    const plain = model.logitsAt(single(c.input_ids, { mask: c.attention_mask }), c.mask_positions);
    err.logitsNoTypes = Math.max(err.logitsNoTypes, maxAbsDiff(plain, c.logits_at_masks_without_token_type_ids));
  }

  const base = golden.cases.base_model;
  const out = model.encode(single(base.input_ids, { mask: base.attention_mask, types: base.token_type_ids }), { hiddenStates: true });
  err.lastHidden = maxAbsDiff(out.lastHiddenState, base.last_hidden_state);
  assert.equal(out.hiddenStates?.length, model.config.nLayers + 1);
  out.hiddenStates?.forEach((h, i) => (err.hidden = Math.max(err.hidden, maxAbsDiff(h, base.hidden_states[i]))));

  const bc = golden.cases.batched_fill_mask;
  const seqLen = (bc.input_ids[0] as number[]).length;
  const batch: FlaubertBatch = {
    inputIds: Int32Array.from(bc.input_ids.flat()),
    attentionMask: Int32Array.from(bc.attention_mask.flat()),
    tokenTypeIds: Int32Array.from(bc.token_type_ids.flat()),
    batch: bc.input_ids.length,
    seqLen,
  };
  const positions = positionsOf(batch, model.maskIndex);
  const logits = model.logitsAt(batch, positions);
  err.batched = maxAbsDiff(logits, bc.logits_at_masks);
  // One at a time, unpadded, must give the same logits and rankings.
  let offset = 0;
  bc.input_ids.forEach((ids, r) => {
    const n = (bc.attention_mask[r] as number[]).filter((m) => m === 1).length;
    const alone = single(ids.slice(0, n), { types: new Array<number>(n).fill(0) });
    const at = positionsOf(alone, model.maskIndex);
    const one = model.logitsAt(alone, at);
    const together = logits.subarray(offset * V, (offset + at.length) * V);
    for (let i = 0; i < one.length; i++) err.batchedVsSingle = Math.max(err.batchedVsSingle, Math.abs((one[i] as number) - (together[i] as number)));
    at.forEach((_, m) => assert.deepEqual(topK(together.subarray(m * V, (m + 1) * V), 5), topK(one.subarray(m * V, (m + 1) * V), 5)));
    offset += at.length;
  });
  assert.equal(offset, positions.length);

  assert.ok(err.logits < LOGIT_TOLERANCE, `logits at masks: ${err.logits}`);
  assert.ok(err.logitsNoTypes < LOGIT_TOLERANCE, `logits without token_type_ids: ${err.logitsNoTypes}`);
  assert.ok(err.scores < SCORE_TOLERANCE, `scores: ${err.scores}`);
  assert.ok(err.lastHidden < STATE_TOLERANCE, `last hidden state: ${err.lastHidden}`);
  assert.ok(err.hidden < STATE_TOLERANCE, `hidden states: ${err.hidden}`);
  assert.ok(err.batched < LOGIT_TOLERANCE, `batched logits: ${err.batched}`);
  assert.ok(err.batchedVsSingle < LOGIT_TOLERANCE, `batched vs one at a time: ${err.batchedVsSingle}`);
  return err;
}

const fmt = (e: Errors): string =>
  Object.entries(e)
    .map(([k, v]) => `${k} ${v.toExponential(2)}`)
    .join(', ');

for (const name of FLAUBERT_GOLDENS) {
  describe(`${name}: transformers 4.37 golden outputs`, { skip: needsShared }, () => {
    let golden: FlaubertGolden;
    let config: FlaubertConfig;
    before(async () => {
      await ready();
      golden = readGolden(name);
      config = parseFlaubertConfig(readRepoConfig(name));
    });

    test('config.json parses to the golden config', () => {
      const g = golden.config;
      assert.equal(config.vocabSize, g.vocab_size);
      assert.equal(config.embDim, g.emb_dim);
      assert.equal(config.nLayers, g.n_layers);
      assert.equal(config.nHeads, g.n_heads);
      assert.equal(config.preNorm, g.pre_norm);
      assert.equal(config.sinusoidalEmbeddings, g.sinusoidal_embeddings);
      assert.equal(config.activation, g.gelu_activation ? 'gelu' : 'relu');
      assert.equal(config.layerNormEps, g.layer_norm_eps);
      assert.equal(config.padIndex, g.pad_index);
      assert.equal(config.maskIndex, g.mask_index);
      assert.equal(config.hiddenDim, 4 * config.embDim);
    });

    test('every weight-file form reproduces every golden case', async (t) => {
      for (const [form, files] of await weightForms(name, golden)) {
        const model = await load(files, config);
        try {
          assert.equal(model.hasLmHead, true);
          assert.equal(model.weightBytes, flaubertWeightBytes(config), 'weightBytes matches the budget estimate');
          t.diagnostic(`${form}: ${fmt(conformance(model, golden))}`);
        } finally {
          model.dispose();
        }
      }
    });

    test('a batch leaves no tensor behind, and dispose() frees every weight', async () => {
      const before = tf.memory().numTensors;
      const model = await load({ format: 'safetensors', files: [join(repoPath(name), 'model.safetensors')] }, config);
      const loaded = tf.memory().numTensors;
      const bc = golden.cases.batched_fill_mask;
      const batch = flaubertBatch(bc.input_ids.map((r, i) => r.filter((_, t) => bc.attention_mask[i]?.[t] === 1)), config.padIndex);
      model.logitsAt(batch, positionsOf(batch, config.maskIndex));
      model.encode(batch, { hiddenStates: true });
      model.hiddenAt(batch, [0, 1]);
      assert.throws(() => model.logitsAt(batch, [batch.inputIds.length]), RangeError);
      assert.equal(tf.memory().numTensors, loaded);
      model.dispose();
      assert.equal(tf.memory().numTensors, before);
    });

    test('hiddenAt() returns the rows of the last hidden state', async () => {
      const model = await load({ format: 'safetensors', files: [join(repoPath(name), 'model.safetensors')] }, config);
      try {
        const base = golden.cases.base_model;
        const batch = single(base.input_ids, { types: base.token_type_ids });
        const all = model.encode(batch).lastHiddenState;
        const d = config.embDim;
        const rows = model.hiddenAt(batch, [3, 0]);
        assert.deepEqual(Array.from(rows.subarray(0, d)), Array.from(all.subarray(3 * d, 4 * d)));
        assert.deepEqual(Array.from(rows.subarray(d)), Array.from(all.subarray(0, d)));
      } finally {
        model.dispose();
      }
    });
  });
}

/** A view of a checkpoint with some names hidden or renamed. */
function filtered(reader: CheckpointReader, rename: (name: string) => string | undefined): CheckpointReader {
  const map = new Map<string, string>();
  for (const t of reader.tensors) {
    const to = rename(t.name);
    if (to !== undefined) map.set(to, t.name);
  }
  return {
    tensors: reader.tensors.filter((t) => map.has(rename(t.name) ?? '')).map((t) => ({ ...t, name: rename(t.name) as string })),
    files: reader.files,
    has: (n) => map.has(n),
    read: async (n): Promise<RawTensor> => {
      const from = map.get(n);
      if (from === undefined) throw new Error(`no ${n}`);
      return { ...(await reader.read(from)), name: n };
    },
    close: () => reader.close(),
  };
}

describe('FlauBERT variants', { skip: needsShared }, () => {
  before(ready);

  test('sinusoidalTable equals the table transformers stored in the sinusoidal checkpoint', async () => {
    const reader = await openWeights({ format: 'safetensors', files: [join(repoPath('flaubert-uncased'), 'model.safetensors')] });
    try {
      const stored = toFloat32(await reader.read('transformer.position_embeddings.weight'));
      const computed = sinusoidalTable(512, 64);
      let m = 0;
      for (let i = 0; i < stored.length; i++) m = Math.max(m, Math.abs((stored[i] as number) - (computed[i] as number)));
      assert.ok(m < 1e-6, `max diff ${m}`);
    } finally {
      await reader.close();
    }
  });

  test('a sinusoidal checkpoint without its position table gives the same logits (computed table)', async () => {
    const golden = readGolden('flaubert-uncased');
    const config = parseFlaubertConfig(readRepoConfig('flaubert-uncased'));
    const reader = await openWeights({ format: 'safetensors', files: [join(repoPath('flaubert-uncased'), 'model.safetensors')] });
    const model = await load(filtered(reader, (n) => (n === 'transformer.position_embeddings.weight' ? undefined : n)), config);
    try {
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const logits = model.logitsAt(single(c.input_ids, { types: c.token_type_ids }), c.mask_positions);
      assert.ok(maxAbsDiff(logits, c.logits_at_masks) < LOGIT_TOLERANCE);
    } finally {
      model.dispose();
    }
  });

  test('a bare FlaubertModel checkpoint (no transformer. prefix, no pred_layer) loads as the base model', async () => {
    const golden = readGolden('flaubert-cased');
    const config = parseFlaubertConfig(readRepoConfig('flaubert-cased'));
    const reader = await openWeights({ format: 'safetensors', files: [join(repoPath('flaubert-cased'), 'model.safetensors')] });
    const bare = filtered(reader, (n) => (n.startsWith('transformer.') ? n.slice('transformer.'.length) : undefined));
    const model = await load(bare, config);
    try {
      assert.equal(model.hasLmHead, false);
      const base = golden.cases.base_model;
      const out = model.encode(single(base.input_ids, { types: base.token_type_ids }));
      assert.ok(maxAbsDiff(out.lastHiddenState, base.last_hidden_state) < STATE_TOLERANCE);
      assert.throws(() => model.logitsAt(single(base.input_ids), [1]), UnsupportedError);
    } finally {
      model.dispose();
    }
  });

  test('tie_word_embeddings false reads pred_layer.proj.weight (pytorch_model.bin has it)', async () => {
    const golden = readGolden('flaubert-cased');
    const config = parseFlaubertConfig({ ...readRepoConfig('flaubert-cased'), tie_word_embeddings: false });
    const missing = parseFlaubertConfig({ ...readRepoConfig('flaubert-cased'), tie_word_embeddings: false });
    const model = await load({ format: 'pytorch', files: [join(repoPath('flaubert-cased'), 'pytorch_model.bin')] }, config);
    try {
      assert.equal(model.weightBytes, flaubertWeightBytes(config));
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const logits = model.logitsAt(single(c.input_ids, { types: c.token_type_ids }), c.mask_positions);
      assert.ok(maxAbsDiff(logits, c.logits_at_masks) < LOGIT_TOLERANCE);
    } finally {
      model.dispose();
    }
    // safetensors stores the tied weight once: untied, the head's weight is missing, and that is said.
    await assert.rejects(load({ format: 'safetensors', files: [join(repoPath('flaubert-cased'), 'model.safetensors')] }, missing), FormatError);
  });

  test('language embeddings (n_langs > 1, use_lang_emb) are added at the langs given', async () => {
    const golden = readGolden('flaubert-cased');
    const config = parseFlaubertConfig({ ...readRepoConfig('flaubert-cased'), n_langs: 2 });
    const reader = await openWeights({ format: 'safetensors', files: [join(repoPath('flaubert-cased'), 'model.safetensors')] });
    // Language 1's row is the word row of id 0: adding it is what token_type_ids = 0 adds.
    const words = await reader.read('transformer.embeddings.weight');
    const table = new Float32Array(2 * config.embDim);
    table.set(toFloat32(words).subarray(0, config.embDim), config.embDim);
    const lang: RawTensor = { name: 'transformer.lang_embeddings.weight', dtype: 'F32', shape: [2, config.embDim], data: new Uint8Array(table.buffer) };
    const withLangs: CheckpointReader = {
      ...reader,
      tensors: [...reader.tensors, lang],
      has: (n) => n === lang.name || reader.has(n),
      read: (n) => (n === lang.name ? Promise.resolve(lang) : reader.read(n)),
      close: () => reader.close(),
    };
    const model = await load(withLangs, config);
    try {
      assert.equal(model.weightBytes, flaubertWeightBytes(config));
      const c = golden.cases.fill_mask[0];
      assert.ok(c);
      const batch = { ...single(c.input_ids), langs: new Int32Array(c.input_ids.length).fill(1) };
      assert.ok(maxAbsDiff(model.logitsAt(batch, c.mask_positions), c.logits_at_masks) < LOGIT_TOLERANCE);
      const zero = { ...single(c.input_ids), langs: new Int32Array(c.input_ids.length) };
      assert.ok(maxAbsDiff(model.logitsAt(zero, c.mask_positions), c.logits_at_masks_without_token_type_ids) < LOGIT_TOLERANCE);
      assert.throws(() => model.logitsAt({ ...zero, langs: new Int32Array(c.input_ids.length).fill(2) }, c.mask_positions), /language id 2/);
    } finally {
      model.dispose();
    }
  });

  test('without attention_mask, padding follows pad_index as transformers computes lengths', async () => {
    const golden = readGolden('flaubert-cased');
    const config = parseFlaubertConfig(readRepoConfig('flaubert-cased'));
    const model = await load({ format: 'safetensors', files: [join(repoPath('flaubert-cased'), 'model.safetensors')] }, config);
    try {
      const bc = golden.cases.batched_fill_mask;
      const batch: FlaubertBatch = {
        inputIds: Int32Array.from(bc.input_ids.flat()),
        tokenTypeIds: Int32Array.from(bc.token_type_ids.flat()),
        batch: 2,
        seqLen: (bc.input_ids[0] as number[]).length,
      };
      assert.ok(maxAbsDiff(model.logitsAt(batch, positionsOf(batch, config.maskIndex)), bc.logits_at_masks) < LOGIT_TOLERANCE);
    } finally {
      model.dispose();
    }
  });

  test('inputs are checked before they reach a gather that does not bounds-check', async () => {
    const config = parseFlaubertConfig(readRepoConfig('flaubert-cased'));
    const model = await load({ format: 'safetensors', files: [join(repoPath('flaubert-cased'), 'model.safetensors')] }, config);
    try {
      assert.throws(() => model.logitsAt(single([0, config.vocabSize, 1]), [1]), /outside/);
      assert.throws(() => model.logitsAt(single([0, 5, 1], { types: [0, -1, 0] }), [1]), /outside/);
      assert.throws(() => model.encode({ inputIds: Int32Array.of(0, 1), batch: 1, seqLen: 3 }), RangeError);
      assert.throws(() => model.encode(single(new Array<number>(config.maxPositionEmbeddings + 1).fill(4))), UnsupportedError);
      assert.throws(() => model.logitsAt(single([0, 5, 1]), [1.5]), RangeError);
    } finally {
      model.dispose();
    }
  });

  test('FlaubertBlock.call(): layer 0 alone maps hidden state 0 to hidden state 1', async () => {
    const golden = readGolden('flaubert-uncased');
    const config = parseFlaubertConfig(readRepoConfig('flaubert-uncased'));
    const reader = await openWeights({ format: 'safetensors', files: [join(repoPath('flaubert-uncased'), 'model.safetensors')] });
    const block = new FlaubertBlock({ index: 0, config });
    try {
      await block.load(new CheckpointWeights(reader));
      const h = golden.cases.base_model.hidden_states;
      const out = tf.tidy(() => (block.apply(tf.tensor3d([h[0] as number[][]])) as tf.Tensor).dataSync());
      assert.ok(maxAbsDiff(out, h[1]) < STATE_TOLERANCE);
      assert.ok(tf.serialization.SerializationMap.getMap().classNameMap.FlaubertBlock, 'registered for serialization');
      assert.equal((block.getConfig().config as { embDim: number }).embDim, config.embDim);
    } finally {
      block.dispose();
      await reader.close();
    }
  });
});

describe('parseFlaubertConfig', () => {
  test("XLMConfig's defaults fill what config.json omits", () => {
    const c = parseFlaubertConfig({ model_type: 'flaubert' });
    assert.equal(c.vocabSize, 30145);
    assert.equal(c.embDim, 2048);
    assert.equal(c.nLayers, 12);
    assert.equal(c.nHeads, 16);
    assert.equal(c.hiddenDim, 8192);
    assert.equal(c.preNorm, false);
    assert.equal(c.activation, 'gelu');
    assert.equal(c.layerNormEps, 1e-12);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(parseFlaubertConfig({ gelu_activation: false }).activation, 'relu');
  });

  test('causal, asm, another model type and inconsistent sizes are refused', () => {
    assert.throws(() => parseFlaubertConfig({ causal: true }), UnsupportedError);
    assert.throws(() => parseFlaubertConfig({ asm: true }), UnsupportedError);
    assert.throws(() => parseFlaubertConfig({ model_type: 'xlm' }), UnsupportedError);
    assert.throws(() => parseFlaubertConfig({ emb_dim: 64, n_heads: 5 }), FormatError);
    assert.throws(() => parseFlaubertConfig({ n_layers: -1 }), FormatError);
    assert.throws(() => parseFlaubertConfig({ vocab_size: 4 }), FormatError);
    assert.throws(() => parseFlaubertConfig({ pre_norm: 'yes' }), FormatError);
  });

  test('flaubertWeightBytes: the flaubert_base_cased dimensions give its ~138M parameters', () => {
    const c = parseFlaubertConfig({ vocab_size: 68729, emb_dim: 768, n_layers: 12, n_heads: 12 });
    const params = flaubertWeightBytes(c) / 4;
    assert.ok(Math.abs(params - 138.3e6) < 0.1e6, `${params}`);
    assert.equal(flaubertWeightBytes(c, { lmHead: false }), flaubertWeightBytes(c) - 4 * 68729);
  });
});
