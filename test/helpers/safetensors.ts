/** Writes safetensors files for tests and benchmarks, including deliberately malformed ones. */

export interface TestTensor {
  name: string;
  /** A string, not DType, so tests can write dtypes the reader must refuse. */
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export interface WriteOptions {
  metadata?: Record<string, string>;
  /** Edits the header object after the (correct) offsets are filled in. */
  patchHeader?: (header: Record<string, unknown>) => void;
  /** Replaces the header bytes wholesale (the length prefix follows unless headerLength is set). */
  headerBytes?: Uint8Array;
  headerLength?: bigint;
  /** Keeps only the first `truncate` bytes of the file. */
  truncate?: number;
  /** Appended after the data section. */
  trailing?: Uint8Array;
}

export type HeaderEntry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Serialises like the reference writer: header padded with spaces to 8 bytes, tensors in the given order. */
export function serialise(tensors: readonly TestTensor[], opts: WriteOptions = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let pos = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.bytes.length] };
    pos += t.bytes.length;
  }
  opts.patchHeader?.(header);
  let json = Buffer.from(opts.headerBytes ?? Buffer.from(JSON.stringify(header)));
  if (!opts.headerBytes && json.length % 8) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), ' ')]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(opts.headerLength ?? BigInt(json.length));
  const file = Buffer.concat([prefix, json, ...tensors.map((t) => t.bytes), opts.trailing ?? new Uint8Array(0)]);
  return opts.truncate === undefined ? file : file.subarray(0, opts.truncate);
}

