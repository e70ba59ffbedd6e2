import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tf } from '../../src/backend/index.js';
import { convertModel, type ConvertOptions } from '../../src/commands/convert.js';
import { FormatError, IoError, NotFoundError } from '../../src/errors.js';
import { openCheckpoint } from '../../src/formats/checkpoint.js';
import { toFloat32, toInt32, isFloatDType, type CheckpointReader, type RawTensor } from '../../src/formats/tensor.js';
import { transposeTensor, type ModelJson } from '../../src/formats/tfjs-artifacts.js';
import { silentLog } from '../../src/log.js';
import { needsShared, repoPath } from '../helpers/shared.js';
import { listDir, tempDir } from '../helpers/tmp.js';

const REPOS = ['flan-t5', 'flan-t5-sharded', 't5-relu', 'ul2', 'flaubert-cased', 'flaubert-cased-legacy-bin', 'flaubert-uncased'];

function options(modelDir: string, outputDir: string, extra: Partial<ConvertOptions> = {}): ConvertOptions {
  return { modelDir, outputDir, dtype: 'float32', shardBytes: 4 * 2 ** 20, overwrite: false, log: silentLog, ...extra };
}

function values(raw: RawTensor): Float32Array | Int32Array {
  return isFloatDType(raw.dtype) ? toFloat32(raw) : toInt32(raw);
}

async function readAll(reader: CheckpointReader): Promise<Map<string, RawTensor>> {
  const out = new Map<string, RawTensor>();
  for (const t of reader.tensors) out.set(t.name, await reader.read(t.name));
  return out;
}

/** The tensors a converted model stores transposed (T5's decoder matrices and lm_head), aliases included. */
function transposedOf(reader: CheckpointReader): ReadonlySet<string> {
  return (reader as { transposed?: ReadonlySet<string> }).transposed ?? new Set();
}

/** A source tensor as the artifact stores it. */
function asStored(raw: RawTensor, transposed: ReadonlySet<string>): RawTensor {
  return transposed.has(raw.name) ? transposeTensor(raw) : raw;
}

/** Loads the converted weights with stock tfjs io: concatenated shards + tf.io.decodeWeights. */
async function decodeWithStockTfjs(dir: string): Promise<Record<string, tf.Tensor>> {
  const model = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as ModelJson;
  const group = model.weightsManifest[0];
  assert.ok(group);
  const buffers = await Promise.all(group.paths.map((p) => readFile(join(dir, p))));
  const joined = Buffer.concat(buffers);
  const ab = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  return tf.io.decodeWeights(ab, group.weights as tf.io.WeightsManifestEntry[]);
}

describe('convert: float32 round trip is exact', { skip: needsShared }, () => {
  for (const repo of REPOS) {
    test(repo, async () => {
      const out = join(await tempDir(), 'out');
      // Small shards so that tensors straddle shard boundaries.
      const result = await convertModel(options(repoPath(repo), out, { shardBytes: 256 * 1024 }));
      assert.ok(result.shards > 1);
      const source = await openCheckpoint(repoPath(repo));
      const converted = await openCheckpoint(out);
      assert.equal(converted.files.format, 'tfjs');
      try {
        const src = await readAll(source.reader);
        const stock = await decodeWithStockTfjs(out);
        const transposed = transposedOf(converted.reader);
        // T5: the decoder's matrices and the lm_head are stored [in, out] (docs/conversion.md); others as they are.
        assert.equal(transposed.has('decoder.block.0.layer.0.SelfAttention.q.weight'), !repo.startsWith('flaubert'));
        assert.equal(transposed.has('encoder.block.0.layer.0.SelfAttention.q.weight'), false);
        for (const [name, source] of src) {
          const raw = asStored(source, transposed);
          assert.ok(converted.reader.has(name), `${name} missing from the artifact`);
          const back = await converted.reader.read(name);
          assert.deepEqual(back.shape, raw.shape, name);
          assert.deepEqual(values(back), values(raw), name);
          const viaTfjs = stock[name];
          if (viaTfjs) assert.deepEqual(viaTfjs.dataSync(), values(raw), `${name} via tf.io.decodeWeights`);
        }
        // Everything the stock loader sees, the source has (no invented tensors).
        for (const name of Object.keys(stock)) assert.ok(src.has(name), name);
        tf.dispose(Object.values(stock));
        for (const side of ['config.json', 'generation_config.json', 'tokenizer_config.json']) {
          await stat(join(out, side));
        }
      } finally {
        await source.reader.close();
        await converted.reader.close();
      }
    });
  }

  test('model.json records provenance and the HF config', async () => {
    const out = join(await tempDir(), 'out');
    await convertModel(options(repoPath('flan-t5'), out));
    const model = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as ModelJson;
    assert.match(model.convertedBy, /^tfhf \d+\.\d+\.\d+/);
    assert.equal(model.userDefinedMetadata.config.model_type, 't5');
    const [file] = model.userDefinedMetadata.tfhf.sourceFiles;
    assert.equal(file?.path, 'model.safetensors');
    const expected = (await import('node:crypto')).createHash('sha256').update(await readFile(join(repoPath('flan-t5'), 'model.safetensors'))).digest('hex');
    assert.equal(file?.sha256, expected);
    assert.deepEqual(await listDir(out), [
      'added_tokens.json', 'config.json', 'generation_config.json', 'group1-shard1of1.bin', 'model.json',
      'special_tokens_map.json', 'spiece.model', 'tokenizer_config.json',
    ]);
  });

  test('tied weights of a .bin are stored once and readable under every name', async () => {
    const dir = join(await tempDir(), 'bin-only');
    await mkdir(dir);
    for (const f of ['config.json', 'pytorch_model.bin']) await copyFile(join(repoPath('t5-relu'), f), join(dir, f));
    const out = join(dir, '..', 'out');
    const result = await convertModel(options(dir, out));
    assert.ok(result.aliases >= 2, `expected the tied embeddings as aliases, got ${result.aliases}`);
    const converted = await openCheckpoint(out);
    const shared = await converted.reader.read('shared.weight');
    const lm = await converted.reader.read('encoder.embed_tokens.weight');
    assert.deepEqual(lm.data, shared.data);
    await converted.reader.close();
  });
});

describe('convert: quantized storage', { skip: needsShared }, () => {
  for (const dtype of ['float16', 'uint8'] as const) {
    test(`${dtype} decodes with stock tfjs within the quantization step`, async () => {
      const out = join(await tempDir(), 'out');
      await convertModel(options(repoPath('flan-t5'), out, { dtype }));
      const model = JSON.parse(await readFile(join(out, 'model.json'), 'utf8')) as ModelJson;
      const stock = await decodeWithStockTfjs(out);
      const source = await openCheckpoint(repoPath('flan-t5'));
      const transposed = new Set(model.userDefinedMetadata.tfhf.transposed ?? []);
      for (const entry of model.weightsManifest[0]?.weights ?? []) {
        assert.equal(entry.quantization?.dtype, dtype);
        const want = toFloat32(asStored(await source.reader.read(entry.name), transposed));
        const got = stock[entry.name]?.dataSync() as Float32Array;
        const q = entry.quantization;
        for (let i = 0; i < want.length; i++) {
          const w = want[i] as number;
          // float16 keeps 11 significant bits; uint8 is within half a step of its affine grid.
          const tol = q?.dtype === 'uint8' ? q.scale / 2 + 1e-6 * Math.abs(w) : Math.max(Math.abs(w) * 2 ** -11, 2 ** -25);
          assert.ok(Math.abs((got[i] as number) - w) <= tol, `${entry.name}[${i}]: ${got[i]} vs ${w}`);
        }
      }
      tf.dispose(Object.values(stock));
      await source.reader.close();
      const size = (await stat(join(out, 'group1-shard1of1.bin'))).size;
      const f32 = (await stat(join(repoPath('flan-t5'), 'model.safetensors'))).size;
      assert.ok(size < f32 / (dtype === 'float16' ? 1.9 : 3.8), `${dtype} output is ${size} bytes`);
    });
  }
});

describe('convert: bad input leaves nothing behind', { skip: needsShared }, () => {
  test('missing config.json', async () => {
    const root = await tempDir();
    const dir = join(root, 'model');
    await mkdir(dir);
    await copyFile(join(repoPath('flan-t5'), 'model.safetensors'), join(dir, 'model.safetensors'));
    await assert.rejects(convertModel(options(dir, join(root, 'out'))), (e) => e instanceof NotFoundError && /config\.json/.test(e.message));
    assert.deepEqual(await listDir(root), ['model']);
  });

  test('no weights', async () => {
    const root = await tempDir();
    const dir = join(root, 'model');
    await mkdir(dir);
    await copyFile(join(repoPath('flan-t5'), 'config.json'), join(dir, 'config.json'));
    await assert.rejects(convertModel(options(dir, join(root, 'out'))), (e) => e instanceof NotFoundError && /no model weights/.test(e.message));
    assert.deepEqual(await listDir(root), ['model']);
  });

  test('a weight file that fails half-way', async () => {
    const root = await tempDir();
    const dir = join(root, 'model');
    await mkdir(dir);
    for (const f of ['config.json', 'model.safetensors']) await copyFile(join(repoPath('flan-t5'), f), join(dir, f));
    const size = (await stat(join(dir, 'model.safetensors'))).size;
    await truncate(join(dir, 'model.safetensors'), size - 1000);
    await assert.rejects(convertModel(options(dir, join(root, 'out'))), FormatError);
    assert.deepEqual(await listDir(root), ['model']);
  });

  test('unwritable output location', async () => {
    const root = await tempDir();
    await writeFile(join(root, 'a-file'), 'not a directory');
    await assert.rejects(convertModel(options(repoPath('flan-t5'), join(root, 'a-file', 'out'))), IoError);
    assert.deepEqual(await listDir(root), ['a-file']);
  });

  test('an existing output directory is kept unless overwrite is set', async () => {
    const root = await tempDir();
    const out = join(root, 'out');
    await mkdir(out);
    await writeFile(join(out, 'keep.txt'), 'x');
    await assert.rejects(convertModel(options(repoPath('flan-t5'), out)), IoError);
    assert.deepEqual(await readdir(out), ['keep.txt']);
    await convertModel(options(repoPath('flan-t5'), out, { overwrite: true }));
    assert.ok((await readdir(out)).includes('model.json'));
    assert.deepEqual(await listDir(root), ['out']);
  });
});
