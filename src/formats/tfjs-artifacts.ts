/**
 * TensorFlow.js weight artifacts: `model.json` (the ModelArtifacts JSON that tf.io reads) plus binary
 * shards named like tensorflowjs_converter's (`group1-shard1of3.bin`). One weight group; tensors are
 * concatenated and may straddle shard boundaries, exactly as stock tf.io expects. float16 / uint8
 * storage uses the manifest's own `quantization` field so stock tfjs dequantizes on load.
 */
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FormatError, ioErrorFrom, NotFoundError } from '../errors.js';
import {
  isFloatDType,
  numElements,
  toFloat32,
  toInt32,
  type CheckpointReader,
  type DType,
  type RawTensor,
  type TensorInfo,
} from './tensor.js';

export const TFJS_MODEL_JSON = 'model.json';
export const TFJS_FORMAT = 'tfhf-weights';

/** Storage choices of `tfhf convert --dtype`. */
export type StorageDtype = 'float32' | 'float16' | 'uint8';

/** The subset of tfjs-core's io types this file reads and writes (tfjs-core/src/io/types.ts). */
export interface WeightsManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool';
  quantization?: { dtype: 'float16' } | { dtype: 'uint8'; scale: number; min: number };
}
export interface WeightsManifestGroup {
  paths: string[];
  weights: WeightsManifestEntry[];
}

export interface SourceFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** What tfhf records about a conversion, under userDefinedMetadata.tfhf. */
export interface TfhfArtifactInfo {
  /** 1, or 2 when `transposed` lists tensors (a reader that ignored the list would load them wrong). */
  formatVersion: 1 | 2;
  sourceFormat: string;
  sourceFiles: SourceFile[];
  storageDtype: StorageDtype;
  /** Tensors stored once under another name because their contents are identical (tied weights). */
  aliases: Record<string, string>;
  /**
   * Stored tensors whose bytes and manifest shape are the transpose of the source's 2-D tensor ([in, out]
   * for a PyTorch Linear weight): those the model multiplies that way (docs/conversion.md). Absent: none.
   */
  transposed?: string[];
}

/** Newest formatVersion this tfhf reads. */
export const TFJS_FORMAT_VERSION = 2;

export interface ModelJson {
  format: string;
  generatedBy: string;
  convertedBy: string;
  weightsManifest: WeightsManifestGroup[];
  userDefinedMetadata: {
    tfhf: TfhfArtifactInfo;
    config: Record<string, unknown>;
    generationConfig?: Record<string, unknown>;
  };
}

// ---------------------------------------------------------------------------------------------
// Encoding

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half, round to nearest even (what numpy's astype(float16) does). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** Affine uint8 parameters covering [min, max]; a constant tensor gets scale 1 so it stays exact. */
function uint8Params(values: Float32Array): { scale: number; min: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) return { scale: 1, min: 0 };
  return { scale: max > min ? (max - min) / 255 : 1, min };
}

/** Turns one source tensor into manifest entry + bytes in the requested storage. */
export function encodeTensor(raw: RawTensor, storage: StorageDtype): { entry: WeightsManifestEntry; bytes: Uint8Array } {
  const shape = [...raw.shape];
  if (!isFloatDType(raw.dtype)) {
    const ints = toInt32(raw);
    if (raw.dtype === 'BOOL') {
      return { entry: { name: raw.name, shape, dtype: 'bool' }, bytes: Uint8Array.from(ints) };
    }
    return { entry: { name: raw.name, shape, dtype: 'int32' }, bytes: new Uint8Array(ints.buffer) };
  }
  const values = toFloat32(raw);
  if (storage === 'float32') {
    return { entry: { name: raw.name, shape, dtype: 'float32' }, bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
  }
  if (storage === 'float16') {
    const halves = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) halves[i] = floatToHalf(values[i] as number);
    return {
      entry: { name: raw.name, shape, dtype: 'float32', quantization: { dtype: 'float16' } },
      bytes: new Uint8Array(halves.buffer),
    };
  }
  const { scale, min } = uint8Params(values);
  const q = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    q[i] = Math.min(255, Math.max(0, Math.round(((values[i] as number) - min) / scale)));
  }
  return { entry: { name: raw.name, shape, dtype: 'float32', quantization: { dtype: 'uint8', scale, min } }, bytes: q };
}

/** A 2-D floating-point tensor transposed, as float32 ([rows, cols] → [cols, rows]). */
export function transposeTensor(raw: RawTensor): RawTensor {
  if (raw.shape.length !== 2 || !isFloatDType(raw.dtype)) throw new FormatError(`${raw.name}: only 2-D float tensors can be stored transposed`);
  const [rows, cols] = raw.shape as [number, number];
  const src = toFloat32(raw);
  const out = new Float32Array(rows * cols);
  for (let r0 = 0; r0 < rows; r0 += 32) {
    for (let c0 = 0; c0 < cols; c0 += 32) {
      for (let c = c0; c < Math.min(c0 + 32, cols); c++) {
        for (let r = r0; r < Math.min(r0 + 32, rows); r++) out[c * rows + r] = src[r * cols + c] as number;
      }
    }
  }
  return { name: raw.name, dtype: 'F32', shape: [cols, rows], data: new Uint8Array(out.buffer) };
}

/** Streams bytes into fixed-size shard files; names get their final `ofN` count when finished. */
export class ShardWriter {
  private handle: FileHandle | undefined;
  private used = 0;
  private readonly temp: string[] = [];

  constructor(
    private readonly dir: string,
    private readonly shardBytes: number,
    private readonly group = 1,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (!this.handle || this.used === this.shardBytes) await this.nextShard();
      const n = Math.min(bytes.length - offset, this.shardBytes - this.used);
      const handle = this.handle as FileHandle;
      try {
        await handle.write(bytes, offset, n);
      } catch (err) {
        throw ioErrorFrom(err, this.dir, 'write to');
      }
      this.used += n;
      offset += n;
    }
  }

  private async nextShard(): Promise<void> {
    await this.handle?.close();
    const path = join(this.dir, `group${this.group}-shard${this.temp.length + 1}.partial`);
    try {
      this.handle = await open(path, 'w');
    } catch (err) {
      throw ioErrorFrom(err, this.dir, 'write to');
    }
    this.temp.push(path);
    this.used = 0;
  }

  /** Closes the last shard and returns the shard file names (relative to the directory). */
  async finish(): Promise<string[]> {
    await this.handle?.close();
    this.handle = undefined;
    const total = this.temp.length;
    const names: string[] = [];
    for (let i = 0; i < total; i++) {
      const name = `group${this.group}-shard${i + 1}of${total}.bin`;
      await rename(this.temp[i] as string, join(this.dir, name));
      names.push(name);
    }
    return names;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

function bytesPerElement(entry: WeightsManifestEntry): number {
  const q = entry.quantization?.dtype;
  if (q === 'float16') return 2;
  if (q === 'uint8') return 1;
  return entry.dtype === 'bool' ? 1 : 4;
}

const DTYPE_OF: Record<WeightsManifestEntry['dtype'], DType> = { float32: 'F32', int32: 'I32', bool: 'BOOL' };

interface Located {
  entry: WeightsManifestEntry;
  group: { paths: string[]; starts: number[] };
  offset: number;
  byteLength: number;
}

export function parseModelJson(text: string, path: string): ModelJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  const m = json as Partial<ModelJson> | null;
  if (!m || !Array.isArray(m.weightsManifest)) throw new FormatError(`${path} has no weightsManifest`);
  if (m.format !== TFJS_FORMAT || !m.userDefinedMetadata?.tfhf || !m.userDefinedMetadata.config) {
    throw new FormatError(`${path} was not written by tfhf convert`, {
      hint: 'convert the Hub checkpoint with `tfhf convert`; other TensorFlow.js models cannot be run by tfhf',
    });
  }
  const { formatVersion, transposed } = m.userDefinedMetadata.tfhf;
  if (formatVersion !== 1 && formatVersion !== 2) {
    throw new FormatError(`${path} has tfhf formatVersion ${String(formatVersion)}, which this tfhf (reads ≤ ${TFJS_FORMAT_VERSION}) does not know`, {
      hint: 'convert the model again with this tfhf, or update tfhf',
    });
  }
  if (transposed !== undefined && !(Array.isArray(transposed) && transposed.every((n) => typeof n === 'string'))) {
    throw new FormatError(`${path}: userDefinedMetadata.tfhf.transposed is not a list of tensor names`);
  }
  return m as ModelJson;
}

/** Reads a tfhf-converted directory back as a CheckpointReader (dequantizing to float32). */
class TfjsArtifactReader implements CheckpointReader {
  readonly tensors: readonly TensorInfo[];
  readonly files: readonly string[];
  /**
   * Names (aliases included) whose stored tensor is the transpose of the source's: read() returns them
   * as stored, [in, out]; model loaders that want that layout take them as they are (models/layers.ts).
   */
  readonly transposed: ReadonlySet<string>;
  private readonly byName = new Map<string, Located>();
  /** Open shards; promises, so that concurrent reads of one shard share one handle. */
  private readonly handles = new Map<string, Promise<FileHandle>>();

  constructor(
    private readonly dir: string,
    modelJsonPath: string,
    readonly model: ModelJson,
    shardSizes: Map<string, number>,
  ) {
    const tensors: TensorInfo[] = [];
    for (const g of model.weightsManifest) {
      const starts: number[] = [];
      let total = 0;
      for (const p of g.paths) {
        starts.push(total);
        total += shardSizes.get(p) ?? 0;
      }
      const group = { paths: g.paths, starts };
      let offset = 0;
      for (const entry of g.weights) {
        if (!Array.isArray(entry.shape) || entry.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
          throw new FormatError(`${modelJsonPath}: weight ${entry.name} has an invalid shape`);
        }
        const byteLength = numElements(entry.shape) * bytesPerElement(entry);
        if (offset + byteLength > total) {
          throw new FormatError(`${modelJsonPath}: weight ${entry.name} lies beyond the end of its shards`, {
            hint: 'the conversion is incomplete; run tfhf convert again',
          });
        }
        this.byName.set(entry.name, { entry, group, offset, byteLength });
        tensors.push({ name: entry.name, dtype: DTYPE_OF[entry.dtype], shape: entry.shape });
        offset += byteLength;
      }
    }
    const transposed = new Set<string>();
    for (const name of model.userDefinedMetadata.tfhf.transposed ?? []) {
      const t = this.byName.get(name);
      if (!t || t.entry.shape.length !== 2) throw new FormatError(`${modelJsonPath}: transposed weight ${name} is not a stored 2-D tensor`);
      transposed.add(name);
    }
    for (const [alias, target] of Object.entries(model.userDefinedMetadata.tfhf.aliases)) {
      const t = this.byName.get(target);
      if (!t) throw new FormatError(`${modelJsonPath}: alias ${alias} points to missing weight ${target}`);
      this.byName.set(alias, t);
      if (transposed.has(target)) transposed.add(alias);
      tensors.push({ name: alias, dtype: DTYPE_OF[t.entry.dtype], shape: t.entry.shape });
    }
    this.transposed = transposed;
    this.tensors = tensors;
    this.files = [modelJsonPath, ...model.weightsManifest.flatMap((g) => g.paths.map((p) => join(dir, p)))];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  private handle(path: string): Promise<FileHandle> {
    let h = this.handles.get(path);
    if (!h) {
      h = open(join(this.dir, path), 'r');
      this.handles.set(path, h);
    }
    return h;
  }

  /**
   * Reads a tensor's stored bytes into `out()` (its byteLength), each shard's part concurrently. `out` is
   * called right before each read is issued (synchronously with it), so it may return a fresh view of
   * memory that moved meanwhile (a wasm heap view is detached when the heap grows).
   */
  private async readRange(loc: Located, out: () => Uint8Array): Promise<void> {
    const reads: Promise<void>[] = [];
    let done = 0;
    const { paths, starts } = loc.group;
    for (let i = 0; i < paths.length && done < loc.byteLength; i++) {
      const shardStart = starts[i] as number;
      const shardEnd = i + 1 < paths.length ? (starts[i + 1] as number) : Infinity;
      const pos = loc.offset + done;
      if (pos >= shardEnd) continue;
      const n = Math.min(loc.byteLength - done, shardEnd - pos);
      const at = done;
      const path = paths[i] as string;
      reads.push(
        this.handle(path).then(async (h) => {
          const { bytesRead } = await h.read(out(), at, n, pos - shardStart);
          if (bytesRead !== n) throw new FormatError(`weight shard ${path} is truncated`);
        }),
      );
      done += n;
    }
    // All settle before an error is reported: `out` may be memory the caller frees on error.
    const results = await Promise.allSettled(reads);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Reads a float32 tensor stored without quantization straight into `dest()` (exactly its bytes; e.g. a
   * view of the wasm heap, so the weights are not staged in a JavaScript buffer first). `dest` is called
   * right before each read is issued: a view taken earlier may have been detached since. Returns false,
   * reading nothing, for tensors that need decoding (quantized, int, bool): use read() for those.
   */
  async readInto(name: string, dest: () => Uint8Array): Promise<boolean> {
    const loc = this.byName.get(name);
    if (!loc) throw new NotFoundError(`no tensor named ${name} in ${this.dir}`);
    if (loc.entry.dtype !== 'float32' || loc.entry.quantization) return false;
    await this.readRange(loc, () => {
      const d = dest();
      if (d.byteLength !== loc.byteLength) throw new RangeError(`${name}: ${d.byteLength} bytes given for ${loc.byteLength}`);
      return d;
    });
    return true;
  }

  async read(name: string): Promise<RawTensor> {
    const loc = this.byName.get(name);
    if (!loc) throw new NotFoundError(`no tensor named ${name} in ${this.dir}`);
    const bytes = new Uint8Array(loc.byteLength);
    await this.readRange(loc, () => bytes);
    const { entry } = loc;
    const q = entry.quantization;
    const info = { name, dtype: DTYPE_OF[entry.dtype], shape: entry.shape };
    if (!q) return { ...info, data: bytes };
    const n = numElements(entry.shape);
    const out = new Float32Array(n);
    if (q.dtype === 'float16') {
      out.set(toFloat32({ name, dtype: 'F16', shape: entry.shape, data: bytes }));
    } else {
      for (let i = 0; i < n; i++) out[i] = (bytes[i] as number) * q.scale + q.min;
    }
    return { ...info, dtype: 'F32', data: new Uint8Array(out.buffer) };
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(async (h) => (await h.catch(() => undefined))?.close()));
  }
}

export async function readModelJson(modelJsonPath: string): Promise<ModelJson> {
  let text: string;
  try {
    text = await readFile(modelJsonPath, 'utf8');
  } catch (err) {
    throw ioErrorFrom(err, modelJsonPath, 'read');
  }
  return parseModelJson(text, modelJsonPath);
}

export async function openTfjsArtifact(
  modelJsonPath: string,
): Promise<
  CheckpointReader & { model: ModelJson; transposed: ReadonlySet<string>; readInto(name: string, dest: () => Uint8Array): Promise<boolean> }
> {
  const model = await readModelJson(modelJsonPath);
  const dir = dirname(modelJsonPath);
  const sizes = new Map<string, number>();
  for (const g of model.weightsManifest) {
    for (const p of g.paths) {
      if (p.includes('/') || p.includes('\\') || p === '..') throw new FormatError(`${modelJsonPath}: bad shard path ${p}`);
      try {
        const h = await open(join(dir, p), 'r');
        sizes.set(p, (await h.stat()).size);
        await h.close();
      } catch (err) {
        throw ioErrorFrom(err, join(dir, p), 'read weight shard');
      }
    }
  }
  return new TfjsArtifactReader(dir, modelJsonPath, model, sizes);
}
