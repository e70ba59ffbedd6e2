import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, NotFoundError, UnsupportedError } from '../../src/errors.js';
import { MAX_HEADER_SIZE, openSafetensors } from '../../src/formats/safetensors.js';
import { DTYPE_SIZE, toFloat32, toInt32, type DType } from '../../src/formats/tensor.js';
import { needsShared, repoPath, reposDir } from '../helpers/shared.js';

import { serialise, type HeaderEntry, type TestTensor, type WriteOptions } from '../helpers/safetensors.js';

let dir = '';
let counter = 0;

async function writeSafetensors(tensors: readonly TestTensor[], opts: WriteOptions = {}): Promise<string> {
  const path = join(dir, `t${counter++}.safetensors`);
  await writeFile(path, serialise(tensors, opts));
  return path;
}

function tensor(name: string, dtype: string, shape: number[], bytes?: Uint8Array): TestTensor {
  const size = DTYPE_SIZE[dtype as DType] ?? 1;
  return { name, dtype, shape, bytes: bytes ?? randomBytes(shape.reduce((a, b) => a * b, 1) * size) };
}

function u16(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

async function roundTrip(t: TestTensor) {
  const reader = await openSafetensors(await writeSafetensors([t]));
  try {
    return await reader.read(t.name);
  } finally {
    await reader.close();
  }
}

async function rejectsWith(
  tensors: readonly TestTensor[],
  opts: WriteOptions,
  cls: typeof FormatError | typeof UnsupportedError,
  pattern: RegExp,
): Promise<void> {
  const path = await writeSafetensors(tensors, opts);
  await assert.rejects(openSafetensors(path), (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(err.message.includes(path), `message should name the file: ${err.message}`);
    return true;
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tfhf-safetensors-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('reference checkpoints', () => {
  test('flan-t5 model.safetensors matches an independent parse', { skip: needsShared }, async () => {
    const path = join(repoPath('flan-t5'), 'model.safetensors');
    const file = await readFile(path);
    const n = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, HeaderEntry>;
    const reader = await openSafetensors(path);
    try {
      assert.ok(reader.tensors.length > 0);
      assert.equal(reader.tensors.length, Object.keys(header).filter((k) => k !== '__metadata__').length);
      assert.deepEqual(reader.files, [path]);
      assert.equal(reader.dataStart, 8 + n);
      assert.equal(reader.metadata.format, 'pt');
      const raw = await reader.read('shared.weight');
      assert.equal(raw.dtype, 'F32');
      assert.deepEqual(raw.shape, [1128, 64]);
      const [begin, end] = header['shared.weight']!.data_offsets;
      assert.ok(Buffer.from(raw.data).equals(file.subarray(8 + n + begin, 8 + n + end)));
      const offsets = reader.tensors.map((t) => header[t.name]!.data_offsets[0]);
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'tensors are in file order');
    } finally {
      await reader.close();
    }
  });

  test('every reference safetensors file opens', { skip: needsShared }, async () => {
    const names = ['flan-t5', 'flan-t5-sharded', 't5-relu', 'ul2', 'flaubert-cased', 'flaubert-cased-sharded', 'flaubert-uncased'];
    for (const name of names) {
      for (const file of ['model.safetensors', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
        const path = join(reposDir, 'tiny-random', name, file);
        if (!existsSync(path)) continue;
        const reader = await openSafetensors(path);
        const last = reader.tensors.at(-1)!;
        assert.equal((await reader.read(last.name)).data.length, last.shape.reduce((a, b) => a * b, 1) * 4);
        await reader.close();
      }
    }
  });
});

describe('reading', () => {
  test('every dtype round-trips, including scalars and empty tensors', async () => {
    for (const dtype of Object.keys(DTYPE_SIZE)) {
      for (const shape of [[2, 3], [], [0, 5]]) {
        const t = tensor('x', dtype, shape);
        const raw = await roundTrip(t);
        assert.equal(raw.dtype, dtype);
        assert.deepEqual(raw.shape, shape);
        assert.deepEqual(Buffer.from(raw.data), Buffer.from(t.bytes));
      }
    }
  });

  test('BF16 decodes exactly', async () => {
    const bits = [0x3f80, 0xc020, 0x4049, 0x477f, 0x0001, 0x7f80, 0xff80, 0x8000, 0x7fc0];
    const want = [1, -2.5, 3.140625, 65280, 2 ** -133, Infinity, -Infinity, -0, NaN];
    const got = toFloat32(await roundTrip(tensor('b', 'BF16', [bits.length], u16(bits))));
    want.forEach((w, i) => assert.ok(Object.is(got[i], w), `bf16 0x${bits[i]!.toString(16)}: ${got[i]} != ${w}`));
  });

  test('F16 decodes exactly', async () => {
    const bits = [0x3c00, 0x0001, 0x03ff, 0x7bff, 0x8000, 0xc000, 0x7c00, 0xfc00, 0x7e00];
    const want = [1, 2 ** -24, 1023 * 2 ** -24, 65504, -0, -2, Infinity, -Infinity, NaN];
    const got = toFloat32(await roundTrip(tensor('h', 'F16', [bits.length], u16(bits))));
    want.forEach((w, i) => assert.ok(Object.is(got[i], w), `f16 0x${bits[i]!.toString(16)}: ${got[i]} != ${w}`));
  });

  test('I64 converts to int32 and refuses values outside it', async () => {
    const values = [0n, -1n, 42n, 2147483647n, -2147483648n];
    const b = Buffer.alloc(values.length * 8);
    values.forEach((v, i) => b.writeBigInt64LE(v, i * 8));
    assert.deepEqual([...toInt32(await roundTrip(tensor('i', 'I64', [values.length], b)))], values.map(Number));
    const big = Buffer.alloc(8);
    big.writeBigInt64LE(2147483648n);
    const raw = await roundTrip(tensor('i', 'I64', [1], big));
    assert.throws(() => toInt32(raw), UnsupportedError);
  });

  test('the last tensor of a multi-tensor file, in file order, with metadata', async () => {
    const ts = [tensor('a', 'F32', [3, 4]), tensor('b.weight', 'I8', [7]), tensor('c', 'F16', [5, 2]), tensor('z', 'F64', [9])];
    const path = await writeSafetensors(ts, { metadata: { format: 'pt', note: 'hi' } });
    const reader = await openSafetensors(path);
    try {
      assert.deepEqual(reader.metadata, { format: 'pt', note: 'hi' });
      assert.deepEqual(reader.tensors.map((t) => t.name), ['a', 'b.weight', 'c', 'z']);
      assert.ok(reader.has('z') && !reader.has('y'));
      const all = await Promise.all([...ts].reverse().map((t) => reader.read(t.name)));
      all.reverse().forEach((raw, i) => assert.ok(Buffer.from(raw.data).equals(ts[i]!.bytes), ts[i]!.name));
      await assert.rejects(reader.read('y'), (err: unknown) => err instanceof NotFoundError && /'y'/.test(err.message));
    } finally {
      await reader.close();
    }
  });

  test('file order follows data offsets, not header order', async () => {
    const ts = [tensor('first', 'U8', [3]), tensor('second', 'U8', [4])];
    const path = await writeSafetensors(ts, {
      // A writer may order header keys however it likes (and JS enumerates integer-like keys first).
      patchHeader: (h) => {
        const { first } = h;
        delete h.first;
        h.first = first;
      },
    });
    const reader = await openSafetensors(path);
    assert.deepEqual(reader.tensors.map((t) => t.name), ['first', 'second']);
    await reader.close();
  });

  test('a missing file is a NotFoundError', async () => {
    await assert.rejects(openSafetensors(join(dir, 'nope.safetensors')), NotFoundError);
  });
});

describe('malformed input', () => {
  const two = (): TestTensor[] => [tensor('a', 'F32', [2, 2]), tensor('b', 'F32', [3])];
  const entry = (h: Record<string, unknown>, name: string): HeaderEntry => h[name] as HeaderEntry;

  test('file shorter than 8 bytes', async () => {
    await rejectsWith([], { truncate: 5 }, FormatError, /too short/);
  });
  test('truncated data section', async () => {
    await rejectsWith(two(), { truncate: -4 + serialise(two()).length }, FormatError, /beyond the data section/);
  });
  test('header length beyond the end of the file', async () => {
    await rejectsWith(two(), { headerLength: 10_000n }, FormatError, /past the end of the file/);
  });
  test('header length above the cap, including u64 values beyond 2^53', async () => {
    await rejectsWith(two(), { headerLength: BigInt(MAX_HEADER_SIZE) + 1n }, FormatError, /exceeds/);
    await rejectsWith(two(), { headerLength: 2n ** 64n - 1n }, FormatError, /exceeds/);
  });
  test('header not UTF-8 JSON, or not an object', async () => {
    await rejectsWith([], { headerBytes: Buffer.from('{"a": ') }, FormatError, /not valid UTF-8 JSON/);
    await rejectsWith([], { headerBytes: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x7b, 0x7d, 0x7d]) }, FormatError, /UTF-8/);
    await rejectsWith([], { headerBytes: Buffer.from('[1,2]') }, FormatError, /not a JSON object/);
  });
  test('entry or metadata of the wrong type', async () => {
    await rejectsWith(two(), { patchHeader: (h) => void (h.a = 'x') }, FormatError, /'a'.*not an object/);
    await rejectsWith(two(), { metadata: { format: 'pt' }, patchHeader: (h) => void (h.__metadata__ = { n: 1 }) }, FormatError, /__metadata__/);
  });
  test('overlapping offsets', async () => {
    await rejectsWith(two(), { trailing: new Uint8Array(4), patchHeader: (h) => void (entry(h, 'b').data_offsets = [12, 24]) }, FormatError, /overlap/);
  });
  test('out-of-range offsets', async () => {
    await rejectsWith(two(), { patchHeader: (h) => void (entry(h, 'b').data_offsets = [1000, 1012]) }, FormatError, /'b'.*beyond the data section/);
  });
  test('gaps and trailing bytes', async () => {
    const shifted = (h: Record<string, unknown>): void => void (entry(h, 'b').data_offsets = [20, 32]);
    await rejectsWith(two(), { trailing: new Uint8Array(4), patchHeader: shifted }, FormatError, /gap of 4 bytes before tensor 'b'/);
    await rejectsWith(two(), { trailing: new Uint8Array(3) }, FormatError, /3 bytes after the last tensor/);
  });
  test('size mismatch between shape and offsets', async () => {
    await rejectsWith(two(), { patchHeader: (h) => void (entry(h, 'a').shape = [2, 3]) }, FormatError, /'a'.*size mismatch/);
  });
  test('bad data_offsets', async () => {
    for (const bad of [[16, 0], [0, 16.5], [0], '0-16', [-16, 0]]) {
      await rejectsWith(two(), { patchHeader: (h) => void (h.a = { ...entry(h, 'a'), data_offsets: bad }) }, FormatError, /'a'.*data_offsets/);
    }
  });
  test('unknown dtypes: garbage is a FormatError, real-but-unsupported an UnsupportedError', async () => {
    await rejectsWith([tensor('w', 'F33', [4])], {}, FormatError, /'w'.*unknown dtype "F33"/);
    await rejectsWith([tensor('w', 'F8_E4M3', [4])], {}, UnsupportedError, /'w'.*F8_E4M3/);
    await rejectsWith([tensor('w', 'U32', [4], new Uint8Array(16))], {}, UnsupportedError, /U32/);
  });
  test('negative, fractional, non-numeric and overflowing shapes', async () => {
    for (const shape of [[-1, 4], [1.5], ['4'], 4, [2 ** 53]]) {
      await rejectsWith(two(), { patchHeader: (h) => void (h.a = { ...entry(h, 'a'), shape }) }, FormatError, /'a'.*shape/);
    }
    await rejectsWith(two(), { patchHeader: (h) => void (entry(h, 'a').shape = [2 ** 30, 2 ** 30]) }, FormatError, /'a'.*too large/);
  });
});
