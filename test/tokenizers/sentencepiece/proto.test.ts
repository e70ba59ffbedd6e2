import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from '../../../src/errors.js';
import { decodeModelProto, PieceType } from '../../../src/tokenizers/sentencepiece/proto.js';
import { hubDir, needsShared, repoPath } from '../../helpers/shared.js';

/** A minimal protobuf writer, enough to build model files field by field. */
function varint(v: bigint): number[] {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? b | 0x80 : b);
  } while (x > 0n);
  return out;
}
const key = (field: number, wire: number): number[] => varint(BigInt((field << 3) | wire));
const vint = (field: number, v: number): number[] => [...key(field, 0), ...varint(BigInt(v))];
const bytesField = (field: number, payload: number[] | Uint8Array): number[] => [...key(field, 2), ...varint(BigInt(payload.length)), ...payload];
const str = (field: number, s: string): number[] => bytesField(field, new TextEncoder().encode(s));
function f32(field: number, v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...key(field, 5), ...b];
}
const piece = (p: string, score: number, type?: number): number[] =>
  bytesField(1, [...str(1, p), ...f32(2, score), ...(type === undefined ? [] : vint(3, type))]);

describe('ModelProto decoder', () => {
  test('defaults of absent fields, negative int32, unknown fields of every wire type skipped', () => {
    const model = new Uint8Array([
      ...piece('<unk>', 0, PieceType.unknown),
      ...piece('a', -1.5),
      ...piece('b', -2.25, 99), // an enum value proto2 does not know stays NORMAL
      ...bytesField(2, [...vint(40, 0), ...vint(41, -1), ...[...key(7, 1), 1, 2, 3, 4, 5, 6, 7, 8], ...f32(10, 1), ...vint(35, 1)]),
      ...bytesField(3, [...str(1, 'nmt_nfkc'), ...vint(3, 0), ...str(6, '')]),
      ...bytesField(4, [1, 2, 3]),
      ...key(9, 5), 0, 0, 0, 0,
    ]);
    const m = decodeModelProto(model);
    assert.deepEqual(
      m.pieces.map((p) => [p.piece, p.score, p.type]),
      [['<unk>', 0, PieceType.unknown], ['a', -1.5, PieceType.normal], ['b', -2.25, PieceType.normal]],
    );
    assert.equal(m.trainerSpec.bosId, -1);
    assert.equal(m.trainerSpec.eosId, 2);
    assert.equal(m.trainerSpec.padId, -1);
    assert.equal(m.trainerSpec.byteFallback, true);
    assert.equal(m.trainerSpec.modelType, 1);
    assert.equal(m.normalizerSpec.name, 'nmt_nfkc');
    assert.equal(m.normalizerSpec.addDummyPrefix, false);
    assert.equal(m.normalizerSpec.removeExtraWhitespaces, true);
    assert.equal(m.normalizerSpec.escapeWhitespaces, true);
    assert.equal(m.normalizerSpec.precompiledCharsmap.length, 0);
  });

  test('a repeated singular message merges field by field', () => {
    const m = decodeModelProto(new Uint8Array([...piece('<unk>', 0, 2), ...bytesField(3, vint(3, 0)), ...bytesField(3, vint(5, 0))]));
    assert.equal(m.normalizerSpec.addDummyPrefix, false);
    assert.equal(m.normalizerSpec.escapeWhitespaces, false);
  });

  test('malformed input is a FormatError', () => {
    const good = piece('<unk>', 0, 2);
    assert.throws(() => decodeModelProto(new Uint8Array(good.slice(0, -2))), FormatError);
    assert.throws(() => decodeModelProto(new Uint8Array([...good, 0x0a, 0x7f])), FormatError);
    assert.throws(() => decodeModelProto(new Uint8Array([...good, ...key(3, 3)])), FormatError);
    assert.throws(() => decodeModelProto(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), FormatError);
    assert.throws(() => decodeModelProto(new Uint8Array(0)), FormatError);
    assert.throws(() => decodeModelProto(new Uint8Array(bytesField(1, f32(2, 1)))), FormatError);
  });

  // shared/docs/sentencepiece.md §2, "The real T5 file".
  test('the real T5 spiece.model', { skip: needsShared }, async () => {
    const m = decodeModelProto(new Uint8Array(await readFile(join(hubDir, 'google', 'flan-t5-large', 'spiece.model'))));
    assert.equal(m.pieces.length, 32000);
    assert.deepEqual(
      m.pieces.slice(0, 4).map((p) => [p.piece, p.type]),
      [['<pad>', 3], ['</s>', 3], ['<unk>', 2], ['▁', 1]],
    );
    const normal = m.pieces.filter((p) => p.type === PieceType.normal);
    assert.equal(normal.length, 31997);
    assert.equal(Math.max(...normal.map((p) => p.score)), -2.0122928619384766);
    assert.equal(Math.min(...normal.map((p) => p.score)), -13.590115547180176);
    assert.equal(m.pieces[31999]?.piece, '▁Internațional');
    assert.deepEqual(
      { ...m.trainerSpec, unkSurface: undefined },
      { modelType: 1, unkId: 2, bosId: -1, eosId: 1, padId: 0, treatWhitespaceAsSuffix: false, byteFallback: false, unkSurface: undefined },
    );
    assert.equal(m.normalizerSpec.name, 'nmt_nfkc');
    assert.equal(m.normalizerSpec.precompiledCharsmap.length, 237539);
    assert.equal(m.normalizerSpec.addDummyPrefix, true);
    assert.equal(m.normalizerSpec.removeExtraWhitespaces, true);
    assert.equal(m.normalizerSpec.escapeWhitespaces, true);
  });

  test('the transformers test fixture: <unk> 0, <s> 1, </s> 2, no <pad>', { skip: needsShared }, async () => {
    const m = decodeModelProto(new Uint8Array(await readFile(join(repoPath('t5-tokenizer-test-sentencepiece'), 'spiece.model'))));
    assert.equal(m.pieces.length, 1000);
    assert.deepEqual(
      m.pieces.slice(0, 3).map((p) => [p.piece, p.type]),
      [['<unk>', 2], ['<s>', 3], ['</s>', 3]],
    );
    assert.equal(m.pieces.some((p) => p.piece === '<pad>'), false);
  });
});
