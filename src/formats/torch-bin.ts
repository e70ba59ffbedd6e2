/**
 * PyTorch `pytorch_model.bin` state dicts, read without executing anything: the zip archive of
 * torch >= 1.6 and the legacy pickle stream of older versions (still common on the Hub).
 * The pickles go through the restricted unpickler with an allowlist of the few torch globals a
 * state dict uses; storage bytes are read lazily, per tensor.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants as bufferConstants } from 'node:buffer';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { FormatError, NotFoundError, TfhfError, UnsupportedError, ioErrorFrom } from '../errors.js';
import {
  DTYPE_SIZE,
  numElements,
  type CheckpointReader,
  type DType,
  type RawTensor,
  type TensorInfo,
} from './tensor.js';
import {
  PickleTruncatedError,
  PyGlobal,
  PyObject,
  PyTuple,
  describe,
  unpickleAt,
  type GlobalHandler,
  type PyValue,
} from './pickle.js';

const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  'torch.FloatStorage': 'F32',
  'torch.DoubleStorage': 'F64',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
  // Only _rebuild_tensor_v3 pairs an untyped (byte) storage with a tensor dtype of its own.
  'torch.UntypedStorage': 'U8',
};

/** dtype globals, which _rebuild_tensor_v3 passes explicitly. */
const TORCH_DTYPES: Readonly<Record<string, DType>> = {
  'torch.float32': 'F32',
  'torch.float64': 'F64',
  'torch.float16': 'F16',
  'torch.bfloat16': 'BF16',
  'torch.int64': 'I64',
  'torch.int32': 'I32',
  'torch.int16': 'I16',
  'torch.int8': 'I8',
  'torch.uint8': 'U8',
  'torch.bool': 'BOOL',
};

/**
 * Legitimate torch content we cannot represent: allowlisted so that the user is told "unsupported"
 * rather than "malicious", and refused as soon as it is used.
 */
const UNSUPPORTED_GLOBALS = [
  'torch.ComplexFloatStorage',
  'torch.ComplexDoubleStorage',
  'torch.QInt8Storage',
  'torch.QUInt8Storage',
  'torch.QInt32Storage',
  'torch.QUInt4x2Storage',
  'torch.QUInt2x4Storage',
  'torch.complex64',
  'torch.complex128',
  'torch.uint16',
  'torch.uint32',
  'torch.uint64',
  'torch.float8_e4m3fn',
  'torch.float8_e5m2',
  'torch._utils._rebuild_qtensor',
  'torch._utils._rebuild_sparse_tensor',
  'torch._utils._rebuild_sparse_csr_tensor',
  'torch._utils._rebuild_meta_tensor_no_storage',
  'torch._utils._rebuild_wrapper_subclass',
  'torch._utils._rebuild_nested_tensor',
];

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** The pickles of the largest real state dicts are a few MB; anything near this is abuse. */
const MAX_PICKLE_BYTES = 1 << 30;
const MAX_ZIP_ENTRIES = 1 << 20;

/** A storage, or (legacy format) a view of one: `byteLength` bytes from `byteOffset` in storage `key`. */
class Storage extends PyObject {
  constructor(
    readonly key: string,
    readonly dtype: DType,
    readonly byteOffset: number,
    readonly byteLength: number,
  ) {
    super();
  }
}

/** A tensor as torch rebuilds it: a strided view of a storage, offsets and strides in elements. */
class TensorRef extends PyObject {
  constructor(
    readonly storage: Storage,
    readonly dtype: DType,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {
    super();
  }
}

interface TensorEntry extends TensorInfo {
  readonly key: string;
  /** Byte range of the root storage that holds every element of the view. */
  readonly start: number;
  readonly end: number;
  readonly stride: readonly number[];
}

type RangeReader = (key: string, start: number, end: number) => Promise<Uint8Array>;
/** Root storages by key: every persistent id naming a key must agree on them. */
type Roots = Map<string, { dtype: DType; numel: number }>;

const isIndex = (v: PyValue | undefined): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Opens a `pytorch_model.bin` (zip or legacy format); tensors are read on demand. */
export async function openTorchBin(path: string): Promise<CheckpointReader> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw ioErrorFrom(err, path, 'read');
  }
  let keepOpen = false;
  try {
    const size = (await fh.stat()).size;
    const head = await readAt(fh, path, 0, Math.min(size, 512));
    const ascii = (from: number, to: number): string => String.fromCharCode(...head.subarray(from, to));
    if (ascii(0, 4) === 'PK\x03\x04' || ascii(0, 4) === 'PK\x05\x06') return await openZip(path);
    if (ascii(257, 262) === 'ustar') {
      throw new UnsupportedError(`${path} is a tar archive: the PyTorch checkpoint format of torch < 0.4`, {
        hint: 'load it with torch and re-save it with torch.save (or save_pretrained) from a recent version',
      });
    }
    // Legacy files start with the magic number pickled by protocol 2 (PROTO) or 0/1 (LONG).
    if (head[0] !== 0x80 && head[0] !== 0x4c) {
      throw new FormatError(`${path} is not a PyTorch checkpoint: it is neither a zip archive nor a pickle`, {
        hint: 'the file may be corrupt or an error page saved in its place; download it again',
      });
    }
    const reader = await openLegacy(path, fh, size, head);
    keepOpen = true;
    return reader;
  } finally {
    if (!keepOpen) await fh.close().catch(() => undefined);
  }
}

function torchGlobals(file: string): Map<string, GlobalHandler> {
  const globals = new Map<string, GlobalHandler>();
  const fail = (msg: string): FormatError => new FormatError(`${file}: ${msg}`);
  const index = (v: PyValue | undefined, what: string): number => {
    if (!isIndex(v)) throw fail(`bad tensor ${what} (${describe(v)})`);
    return v;
  };
  const indices = (v: PyValue | undefined, what: string): number[] => {
    const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : undefined;
    if (!items) throw fail(`tensor ${what} is ${describe(v)}`);
    return items.map((d) => index(d, what));
  };
  const rebuild = (args: readonly PyValue[], dtypeArg?: PyValue): TensorRef => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof Storage)) throw fail(`a tensor is rebuilt from ${describe(storage)}, not a storage`);
    const shape = indices(size, 'size');
    const strides = indices(stride, 'stride');
    if (shape.length !== strides.length) throw fail(`tensor size ${shape.length}-d but stride ${strides.length}-d`);
    let dtype = storage.dtype;
    if (dtypeArg !== undefined) {
      const name = dtypeArg instanceof PyGlobal ? dtypeArg.name : describe(dtypeArg);
      const mapped = TORCH_DTYPES[name];
      if (!mapped) throw new UnsupportedError(`${file} holds a tensor of dtype ${name}, which tfhf does not support`);
      dtype = mapped;
    }
    return new TensorRef(storage, dtype, index(offset, 'storage offset'), shape, strides);
  };
  const unwrap = (args: readonly PyValue[]): PyValue => {
    if (!(args[0] instanceof TensorRef)) throw fail('a parameter wraps something that is not a tensor');
    return args[0];
  };
  globals.set('collections.OrderedDict', {
    call: (args) => {
      if (args.length) throw fail('OrderedDict built with arguments');
      return new Map();
    },
    // state_dict() attaches `_metadata` (module versions) to the OrderedDict; nothing here needs it.
    build: () => undefined,
  });
  globals.set('torch._utils._rebuild_tensor', { call: (args) => rebuild(args) });
  globals.set('torch._utils._rebuild_tensor_v2', { call: (args) => rebuild(args) });
  globals.set('torch._utils._rebuild_tensor_v3', { call: (args) => rebuild(args, args[6] ?? null) });
  globals.set('torch._utils._rebuild_parameter', { call: unwrap });
  globals.set('torch._utils._rebuild_parameter_with_state', { call: unwrap });
  for (const name of [...Object.keys(STORAGE_DTYPES), ...Object.keys(TORCH_DTYPES)]) globals.set(name, {});
  for (const name of UNSUPPORTED_GLOBALS) {
    const refuse = (): never => {
      throw new UnsupportedError(`${file} uses ${name}, which tfhf does not support`, {
        hint: 'convert the tensors to a plain dtype (e.g. float32) and save the state dict again',
      });
    };
    // Markers (storage types, dtypes) are never called, so refusal happens where they are interpreted.
    globals.set(name, { call: refuse });
  }
  return globals;
}

/** Resolves ('storage', type, key, location, numel[, view_metadata]) ids, checking every use of a key agrees. */
function storageLoader(file: string, roots: Roots): (pid: PyValue) => PyValue {
  const fail = (msg: string): FormatError => new FormatError(`${file}: ${msg}`);
  return (pid: PyValue): PyValue => {
    const items = pid instanceof PyTuple ? pid.items : [];
    if (items[0] !== 'storage' || items.length < 5) throw fail(`unexpected persistent id (${describe(pid)})`);
    const [, type, key, , numel, view = null] = items;
    const typeName = type instanceof PyGlobal ? type.name : describe(type);
    const dtype = STORAGE_DTYPES[typeName];
    if (!dtype) {
      throw new UnsupportedError(`${file} holds a storage of type ${typeName}, which tfhf does not support`);
    }
    if (typeof key !== 'string' || !/^[\w.-]+$/.test(key)) throw fail('bad storage key');
    if (!isIndex(numel)) throw fail(`bad size of storage ${key}`);
    const known = roots.get(key);
    if (known && (known.dtype !== dtype || known.numel !== numel)) {
      throw fail(`storage ${key} is declared twice, differently`);
    }
    roots.set(key, { dtype, numel });
    const es = DTYPE_SIZE[dtype];
    if (view === null) return new Storage(key, dtype, 0, numel * es);
    // Legacy files may share one storage between tensors through views of it.
    const [, offset, viewSize] = view instanceof PyTuple ? view.items : [];
    if (!isIndex(offset) || !isIndex(viewSize) || offset + viewSize > numel) {
      throw fail(`bad view of storage ${key}`);
    }
    return new Storage(key, dtype, offset * es, viewSize * es);
  };
}

/** Collects the tensors of the top-level dict, in pickle order, and checks they fit their storages. */
function tensorEntries(file: string, root: PyValue): TensorEntry[] {
  if (!(root instanceof Map)) {
    throw new FormatError(`${file} does not hold a state dict: its pickle holds ${describe(root)}, not a dict`);
  }
  const out: TensorEntry[] = [];
  for (const [name, value] of root) {
    // Non-tensor values (e.g. ints, nested dicts of training state) are not weights: skip them.
    if (!(value instanceof TensorRef)) continue;
    if (typeof name !== 'string') {
      throw new FormatError(`${file} has a tensor under a non-string key (${describe(name)})`);
    }
    const es = DTYPE_SIZE[value.dtype];
    const n = numElements(value.shape);
    if (n * es > bufferConstants.MAX_LENGTH) {
      throw new UnsupportedError(`tensor ${name} of ${file} has ${n} elements, too many to load at once`);
    }
    let last = 0;
    value.shape.forEach((d, i) => (last += (d - 1) * (value.stride[i] as number)));
    const start = value.offset * es;
    const end = n === 0 ? start : (value.offset + last + 1) * es;
    if (end > value.storage.byteLength) {
      throw new FormatError(`${file}: tensor ${name} extends past the end of its storage`);
    }
    out.push({
      name,
      dtype: value.dtype,
      shape: value.shape,
      stride: value.stride,
      key: value.storage.key,
      start: value.storage.byteOffset + start,
      end: value.storage.byteOffset + end,
    });
  }
  if (out.length === 0 && root.size > 0) {
    const keys = [...root.keys()].slice(0, 5).map((k) => (typeof k === 'string' ? k : describe(k)));
    throw new FormatError(`${file} holds no tensors at the top level of its dict (keys: ${keys.join(', ')})`, {
      hint: 'this looks like a training checkpoint; save the model state dict on its own',
    });
  }
  return out;
}

/** Copies a strided view (indices relative to `src`) into contiguous row-major order. */
function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], es: number): Uint8Array {
  const n = numElements(shape);
  const out = new Uint8Array(n * es);
  if (n === 0) return out;
  let contiguous = true;
  for (let d = shape.length - 1, expected = 1; d >= 0; d--) {
    const size = shape[d] as number;
    if (size !== 1 && stride[d] !== expected) contiguous = false;
    expected *= size;
  }
  if (contiguous) {
    out.set(src.subarray(0, n * es));
    return out;
  }
  const nd = shape.length;
  const inner = shape[nd - 1] as number;
  const innerStride = stride[nd - 1] as number;
  const idx = new Array<number>(nd).fill(0);
  let base = 0;
  let o = 0;
  for (let row = 0; row < n / inner; row++) {
    if (innerStride === 1) {
      out.set(src.subarray(base * es, (base + inner) * es), o);
      o += inner * es;
    } else {
      for (let j = 0; j < inner; j++) {
        const s = (base + j * innerStride) * es;
        for (let b = 0; b < es; b++) out[o++] = src[s + b] as number;
      }
    }
    for (let d = nd - 2; d >= 0; d--) {
      base += stride[d] as number;
      if (++(idx[d] as number) < (shape[d] as number)) break;
      base -= (stride[d] as number) * (shape[d] as number);
      idx[d] = 0;
    }
  }
  return out;
}

function makeReader(
  file: string,
  entries: TensorEntry[],
  readRange: RangeReader,
  close: () => Promise<void>,
): CheckpointReader {
  const byName = new Map(entries.map((e) => [e.name, e]));
  let closed: Promise<void> | undefined;
  return {
    tensors: entries.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    files: [file],
    has: (name) => byName.has(name),
    async read(name): Promise<RawTensor> {
      const e = byName.get(name);
      if (!e) throw new NotFoundError(`tensor ${name} is not in ${file}`);
      const src = e.end > e.start ? await readRange(e.key, e.start, e.end) : new Uint8Array(0);
      return { name, dtype: e.dtype, shape: e.shape, data: gather(src, e.shape, e.stride, DTYPE_SIZE[e.dtype]) };
    },
    close: () => (closed ??= close()),
  };
}

// ---- zip format (torch >= 1.6) ----

function bigEndian(file: string): UnsupportedError {
  return new UnsupportedError(`${file} was saved on a big-endian machine; tfhf reads little-endian checkpoints only`, {
    hint: 'load it with torch and save it again on a little-endian machine',
  });
}

function zipError(err: unknown, file: string): Error {
  if ((err as NodeJS.ErrnoException | undefined)?.code) return ioErrorFrom(err, file, 'read');
  if (err instanceof TfhfError) return err;
  return new FormatError(`${file} is a damaged zip archive (${(err as Error | undefined)?.message ?? String(err)})`, {
    hint: 'the file may be truncated; download it again',
    cause: err,
  });
}

async function readEntry(file: string, zip: ZipFile, entry: Entry, start: number, end: number): Promise<Uint8Array> {
  const stored = entry.compressionMethod === 0;
  // Stored entries (what torch writes) are read in place; compressed ones must be inflated from the start.
  const stream = stored
    ? await zip.openReadStreamPromise(entry, { decodeFileData: false, start, end })
    : await zip.openReadStreamPromise(entry);
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  const all = Buffer.concat(chunks);
  const data = stored ? all : all.subarray(start, end);
  if (data.length !== end - start) {
    throw new FormatError(`${file}: zip entry ${entry.fileName} is shorter than its header says`);
  }
  return data;
}

async function openZip(file: string): Promise<CheckpointReader> {
  let zip: ZipFile;
  try {
    zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false });
  } catch (err) {
    throw zipError(err, file);
  }
  try {
    const entries = new Map<string, Entry>();
    for await (const entry of zip.eachEntry()) {
      if (entries.size >= MAX_ZIP_ENTRIES) throw new FormatError(`${file} has too many zip entries`);
      entries.set(entry.fileName, entry);
    }
    const pkl = [...entries.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.fileName));
    if (!pkl) {
      throw new FormatError(`${file} is a zip archive but not a PyTorch checkpoint (no data.pkl)`, {
        hint: 'expected a file written by torch.save',
      });
    }
    const prefix = pkl.fileName.slice(0, -'data.pkl'.length);
    for (const e of entries.values()) {
      if (e.isEncrypted()) throw new UnsupportedError(`${file} has encrypted zip entries`);
      if (!e.canDecodeFileData()) {
        throw new UnsupportedError(`${file} uses zip compression method ${e.compressionMethod}, which tfhf lacks`);
      }
    }
    const whole = async (e: Entry): Promise<Uint8Array> => readEntry(file, zip, e, 0, e.uncompressedSize);
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder && byteorder.uncompressedSize > 16) throw new FormatError(`${file}: bad byteorder record`);
    if (byteorder) {
      const order = new TextDecoder().decode(await whole(byteorder)).trim();
      if (order === 'big') throw bigEndian(file);
      if (order !== 'little') throw new FormatError(`${file} declares an unknown byte order '${order.slice(0, 20)}'`);
    }
    if (pkl.uncompressedSize > MAX_PICKLE_BYTES) throw new FormatError(`${file}: data.pkl is implausibly large`);
    const roots: Roots = new Map();
    const { value } = unpickleAt(await whole(pkl), 0, {
      file,
      globals: torchGlobals(file),
      persistentLoad: storageLoader(file, roots),
    });
    const tensors = tensorEntries(file, value);
    const storages = new Map<string, Entry>();
    for (const [key, { dtype, numel }] of roots) {
      const entry = entries.get(`${prefix}data/${key}`);
      if (!entry) throw new FormatError(`${file} lacks the data of storage ${key}`, { hint: 'download it again' });
      if (entry.uncompressedSize < numel * DTYPE_SIZE[dtype]) {
        throw new FormatError(`${file}: storage ${key} is shorter than declared`);
      }
      storages.set(key, entry);
    }
    return makeReader(
      file,
      tensors,
      async (key, start, end) => {
        try {
          return await readEntry(file, zip, storages.get(key) as Entry, start, end);
        } catch (err) {
          throw zipError(err, file);
        }
      },
      async () => zip.close(),
    );
  } catch (err) {
    zip.close();
    throw zipError(err, file);
  }
}

// ---- legacy format (torch < 1.6) ----

async function readAt(fh: FileHandle, file: string, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  try {
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (err) {
    throw ioErrorFrom(err, file, 'read');
  }
  if (done < length) throw new FormatError(`${file} is truncated`, { hint: 'download it again' });
  return buf;
}

interface LegacyHead {
  root: PyValue;
  keys: PyValue;
  roots: Roots;
  dataStart: number;
}

/** The pickles before the storage data: magic, protocol, sys_info, the state dict, the storage keys. */
function parseLegacyHead(file: string, buf: Uint8Array): LegacyHead {
  const globals = torchGlobals(file);
  const roots: Roots = new Map();
  let at = 0;
  const next = (persistentLoad?: (pid: PyValue) => PyValue): PyValue => {
    const r = unpickleAt(buf, at, { file, globals, ...(persistentLoad ? { persistentLoad } : {}) });
    at = r.end;
    return r.value;
  };
  if (next() !== LEGACY_MAGIC) {
    throw new FormatError(`${file} is a pickle but not a PyTorch checkpoint (wrong magic number)`);
  }
  const protocol = next();
  if (protocol !== LEGACY_PROTOCOL) {
    throw new FormatError(`${file} has an unknown torch protocol version (${describe(protocol)})`);
  }
  const sysInfo = next();
  if (!(sysInfo instanceof Map)) throw new FormatError(`${file}: bad system info record`);
  if (sysInfo.get('little_endian') !== true) throw bigEndian(file);
  const root = next(storageLoader(file, roots));
  return { root, keys: next(), roots, dataStart: at };
}

async function openLegacy(file: string, fh: FileHandle, size: number, head: Uint8Array): Promise<CheckpointReader> {
  // The pickles sit before the data: read a prefix and grow it until they all parse.
  let buf = head;
  let parsed: LegacyHead;
  for (;;) {
    try {
      parsed = parseLegacyHead(file, buf);
      break;
    } catch (err) {
      if (!(err instanceof PickleTruncatedError) || buf.length >= Math.min(size, MAX_PICKLE_BYTES)) throw err;
      buf = await readAt(fh, file, 0, Math.min(size, MAX_PICKLE_BYTES, Math.max(buf.length * 4, 1 << 20)));
    }
  }
  const tensors = tensorEntries(file, parsed.root);
  const keys = parsed.keys;
  if (!Array.isArray(keys) || keys.length !== parsed.roots.size) {
    throw new FormatError(`${file}: the storage key list does not match the state dict`);
  }
  // Each storage: int64 element count, then its bytes. Only the headers are read here.
  const offsets = new Map<string, number>();
  let pos = parsed.dataStart;
  for (const key of keys) {
    const root = typeof key === 'string' ? parsed.roots.get(key) : undefined;
    if (!root || offsets.has(key as string)) throw new FormatError(`${file}: unexpected storage key in the key list`);
    const header = pos + 8 <= buf.length ? buf.subarray(pos, pos + 8) : await readAt(fh, file, pos, 8);
    const count = new DataView(header.buffer, header.byteOffset, 8).getBigInt64(0, true);
    if (count !== BigInt(root.numel)) {
      throw new FormatError(`${file}: storage ${key as string} has ${count} elements, expected ${root.numel}`);
    }
    offsets.set(key as string, pos + 8);
    pos += 8 + root.numel * DTYPE_SIZE[root.dtype];
    if (pos > size) throw new FormatError(`${file} is truncated`, { hint: 'download it again' });
  }
  return makeReader(
    file,
    tensors,
    (key, start, end) => readAt(fh, file, (offsets.get(key) as number) + start, end - start),
    () => fh.close(),
  );
}
