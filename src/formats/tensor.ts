/**
 * The common currency of every checkpoint reader: named tensors whose bytes are read on demand.
 * Readers validate untrusted files; consumers get raw little-endian bytes plus dtype and shape,
 * and convert them with `toFloat32` / `toInt32` where they need numbers.
 */
import { FormatError, UnsupportedError } from '../errors.js';

/** Element types as safetensors names them; torch storages map onto the same set. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isDType(value: string): value is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_SIZE, value);
}

export function isFloatDType(dtype: DType): boolean {
  return dtype === 'F64' || dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** A tensor's contents: contiguous, row-major, little-endian. */
export interface RawTensor extends TensorInfo {
  readonly data: Uint8Array;
}

/** Lazy access to the tensors of one checkpoint (a single file or a set of shards). */
export interface CheckpointReader {
  /** Every tensor, in file order. */
  readonly tensors: readonly TensorInfo[];
  /** The files this reader reads, for provenance. */
  readonly files: readonly string[];
  has(name: string): boolean;
  /** Reads one tensor without loading the rest of the file. */
  read(name: string): Promise<RawTensor>;
  close(): Promise<void>;
}

export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function byteLengthOf(info: Pick<TensorInfo, 'dtype' | 'shape'>): number {
  return numElements(info.shape) * DTYPE_SIZE[info.dtype];
}

function view(raw: RawTensor): DataView {
  return new DataView(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
}

/** IEEE half → float32; exact for every half value including subnormals, infinities and NaN. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Float values of a floating-point tensor as float32 (bf16 and f16 exactly; f64 rounded); F32 may share raw's buffer. */
export function toFloat32(raw: RawTensor): Float32Array {
  const n = numElements(raw.shape);
  const dv = view(raw);
  switch (raw.dtype) {
    case 'F32': {
      // Readers hand out fresh, aligned buffers: view them instead of copying (weights are hundreds of MB).
      if (raw.data.byteOffset % 4 === 0) return new Float32Array(raw.data.buffer, raw.data.byteOffset, n);
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(raw.data.subarray(0, n * 4));
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of a float32: widening is a shift, exact by construction.
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    default:
      throw new UnsupportedError(`tensor ${raw.name} has dtype ${raw.dtype}, not a floating-point type`);
  }
}

/** Integer and bool tensors as int32 (TensorFlow.js has no int64); values outside int32 are refused. */
export function toInt32(raw: RawTensor): Int32Array {
  const n = numElements(raw.shape);
  const dv = view(raw);
  const out = new Int32Array(n);
  switch (raw.dtype) {
    case 'I64':
      for (let i = 0; i < n; i++) {
        const v = dv.getBigInt64(i * 8, true);
        if (v > 2147483647n || v < -2147483648n) {
          throw new UnsupportedError(`tensor ${raw.name} holds the int64 value ${v}, which does not fit int32`);
        }
        out[i] = Number(v);
      }
      return out;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return out;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true);
      return out;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      return out;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = dv.getUint8(i);
      return out;
    default:
      throw new FormatError(`tensor ${raw.name} has dtype ${raw.dtype}, not an integer type`);
  }
}
