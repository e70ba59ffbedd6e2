import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, NotFoundError, UnsupportedError } from '../../src/errors.js';
import { findWeightFiles, openCheckpoint, openWeights, readShardIndex, type WeightFiles } from '../../src/formats/checkpoint.js';
import type { CheckpointReader } from '../../src/formats/tensor.js';
import { needsShared, repoPath } from '../helpers/shared.js';
import { tempDir } from '../helpers/tmp.js';

/** Every tensor of `expected` is in `actual` with the same dtype, shape and bytes. */
async function assertSameTensors(expected: CheckpointReader, actual: CheckpointReader): Promise<void> {
  assert.ok(expected.tensors.length > 0);
  for (const t of expected.tensors) {
    assert.ok(actual.has(t.name), `${t.name} missing`);
    const [a, b] = [await expected.read(t.name), await actual.read(t.name)];
    assert.equal(b.dtype, a.dtype, t.name);
    assert.deepEqual(b.shape, a.shape, t.name);
    assert.ok(Buffer.from(b.data).equals(Buffer.from(a.data)), `${t.name} bytes differ`);
  }
}

async function shardedFiles(dir: string, index: string, format: WeightFiles['format']): Promise<WeightFiles> {
  const { shards } = await readShardIndex(join(dir, index));
  return { format, index: join(dir, index), files: shards.map((s) => join(dir, s)) };
}

describe('every weight file variant reads to the tensors of the safetensors file, bit for bit', { skip: needsShared }, () => {
  const cases: [string, string, () => Promise<WeightFiles>][] = [];
  for (const [sharded, plain] of [['flan-t5-sharded', 'flan-t5'], ['flaubert-cased-sharded', 'flaubert-cased']] as const) {
    cases.push([`${sharded} safetensors index`, plain, () => shardedFiles(repoPath(sharded), 'model.safetensors.index.json', 'safetensors')]);
    cases.push([`${sharded} pytorch_model.bin index`, plain, () => shardedFiles(repoPath(sharded), 'pytorch_model.bin.index.json', 'pytorch')]);
  }
  for (const repo of ['flan-t5', 't5-relu', 'ul2', 'flaubert-cased', 'flaubert-uncased']) {
    cases.push([`${repo} pytorch_model.bin`, repo, async () => ({ format: 'pytorch', files: [join(repoPath(repo), 'pytorch_model.bin')] })]);
  }
  cases.push(['flaubert-cased-legacy-bin (torch < 1.6 format)', 'flaubert-cased', async () => ({ format: 'pytorch', files: [join(repoPath('flaubert-cased-legacy-bin'), 'pytorch_model.bin')] })]);

  for (const [label, reference, files] of cases) {
    test(label, async () => {
      const expected = await openWeights({ format: 'safetensors', files: [join(repoPath(reference), 'model.safetensors')] });
      const actual = await openWeights(await files());
      try {
        await assertSameTensors(expected, actual);
      } finally {
        await expected.close();
        await actual.close();
      }
    });
  }
});

describe('weight file choice follows transformers', { skip: needsShared }, () => {
  test('safetensors before .bin; the sharded index when there is no single file', async () => {
    assert.equal((await findWeightFiles(repoPath('flan-t5'))).format, 'safetensors');
    const sharded = await findWeightFiles(repoPath('flan-t5-sharded'));
    assert.equal(sharded.format, 'safetensors');
    assert.match(sharded.index ?? '', /model\.safetensors\.index\.json$/);
    assert.equal(sharded.files.length, 2);
    assert.equal((await findWeightFiles(repoPath('flaubert-cased-legacy-bin'))).format, 'pytorch');
  });

  test('a sharded .bin alone is opened through its index', async () => {
    const dir = join(await tempDir(), 'm');
    await mkdir(dir);
    const src = repoPath('flan-t5-sharded');
    for (const f of ['pytorch_model.bin.index.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin']) {
      await copyFile(join(src, f), join(dir, f));
    }
    const { reader, files } = await openCheckpoint(dir);
    assert.equal(files.format, 'pytorch');
    assert.ok(reader.has('shared.weight'));
    await reader.close();
  });

  test('an index naming a file outside the directory is refused', async () => {
    const dir = join(await tempDir(), 'm');
    await mkdir(dir);
    const index = JSON.parse(await readFile(join(repoPath('flan-t5-sharded'), 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    for (const bad of ['../model-00001-of-00002.safetensors', '/etc/passwd', 'sub\\x.safetensors']) {
      const first = Object.keys(index.weight_map)[0] as string;
      await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...index.weight_map, [first]: bad } }));
      await assert.rejects(findWeightFiles(dir), FormatError, bad);
    }
  });

  test('an index naming a tensor its shard lacks is refused', async () => {
    const dir = join(await tempDir(), 'm');
    await mkdir(dir);
    const src = repoPath('flan-t5-sharded');
    const index = JSON.parse(await readFile(join(src, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    for (const f of new Set(Object.values(index.weight_map))) await copyFile(join(src, f), join(dir, f));
    index.weight_map['ghost.weight'] = 'model-00001-of-00002.safetensors';
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    await assert.rejects(openCheckpoint(dir), (e) => e instanceof FormatError && /ghost\.weight/.test(e.message));
  });

  test('no weights, or only TensorFlow weights, say so', async () => {
    const dir = join(await tempDir(), 'm');
    await mkdir(dir);
    await assert.rejects(findWeightFiles(dir), NotFoundError);
    await writeFile(join(dir, 'tf_model.h5'), 'x');
    await assert.rejects(findWeightFiles(dir), UnsupportedError);
  });
});
