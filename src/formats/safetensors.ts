/**
 * Reader for the safetensors format: u64 LE header length N, N bytes of JSON header, then the data
 * section. The file is untrusted, so the header is validated as strictly as the Rust `safetensors`
 * crate does before any offset is used, and tensors are read one byte range at a time.
 *
 * Dtype policy: dtypes that safetensors defines but TensorFlow.js cannot hold (F8_*, U16/U32/U64, ...)
 * are an UnsupportedError (valid file, unsupported content); any other string is a FormatError.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { FormatError, NotFoundError, UnsupportedError, ioErrorFrom } from '../errors.js';
import { DTYPE_SIZE, isDType, type CheckpointReader, type RawTensor, type TensorInfo } from './tensor.js';

/** Same bound as the Rust crate's MAX_HEADER_SIZE, so a hostile length cannot make us allocate gigabytes. */
export const MAX_HEADER_SIZE = 100_000_000;

const KNOWN_UNSUPPORTED = new Set(['F4', 'F6_E2M3', 'F6_E3M2', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'U16', 'U32', 'U64', 'C64']);
const CORRUPT_HINT = 'the file is truncated or not a safetensors file; download it again';

interface Entry extends TensorInfo {
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsReader extends CheckpointReader {
  /** The `__metadata__` entry (e.g. {format: "pt"}); empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute file offset of the data section (8 + header length). */
  readonly dataStart: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads exactly buf.length bytes; a short read means the file ended (or shrank) underneath us. */
async function readFully(handle: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

function parseEntry(path: string, name: string, raw: unknown): Entry {
  const bad = (problem: string): FormatError => new FormatError(`${path}: tensor '${name}' ${problem}`, { hint: CORRUPT_HINT });
  if (!isPlainObject(raw)) throw bad('has a header entry that is not an object');
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') throw bad('has no dtype string');
  if (!isDType(dtype)) {
    if (KNOWN_UNSUPPORTED.has(dtype)) {
      throw new UnsupportedError(`${path}: tensor '${name}' has dtype ${dtype}, which tfhf does not support`, {
        hint: 'convert the checkpoint to F32, F16 or BF16 first',
      });
    }
    throw bad(`has unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw bad(`has shape ${JSON.stringify(shape)}, not an array of non-negative integers`);
  }
  let numel = 1;
  for (const d of shape) {
    numel *= d;
    // Checked per step: a product past 2^53 would silently lose precision and could match the byte count by accident.
    if (!Number.isSafeInteger(numel * DTYPE_SIZE[dtype])) throw bad(`has shape [${shape.join(', ')}], too large`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isIndex(offsets[0]) || !isIndex(offsets[1]) || offsets[0] > offsets[1]) {
    throw bad(`has data_offsets ${JSON.stringify(offsets)}, not [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = numel * DTYPE_SIZE[dtype];
  if (end - begin !== expected) {
    throw bad(`spans ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${expected} (size mismatch)`);
  }
  return { name, dtype, shape: Object.freeze([...shape]), begin, end };
}

function parseHeader(path: string, bytes: Uint8Array): { entries: Entry[]; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch {
    throw new FormatError(`${path}: the safetensors header is not valid UTF-8 JSON`, { hint: CORRUPT_HINT });
  }
  if (!isPlainObject(json)) {
    throw new FormatError(`${path}: the safetensors header is not a JSON object`, { hint: CORRUPT_HINT });
  }
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name !== '__metadata__') {
      entries.push(parseEntry(path, name, value));
      continue;
    }
    if (!isPlainObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
      throw new FormatError(`${path}: __metadata__ is not an object of strings`, { hint: CORRUPT_HINT });
    }
    // defineProperty, not assignment: a "__proto__" key must stay data, not reach the prototype.
    for (const [k, v] of Object.entries(value)) Object.defineProperty(metadata, k, { value: v, enumerable: true });
  }
  return { entries, metadata };
}

/** Like the Rust crate: tensors must tile [0, dataLength) exactly, with no overlap, gap or trailing bytes. */
function checkLayout(path: string, entries: Entry[], dataLength: number): void {
  // Stable sort: zero-size tensors sharing an offset keep their header order.
  entries.sort((a, b) => a.begin - b.begin);
  for (const e of entries) {
    if (e.end > dataLength) {
      throw new FormatError(
        `${path}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] lie beyond the data section (${dataLength} bytes)`,
        { hint: CORRUPT_HINT },
      );
    }
  }
  let pos = 0;
  for (const e of entries) {
    if (e.begin < pos) {
      throw new FormatError(`${path}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (ending at ${pos})`, { hint: CORRUPT_HINT });
    }
    if (e.begin > pos) {
      throw new FormatError(`${path}: gap of ${e.begin - pos} bytes before tensor '${e.name}' in the data section`, { hint: CORRUPT_HINT });
    }
    pos = e.end;
  }
  if (pos !== dataLength) {
    throw new FormatError(`${path}: ${dataLength - pos} bytes after the last tensor in the data section`, { hint: CORRUPT_HINT });
  }
}

async function validate(path: string, handle: FileHandle): Promise<SafetensorsReader> {
  const size = (await handle.stat()).size;
  const prefix = new Uint8Array(8);
  if (size < 8 || (await readFully(handle, prefix, 0)) < 8) {
    throw new FormatError(`${path}: file is ${size} bytes, too short for a safetensors header`, { hint: CORRUPT_HINT });
  }
  const headerLength = new DataView(prefix.buffer).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_SIZE)) {
    throw new FormatError(`${path}: header length ${headerLength} exceeds the ${MAX_HEADER_SIZE}-byte limit`, { hint: CORRUPT_HINT });
  }
  const n = Number(headerLength);
  if (8 + n > size) {
    throw new FormatError(`${path}: header length ${n} runs past the end of the file (${size} bytes)`, { hint: CORRUPT_HINT });
  }
  const headerBytes = new Uint8Array(n);
  if ((await readFully(handle, headerBytes, 8)) < n) {
    throw new FormatError(`${path}: the file ended while reading the header`, { hint: CORRUPT_HINT });
  }
  const { entries, metadata } = parseHeader(path, headerBytes);
  const dataStart = 8 + n;
  checkLayout(path, entries, size - dataStart);

  const byName = new Map(entries.map((e) => [e.name, e]));
  let closed = false;
  return {
    files: [path],
    tensors: entries.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    metadata: Object.freeze(metadata),
    dataStart,
    has: (name) => byName.has(name),
    async read(name: string): Promise<RawTensor> {
      const e = byName.get(name);
      if (!e) throw new NotFoundError(`${path}: no tensor named '${name}'`);
      if (closed) throw new Error(`read('${name}') after close() of ${path}`);
      const data = new Uint8Array(e.end - e.begin);
      let got: number;
      try {
        got = await readFully(handle, data, dataStart + e.begin);
      } catch (err) {
        throw ioErrorFrom(err, path, 'read');
      }
      if (got < data.length) {
        throw new FormatError(`${path}: the file ended while reading tensor '${name}' (it changed after opening?)`, { hint: CORRUPT_HINT });
      }
      return { name, dtype: e.dtype, shape: e.shape, data };
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}

export async function openSafetensors(path: string): Promise<SafetensorsReader> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw ioErrorFrom(err, path, 'open');
  }
  try {
    return await validate(path, handle);
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err instanceof FormatError || err instanceof UnsupportedError ? err : ioErrorFrom(err, path, 'read');
  }
}
