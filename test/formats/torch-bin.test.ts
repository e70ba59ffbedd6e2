import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { FormatError, NotFoundError, UnsupportedError } from '../../src/errors.js';
import { openTorchBin } from '../../src/formats/torch-bin.js';
import { toFloat32, type CheckpointReader, type DType } from '../../src/formats/tensor.js';
import { needsShared, repoPath } from '../helpers/shared.js';

// ---- independent safetensors parser: 8-byte LE header length, JSON header, data offsets ----

interface StEntry {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

function readSafetensors(path: string): Map<string, StEntry> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header: Record<string, { dtype: DType; shape: number[]; data_offsets: [number, number] }> = JSON.parse(
    buf.subarray(8, 8 + n).toString('utf8'),
  );
  const out = new Map<string, StEntry>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = info.data_offsets;
    out.set(name, { dtype: info.dtype, shape: info.shape, data: buf.subarray(8 + n + b, 8 + n + e) });
  }
  return out;
}

// ---- a minimal zip writer (stored, or deflated on request) ----

interface ZipItem {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

function zip(items: ZipItem[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const { name, data, deflate } of items) {
    const nameBuf = Buffer.from(name);
    const body = deflate ? deflateRawSync(data) : Buffer.from(data);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(deflate ? 8 : 0, 10);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBuf, body);
    centrals.push(central, nameBuf);
    offset += local.length + nameBuf.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(items.length, 8);
  end.writeUInt16LE(items.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

// ---- hand-written pickle opcodes, as byte-per-character strings ----

const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const le = (n: number, width: number): string => {
  let s = '';
  for (let i = 0; i < width; i++) s += String.fromCharCode(Math.floor(n / 2 ** (8 * i)) & 0xff);
  return s;
};
const uni = (s: string): string => `X${le(Buffer.byteLength(s), 4)}${Buffer.from(s).toString('latin1')}`;
const int = (n: number): string => `J${le(n, 4)}`;
const tuple = (ns: number[]): string => (ns.length ? `(${ns.map(int).join('')}t` : ')');
const ORDERED_DICT = 'ccollections\nOrderedDict\n';

/** `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` with a persistent storage id. */
function tensor(
  type: string,
  key: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
  view?: [string, number, number],
): string {
  const viewOps = view === undefined ? '' : view[0] === '' ? 'N' : `(${uni(view[0])}${int(view[1])}${int(view[2])}t`;
  const pid = `(${uni('storage')}ctorch\n${type}\n${uni(key)}${uni('cpu')}${int(numel)}${viewOps}tQ`;
  const args = `(${pid}${int(offset)}${tuple(size)}${tuple(stride)}\x89${ORDERED_DICT})Rt`;
  return `ctorch._utils\n_rebuild_tensor_v2\n${args}R`;
}

const f32 = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);
const u16 = (values: number[]): Uint8Array => new Uint8Array(Uint16Array.from(values).buffer);

const tmp = mkdtempSync(join(tmpdir(), 'tfhf-torch-bin-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
let fileCount = 0;
function writeTemp(data: Uint8Array): string {
  const path = join(tmp, `f${fileCount++}.bin`);
  writeFileSync(path, data);
  return path;
}

async function withReader<T>(path: string, fn: (r: CheckpointReader) => Promise<T>): Promise<T> {
  const reader = await openTorchBin(path);
  try {
    return await fn(reader);
  } finally {
    await reader.close();
  }
}

// ---- conformance on the reference checkpoints ----

/** Names that save_pretrained drops from model.safetensors because they share storage with another. */
const ALIASES: Readonly<Record<string, string>> = {
  'encoder.embed_tokens.weight': 'shared.weight',
  'decoder.embed_tokens.weight': 'shared.weight',
  'lm_head.weight': 'shared.weight',
  'pred_layer.proj.weight': 'transformer.embeddings.weight',
};

const PAIRS: ReadonlyArray<[bin: string, safetensors: string]> = [
  ...['flan-t5', 't5-relu', 'ul2', 'flaubert-cased', 'flaubert-uncased'].map(
    (repo): [string, string] => [join(repoPath(repo), 'pytorch_model.bin'), join(repoPath(repo), 'model.safetensors')],
  ),
  [
    join(repoPath('flaubert-cased-legacy-bin'), 'pytorch_model.bin'),
    join(repoPath('flaubert-cased'), 'model.safetensors'),
  ],
];

for (const [bin, st] of PAIRS) {
  const title = `${bin.split('/').slice(-2).join('/')} holds the tensors of its model.safetensors`;
  test(title, { skip: needsShared }, async () => {
    const expected = readSafetensors(st);
    await withReader(bin, async (reader) => {
      assert.deepEqual(reader.files, [bin]);
      for (const [name, want] of expected) {
        assert.ok(reader.has(name), `${name} missing`);
        const got = await reader.read(name);
        assert.equal(got.dtype, want.dtype, name);
        assert.deepEqual(got.shape, want.shape, name);
        assert.ok(Buffer.from(got.data).equals(want.data), `${name} bytes differ`);
      }
      const extras = reader.tensors.filter((t) => !expected.has(t.name));
      for (const extra of extras) {
        const target = ALIASES[extra.name];
        assert.ok(target && expected.has(target), `unexpected extra tensor ${extra.name}`);
        const got = await reader.read(extra.name);
        assert.ok(Buffer.from(got.data).equals((expected.get(target) as StEntry).data), `${extra.name} != ${target}`);
      }
      assert.ok(extras.length > 0, 'tied weights are expected in the .bin');
      await assert.rejects(reader.read('no.such.tensor'), NotFoundError);
    });
  });
}

test('the legacy .bin lists its tensors in pickle order', { skip: needsShared }, async () => {
  await withReader(join(repoPath('flaubert-cased-legacy-bin'), 'pytorch_model.bin'), async (reader) => {
    assert.deepEqual(
      reader.tensors.slice(0, 2).map((t) => t.name),
      ['transformer.position_embeddings.weight', 'transformer.embeddings.weight'],
    );
  });
});

// ---- synthetic checkpoints ----

const STORAGE_F32 = [0, 1.5, 3, 4.5, 6, 7.5, 9];

function syntheticPickle(): string {
  return (
    `\x80\x02${ORDERED_DICT})Rq\x00(` +
    uni('bf') +
    tensor('BFloat16Storage', '0', 3, 0, [3], [1]) +
    uni('h') +
    tensor('HalfStorage', '1', 4, 0, [2, 2], [2, 1]) +
    uni('t') +
    tensor('FloatStorage', '2', 7, 1, [3, 2], [1, 3]) +
    uni('p') +
    `ctorch._utils\n_rebuild_parameter\n(${tensor('FloatStorage', '2', 7, 1, [2, 3], [3, 1])}\x88${ORDERED_DICT})Rt` +
    'R' +
    uni('scalar') +
    tensor('LongStorage', '3', 3, 2, [], []) +
    uni('all') +
    tensor('FloatStorage', '2', 7, 0, [7], [1]) +
    uni('empty') +
    tensor('FloatStorage', '2', 7, 0, [0, 4], [4, 1]) +
    uni('step') +
    'K\x05' +
    'u' +
    // state_dict()'s `_metadata` attribute, set by BUILD on the OrderedDict
    `}${uni('_metadata')}${ORDERED_DICT})R${uni('')}}${uni('version')}K\x01sssb.`
  );
}

const STORAGES: Record<string, Uint8Array> = {
  '0': u16([0x3f80, 0xc020, 0x4049]),
  '1': u16([0x3c00, 0xb800, 0x7bff, 0x0001]),
  '2': f32(STORAGE_F32),
  '3': new Uint8Array(BigInt64Array.from([10n, -20n, 1234567890123n]).buffer),
};

test('synthetic zip checkpoint: bf16, f16, strided views, parameters, 0-d and empty tensors', async () => {
  for (const deflate of [false, true]) {
    const path = writeTemp(
      zip([
        { name: 'archive/data.pkl', data: bytes(syntheticPickle()), deflate },
        { name: 'archive/byteorder', data: bytes('little') },
        ...Object.entries(STORAGES).map(([key, data]) => ({ name: `archive/data/${key}`, data, deflate })),
        { name: 'archive/version', data: bytes('3\n') },
      ]),
    );
    await withReader(path, async (r) => {
      assert.deepEqual(
        r.tensors.map((t) => [t.name, t.dtype, t.shape]),
        [
          ['bf', 'BF16', [3]],
          ['h', 'F16', [2, 2]],
          ['t', 'F32', [3, 2]],
          ['p', 'F32', [2, 3]],
          ['scalar', 'I64', []],
          ['all', 'F32', [7]],
          ['empty', 'F32', [0, 4]],
        ],
      );
      assert.deepEqual([...toFloat32(await r.read('bf'))], [1, -2.5, 3.140625]);
      assert.deepEqual([...toFloat32(await r.read('h'))], [1, -0.5, 65504, 2 ** -24]);
      const s = STORAGE_F32;
      assert.deepEqual([...toFloat32(await r.read('t'))], [s[1], s[4], s[2], s[5], s[3], s[6]]);
      assert.deepEqual([...toFloat32(await r.read('p'))], s.slice(1));
      assert.deepEqual([...toFloat32(await r.read('all'))], s);
      const scalar = await r.read('scalar');
      assert.deepEqual(scalar.shape, []);
      assert.equal(new DataView(scalar.data.buffer, scalar.data.byteOffset).getBigInt64(0, true), 1234567890123n);
      assert.equal((await r.read('empty')).data.length, 0);
      assert.equal(r.has('step'), false);
    });
  }
});

test('synthetic legacy checkpoint with a storage view', async () => {
  let magic = '';
  for (let v = 0x1950a86a20f9469cfc6cn; v > 0n; v >>= 8n) magic += String.fromCharCode(Number(v & 0xffn));
  const pickles =
    `\x80\x02\x8a${String.fromCharCode(magic.length)}${magic}.` +
    '\x80\x02M\xe9\x03.' +
    `\x80\x02}(${uni('protocol_version')}M\xe9\x03${uni('little_endian')}\x88u.` +
    `\x80\x02}(${uni('a')}${tensor('FloatStorage', 'root', 6, 1, [3], [1], ['view', 2, 4])}` +
    `${uni('b')}${tensor('FloatStorage', 'root', 6, 0, [2, 3], [3, 1], ['', 0, 0])}u.` +
    `\x80\x02](${uni('root')}e.`;
  const data = Buffer.concat([Buffer.from(pickles + le(6, 8), 'latin1'), f32([0, 1, 2, 3, 4, 5])]);
  await withReader(writeTemp(data), async (r) => {
    assert.deepEqual([...toFloat32(await r.read('a'))], [3, 4, 5]);
    assert.deepEqual([...toFloat32(await r.read('b'))], [0, 1, 2, 3, 4, 5]);
  });
  await assert.rejects(openTorchBin(writeTemp(data.subarray(0, data.length - 1))), FormatError);
});

// ---- refusals ----

test('a pickle calling os.system is refused before anything runs, zipped or bare', async () => {
  const marker = join(tmp, 'pwned');
  const evil = `\x80\x02cos\nsystem\n${uni(`touch ${marker}`)}\x85R.`;
  const evalStream = `\x80\x04\x8c\x08builtins\x8c\x04eval\x93${uni('1+1')}\x85R.`;
  const cases: Array<[Uint8Array, string]> = [
    [zip([{ name: 'archive/data.pkl', data: bytes(evil) }]), 'os.system'],
    [bytes(evil), 'os.system'],
    [zip([{ name: 'archive/data.pkl', data: bytes(evalStream) }]), 'builtins.eval'],
    [bytes(evalStream), 'builtins.eval'],
  ];
  for (const [data, name] of cases) {
    const path = writeTemp(data);
    await assert.rejects(openTorchBin(path), (err: unknown) => {
      assert.ok(err instanceof FormatError);
      assert.equal(
        err.message,
        `refusing to load ${path}: its pickle references the global '${name}', ` +
          'which a PyTorch state dict never needs (the file may be malicious)',
      );
      return true;
    });
  }
  assert.equal(existsSync(marker), false);
});

test('malformed and unsupported files', async () => {
  const notTorch = writeTemp(zip([{ name: 'archive/other.txt', data: bytes('hi') }]));
  await assert.rejects(openTorchBin(notTorch), (err: unknown) => {
    assert.ok(err instanceof FormatError);
    assert.equal(err.message, `${notTorch} is a zip archive but not a PyTorch checkpoint (no data.pkl)`);
    return true;
  });
  const complex = tensor('ComplexFloatStorage', '0', 1, 0, [1], [1]);
  const tar = new Uint8Array(1024);
  tar.set(bytes('ustar'), 257);
  const expectations: Array<[string, Uint8Array, new (...args: never[]) => Error, RegExp]> = [
    ['garbage', bytes('<html>not found</html>'), FormatError, /neither a zip archive nor a pickle/],
    ['empty', new Uint8Array(0), FormatError, /neither a zip archive nor a pickle/],
    ['plain pickle', bytes('\x80\x02K\x01.'), FormatError, /wrong magic number/],
    ['truncated pickle', bytes('\x80\x02\x8a\x0a\x6c\xfc'), FormatError, /ends unexpectedly/],
    ['tar', tar, UnsupportedError, /tar archive/],
    ['list', zip([{ name: 'a/data.pkl', data: bytes('\x80\x02].') }]), FormatError, /not a dict/],
    ['missing storage', zip([{ name: 'a/data.pkl', data: bytes(syntheticPickle()) }]), FormatError, /lacks the data/],
    [
      'big-endian',
      zip([{ name: 'a/data.pkl', data: bytes('\x80\x02}.') }, { name: 'a/byteorder', data: bytes('big') }]),
      UnsupportedError,
      /big-endian/,
    ],
    [
      'view past storage',
      zip([
        { name: 'a/data.pkl', data: bytes(`\x80\x02}(${uni('w')}${tensor('FloatStorage', '0', 2, 1, [2], [1])}u.`) },
        { name: 'a/data/0', data: f32([1, 2]) },
      ]),
      FormatError,
      /extends past the end of its storage/,
    ],
    [
      'complex storage',
      zip([{ name: 'a/data.pkl', data: bytes(`\x80\x02}(${uni('w')}${complex}u.`) }]),
      UnsupportedError,
      /ComplexFloatStorage/,
    ],
  ];
  for (const [what, data, type, message] of expectations) {
    await assert.rejects(openTorchBin(writeTemp(data)), (err: unknown) => {
      assert.ok(err instanceof type, `${what}: ${String(err)}`);
      assert.match((err as Error).message, message, what);
      return true;
    });
  }
  await assert.rejects(openTorchBin(join(tmp, 'absent.bin')), NotFoundError);
});

test('truncated reference checkpoints are FormatErrors', { skip: needsShared }, async () => {
  for (const repo of ['flan-t5', 'flaubert-cased-legacy-bin']) {
    const full = readFileSync(join(repoPath(repo), 'pytorch_model.bin'));
    for (const length of [20, 200, 4810, Math.floor(full.length / 2), full.length - 1]) {
      await assert.rejects(openTorchBin(writeTemp(full.subarray(0, length))), FormatError, `${repo} cut at ${length}`);
    }
  }
});
