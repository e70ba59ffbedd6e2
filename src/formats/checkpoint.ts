/**
 * Finds and opens a model directory's weights the way transformers' `from_pretrained` chooses them:
 * safetensors before PyTorch pickles, the single file before a sharded index. A converted TensorFlow.js
 * directory (model.json) is opened as well, so every command reads weights through one interface.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError } from '../errors.js';
import { openSafetensors } from './safetensors.js';
import type { CheckpointReader, RawTensor, TensorInfo } from './tensor.js';
import { openTfjsArtifact, TFJS_MODEL_JSON } from './tfjs-artifacts.js';
import { openTorchBin } from './torch-bin.js';

export type WeightFormat = 'safetensors' | 'pytorch' | 'tfjs';

export interface WeightFiles {
  readonly format: WeightFormat;
  /** The sharded index (model.safetensors.index.json / pytorch_model.bin.index.json), when sharded. */
  readonly index?: string;
  /** The single weight file, or the shards in index order. */
  readonly files: readonly string[];
}

const CANDIDATES: readonly { file: string; format: WeightFormat; sharded: boolean }[] = [
  { file: 'model.safetensors', format: 'safetensors', sharded: false },
  { file: 'model.safetensors.index.json', format: 'safetensors', sharded: true },
  { file: 'pytorch_model.bin', format: 'pytorch', sharded: false },
  { file: 'pytorch_model.bin.index.json', format: 'pytorch', sharded: true },
];

/** Weight files transformers can load but tfhf cannot: say so instead of "no weights". */
const FOREIGN = ['tf_model.h5', 'flax_model.msgpack', 'model.ckpt.index', 'tf_model.h5.index.json'];

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

interface ShardIndex {
  weight_map: Record<string, string>;
}

/** Reads an index and returns its shard files in first-use order; file names are untrusted. */
export async function readShardIndex(indexPath: string): Promise<{ shards: string[]; weightMap: Map<string, string> }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (err) {
    throw new FormatError(`${indexPath} is not valid JSON: ${(err as Error).message}`);
  }
  const map = (parsed as Partial<ShardIndex> | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new FormatError(`${indexPath} has no "weight_map" object`);
  }
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file !== basename(file) || file === '..' || file.includes('\\') || file === '') {
      throw new FormatError(`${indexPath} maps ${name} to '${String(file)}', which is not a file in the same directory`);
    }
    weightMap.set(name, file);
    if (!shards.includes(file)) shards.push(file);
  }
  if (shards.length === 0) throw new FormatError(`${indexPath} lists no weights`);
  return { shards, weightMap };
}

export async function findWeightFiles(dir: string): Promise<WeightFiles> {
  if (await isFile(join(dir, TFJS_MODEL_JSON))) return { format: 'tfjs', files: [join(dir, TFJS_MODEL_JSON)] };
  for (const c of CANDIDATES) {
    const path = join(dir, c.file);
    if (!(await isFile(path))) continue;
    if (!c.sharded) return { format: c.format, files: [path] };
    const { shards } = await readShardIndex(path);
    return { format: c.format, index: path, files: shards.map((s) => join(dir, s)) };
  }
  for (const f of FOREIGN) {
    if (await isFile(join(dir, f))) {
      throw new UnsupportedError(`${dir} only has ${f}, a TensorFlow/Flax checkpoint tfhf cannot read`, {
        hint: 'use a revision of the repo with model.safetensors or pytorch_model.bin',
      });
    }
  }
  throw new NotFoundError(`no model weights in ${dir}`, {
    hint: 'expected model.safetensors, pytorch_model.bin, a sharded *.index.json, or a tfhf-converted model.json',
  });
}

function openFile(format: WeightFormat, path: string): Promise<CheckpointReader> {
  if (format === 'safetensors') return openSafetensors(path);
  if (format === 'pytorch') return openTorchBin(path);
  return openTfjsArtifact(path);
}

/** Several shard readers seen as one checkpoint, checked against the index's weight map. */
class ShardedReader implements CheckpointReader {
  readonly tensors: readonly TensorInfo[];
  readonly files: readonly string[];
  private readonly owner = new Map<string, CheckpointReader>();

  constructor(index: string, weightMap: Map<string, string>, shards: readonly CheckpointReader[]) {
    this.files = [index, ...shards.flatMap((s) => s.files)];
    const tensors: TensorInfo[] = [];
    for (const shard of shards) {
      for (const t of shard.tensors) {
        if (this.owner.has(t.name)) throw new FormatError(`tensor ${t.name} appears in two shards of ${index}`);
        this.owner.set(t.name, shard);
        tensors.push(t);
      }
    }
    for (const [name, file] of weightMap) {
      if (!this.owner.has(name)) throw new FormatError(`${index} maps ${name} to ${file}, but that shard lacks it`);
    }
    this.tensors = tensors;
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  read(name: string): Promise<RawTensor> {
    const shard = this.owner.get(name);
    if (!shard) return Promise.reject(new NotFoundError(`no tensor named ${name} in this checkpoint`));
    return shard.read(name);
  }

  async close(): Promise<void> {
    await Promise.all([...new Set(this.owner.values())].map((s) => s.close()));
  }
}

/** Opens a set of weight files found by `findWeightFiles` (or chosen by the caller). */
export async function openWeights(files: WeightFiles): Promise<CheckpointReader> {
  if (!files.index) return openFile(files.format, files.files[0] as string);
  const { weightMap } = await readShardIndex(files.index);
  const shards: CheckpointReader[] = [];
  try {
    for (const f of files.files) shards.push(await openFile(files.format, f));
    return new ShardedReader(files.index, weightMap, shards);
  } catch (err) {
    await Promise.all(shards.map((s) => s.close()));
    throw err;
  }
}

/** Opens the weights of a model directory (Hub layout or converted). */
export async function openCheckpoint(dir: string): Promise<{ reader: CheckpointReader; files: WeightFiles }> {
  const files = await findWeightFiles(dir);
  return { reader: await openWeights(files), files };
}
