/**
 * The bytes of a small WebAssembly module: mv, a SIMD function multiplying rows of x by a packed weight
 * matrix, with pack (the packing copy) and touch (a read-ahead into cache); mvh and packh, the same for
 * blocks of bfloat16 weights (a screen: half the bytes to stream, engine.ts).
 * Emitted here rather than shipped as a binary or compiled from a toolchain: each function is a few dozen
 * instructions, and the source of every byte stays readable and reviewable next to the engine using it.
 *
 * mv(x, w, y, k, rows, xStride, yStride, b, bEnd): for each 8-column block b ≤ j < bEnd of the packed
 * matrix w (block j holds k × 8 floats: row i's 8 columns contiguous) and each of `rows` input rows
 * (x + r·xStride, k floats, k even), writes 8 outputs at y + r·yStride + 32·j. Strides and pointers are
 * byte offsets into the imported shared memory. mvh reads blocks of k × 8 bfloat16 (16 bytes a row) and
 * widens each weight to float32 exactly, so its sums are those of the rounded weights.
 *
 * Why this shape (measured on the 2-core EPYC VM, docs/performance.md): a batch-1 decode step is memory
 * bound. Streaming the packed blocks with independent accumulators reads DRAM faster than XNNPACK's
 * fully-connected kernel (~9 GB/s on one core) or a row-major dot-product kernel (~6 GB/s); reading four
 * blocks side by side (four streams, eight f32x4 chains) is ~25% faster again than one block at a time.
 * Each output's sum is formed the same way for any row count and any split of whole groups between
 * threads, so batched results equal unbatched ones bit for bit.
 */

import { Code, F32, I32, Op, section, Simd, uleb, V128, vec, wasmName as name } from '../wasm-emit.js';

/**
 * How a packed block stores its k × 8 weights: float32, or bfloat16 (the high half of each float32) for
 * a cheap screen of a product's outputs (half the bytes to stream; see engine.ts packScreen).
 */
export type BlockFormat = 'f32' | 'bf16';

/** log2 of the bytes of one row of 8 weights in a packed block. */
const ROW_SHIFT: Record<BlockFormat, number> = { f32: 5, bf16: 4 };

// Parameters and locals of mv, by index.
const X = 0;
const W = 1;
const Y = 2;
const K = 3;
const ROWS = 4;
const X_STRIDE = 5;
const Y_STRIDE = 6;
const B = 7;
const B_END = 8;
const PARAMS = 9;
const P = [9, 10, 11, 12]; // weight pointers, one per block of the pass
const PB = 13; // start of the pass's first block
const XP = 14; // x pointer in the current row
const XEND = 15;
const XROW = 16;
const YP = 17;
const R = 18; // row counter
const I32_LOCALS = 10;
const XV = 19; // splatted x[i]
const ACC = 20; // accumulators from here: [block][k parity][columns 0–3 | 4–7]
const WV = 28; // bf16: one row of a block, 8 weights
const HIGH = 29; // bf16: 0xffff0000 in each lane
const V128_LOCALS = 11;

/**
 * Blocks b…b+q-1 at a time while they last, for every row, k in steps of u (q·u·2 ≤ 8 accumulators).
 * q independent streams keep more loads in flight than one (~25% faster from DRAM on the EPYC VM).
 */
function pass(c: Code, format: BlockFormat, q: number, u: number): void {
  const shift = ROW_SHIFT[format];
  const rowBytes = 1 << shift;
  const acc = (block: number, parity: number, half: number): number => ACC + (block * u + parity) * 2 + half;
  c.open(Op.block).open(Op.loop); // passes
  c.get(B).i32(q).op(Op.i32Add).get(B_END).op(Op.i32GtU).branch(Op.brIf, 1);
  c.get(X).set(XROW);
  c.get(Y).get(B).i32(5).op(Op.i32Shl, Op.i32Add).set(YP);
  c.i32(0).set(R);
  c.open(Op.loop); // rows
  for (let i = 0; i < q * u * 2; i++) c.zero().set(ACC + i);
  c.get(PB).set(P[0] as number);
  for (let j = 1; j < q; j++) c.get(PB).get(K).i32(shift).op(Op.i32Shl).i32(j).op(Op.i32Mul, Op.i32Add).set(P[j] as number);
  c.get(XROW).set(XP);
  c.get(XROW).get(K).i32(2).op(Op.i32Shl, Op.i32Add).set(XEND);
  c.open(Op.loop); // k, u at a time
  for (let parity = 0; parity < u; parity++) {
    c.get(XP).mem(Simd.load32Splat, 4 * parity).set(XV);
    for (let j = 0; j < q; j++) {
      const p = P[j] as number;
      if (format === 'bf16') c.get(p).mem(Simd.load, rowBytes * parity).set(WV);
      for (let half = 0; half < 2; half++) {
        c.addTo(acc(j, parity, half), () => {
          c.get(XV);
          if (format === 'f32') c.get(p).mem(Simd.load, rowBytes * parity + 16 * half);
          // A bf16 row's lane i holds columns i (high half) and 4 + i (low half): one op widens each.
          else if (half === 0) c.get(WV).get(HIGH).simd(Simd.v128And);
          else c.get(WV).i32(16).simd(Simd.i32x4Shl);
          c.simd(Simd.f32x4Mul);
        });
      }
    }
  }
  for (let j = 0; j < q; j++) c.get(P[j] as number).i32(rowBytes * u).op(Op.i32Add).set(P[j] as number);
  c.get(XP).i32(4 * u).op(Op.i32Add).set(XP);
  c.get(XP).get(XEND).op(Op.i32LtU).branch(Op.brIf, 0);
  c.op(Op.end); // k
  for (let j = 0; j < q; j++) {
    for (let half = 0; half < 2; half++) {
      c.get(YP).get(acc(j, 0, half));
      for (let parity = 1; parity < u; parity++) c.get(acc(j, parity, half)).simd(Simd.f32x4Add);
      c.mem(Simd.store, 32 * j + 16 * half);
    }
  }
  c.get(XROW).get(X_STRIDE).op(Op.i32Add).set(XROW);
  c.get(YP).get(Y_STRIDE).op(Op.i32Add).set(YP);
  c.get(R).i32(1).op(Op.i32Add).set(R);
  c.get(R).get(ROWS).op(Op.i32LtU).branch(Op.brIf, 0);
  c.op(Op.end); // rows
  c.get(PB).get(K).i32(shift).op(Op.i32Shl).i32(q).op(Op.i32Mul, Op.i32Add).set(PB);
  c.get(B).i32(q).op(Op.i32Add).set(B);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end); // passes loop, outer block
}

/** Groups of GROUP blocks, then the blocks left (a matrix's last < GROUP blocks) one at a time. */
export const GROUP = 4;

function mvBody(format: BlockFormat): number[] {
  const c = new Code();
  // PB = w + b·(k·rowBytes): blocks are k rows of 8 weights.
  c.get(W).get(B).get(K).op(Op.i32Mul).i32(ROW_SHIFT[format]).op(Op.i32Shl, Op.i32Add).set(PB);
  if (format === 'bf16') c.i32x4(-65536).set(HIGH);
  pass(c, format, GROUP, 1);
  pass(c, format, 1, 2);
  c.op(Op.end); // function
  return [...vec([[...uleb(I32_LOCALS), I32], [...uleb(V128_LOCALS), V128]]), ...c.bytes];
}

// pack(src, dst, k, n, blocks, blockBytes): the first `blocks` full 8-column blocks of the row-major
// [k, n] matrix at src, each written as k rows of 8 floats at dst + b·blockBytes (padding is the caller's).
const SRC = 0;
const DST = 1;
const PK = 2;
const PN = 3;
const PBLOCKS = 4;
const BLOCK_BYTES = 5;
const PACK_PARAMS = 6;
/** The i32 locals pack's and packh's loops use (after their own parameters). */
interface PackLocals {
  /** Source pointer: the block's 8 columns in the current row. */
  s: number;
  /** Destination pointer: the block's current row. */
  d: number;
  row: number;
  rowBytes: number;
  block: number;
}

/**
 * The loops pack and packh share: for each of the first `blocks` blocks, s = src + 32·b and
 * d = dst + b·blockBytes, `startBlock`, then `row` for each of the k rows (s then moves a source row on,
 * d `dstRowBytes`), then `endBlock`.
 */
function packLoops(c: Code, l: PackLocals, dstRowBytes: number, body: { startBlock?: () => void; row: () => void; endBlock?: () => void }): void {
  c.get(PN).i32(2).op(Op.i32Shl).set(l.rowBytes);
  c.i32(0).set(l.block);
  c.open(Op.block).open(Op.loop); // blocks
  c.get(l.block).get(PBLOCKS).op(Op.i32GeU).branch(Op.brIf, 1);
  c.get(SRC).get(l.block).i32(5).op(Op.i32Shl, Op.i32Add).set(l.s);
  c.get(DST).get(l.block).get(BLOCK_BYTES).op(Op.i32Mul, Op.i32Add).set(l.d);
  body.startBlock?.();
  c.i32(0).set(l.row);
  c.open(Op.block).open(Op.loop); // rows
  c.get(l.row).get(PK).op(Op.i32GeU).branch(Op.brIf, 1);
  body.row();
  c.get(l.s).get(l.rowBytes).op(Op.i32Add).set(l.s);
  c.get(l.d).i32(dstRowBytes).op(Op.i32Add).set(l.d);
  c.get(l.row).i32(1).op(Op.i32Add).set(l.row);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end); // rows
  body.endBlock?.();
  c.get(l.block).i32(1).op(Op.i32Add).set(l.block);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end); // blocks
}

const PACK_LOCALS: PackLocals = { s: 6, d: 7, row: 8, rowBytes: 9, block: 10 };
const PACK_I32_LOCALS = 5;

function packBody(): number[] {
  const c = new Code();
  const { s, d } = PACK_LOCALS;
  packLoops(c, PACK_LOCALS, 32, { row: () => [0, 16].forEach((offset) => c.get(d).get(s).mem(Simd.load, offset).mem(Simd.store, offset)) });
  c.op(Op.end); // function
  return [...vec([[...uleb(PACK_I32_LOCALS), I32]]), ...c.bytes];
}

// packh(src, dst, k, n, blocks, blockBytes, norms): as pack, but each weight rounded to bfloat16 (to
// nearest, ties to even: the bits of a float32 + 0x7fff + the kept half's lowest bit, high half kept),
// a row's 8 in 4 words, word i = column i's bf16 << 16 | column 4 + i's (mvh widens each half in one op),
// and for each block the sums over its k rows of the rounding errors squared and of the weights squared:
// at norms + 64·b, [error² columns 0–3, 4–7, weight² columns 0–3, 4–7] as float32 (engine.ts bounds
// what the screen's outputs can be off by with them).
const NORMS = 6;
const PACKH_PARAMS = 7;
const PACKH_LOCALS: PackLocals = { s: 7, d: 8, row: 9, rowBytes: 10, block: 11 };
const PACKH_I32_LOCALS = 5;
const WA = 12; // a row's weights, columns 0–3 and 4–7
const RA = 14; // their bf16 bits, in the low half of each i32 lane
const EA = 16; // error² sums
const SA = 18; // weight² sums
const PACKH_V128_LOCALS = 8;

function packHalfBody(): number[] {
  const c = new Code();
  const { s: HS, d: HD, block: HB } = PACKH_LOCALS;
  packLoops(c, PACKH_LOCALS, 16, {
    startBlock: () => {
      for (let half = 0; half < 2; half++) c.zero().set(EA + half).zero().set(SA + half);
    },
    row: () => {
      for (let half = 0; half < 2; half++) {
        const w = WA + half;
        c.get(HS).mem(Simd.load, 16 * half).set(w);
        c.get(w).get(w).i32(16).simd(Simd.i32x4ShrU).i32x4(1).simd(Simd.v128And).simd(Simd.i32x4Add);
        c.i32x4(0x7fff).simd(Simd.i32x4Add).i32(16).simd(Simd.i32x4ShrU).set(RA + half);
        c.addTo(SA + half, () => c.get(w).get(w).simd(Simd.f32x4Mul));
        // The rounding error, exact in float32: w and its rounding share their leading bits.
        c.get(w).get(RA + half).i32(16).simd(Simd.i32x4Shl).simd(Simd.f32x4Sub).set(w);
        c.addTo(EA + half, () => c.get(w).get(w).simd(Simd.f32x4Mul));
      }
      c.get(HD).get(RA).i32(16).simd(Simd.i32x4Shl).get(RA + 1).simd(Simd.v128Or).mem(Simd.store, 0);
    },
    endBlock: () => {
      // The source pointer is spent for this block: it addresses the block's sums.
      c.get(NORMS).get(HB).i32(6).op(Op.i32Shl, Op.i32Add).set(HS);
      for (let half = 0; half < 2; half++) {
        c.get(HS).get(EA + half).mem(Simd.store, 16 * half);
        c.get(HS).get(SA + half).mem(Simd.store, 32 + 16 * half);
      }
    },
  });
  c.op(Op.end); // function
  return [...vec([[...uleb(PACKH_I32_LOCALS), I32], [...uleb(PACKH_V128_LOCALS), V128]]), ...c.bytes];
}

// A screen's bounds, scanned (engine.ts ScreenProduct): approx a and radii c are n4 floats (n4 a multiple
// of 4), output j lies within a[j] ± r, r = s·c[j] + |a[j]|·2⁻²² + 2⁻¹²⁶ in float32: the two small terms
// outweigh float32's rounding of r and of a ± r (by ≤ 2⁻²⁴ relative each) once s carries a factor
// 1 + 2⁻²⁰, so the computed bounds are never inside the true ones.
// smax(a, c, n4, s) → f32: the largest lower bound; NaN ones skipped (-Infinity if all are).
// sreach(a, c, n4, s, t, out) → i32: writes to out (i32s), ascending, each j whose upper bound is not
// below t (NaN included: no bound), and returns how many.
const SA_ = 0;
const SC_ = 1;
const SN = 2;
const SS = 3; // f32
const ST = 4; // f32, sreach
const SOUT = 5;
const SEND = 6; // i32 locals from here: end of a (smax: 4; sreach: 6)
const SCOUNT = 7;
const SJ = 8;

/** Pushes a ∓ r for the 4 outputs at a (see above); `av` is a scratch v128 local. */
function emitBound(c: Code, a: number, cc: number, scale: number, av: number, sign: Simd.f32x4Sub | Simd.f32x4Add): void {
  c.get(a).mem(Simd.load, 0).set(av);
  c.get(av);
  c.get(scale).get(cc).mem(Simd.load, 0).simd(Simd.f32x4Mul);
  c.get(av).simd(Simd.f32x4Abs).f32x4(2 ** -22).simd(Simd.f32x4Mul).simd(Simd.f32x4Add);
  c.f32x4(2 ** -126).simd(Simd.f32x4Add);
  c.simd(sign);
}

function smaxBody(): number[] {
  const c = new Code();
  const end = 4;
  const acc = 5;
  const v = 6;
  const s = 7;
  c.get(SA_).get(SN).i32(2).op(Op.i32Shl, Op.i32Add).set(end);
  c.f32x4(-Infinity).set(acc);
  c.get(SS).simd(Simd.f32x4Splat).set(s);
  c.open(Op.block).open(Op.loop);
  c.get(SA_).get(end).op(Op.i32GeU).branch(Op.brIf, 1);
  emitBound(c, SA_, SC_, s, v, Simd.f32x4Sub);
  c.set(v);
  // Takes v where v > acc: a NaN lane compares false and never gets in.
  c.get(v).get(acc).get(v).get(acc).simd(Simd.f32x4Gt).simd(Simd.v128Bitselect).set(acc);
  c.get(SA_).i32(16).op(Op.i32Add).set(SA_);
  c.get(SC_).i32(16).op(Op.i32Add).set(SC_);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  for (const lane of [0, 1, 2, 3]) c.get(acc).simd(Simd.f32x4ExtractLane, lane);
  c.op(Op.f32Max, Op.f32Max, Op.f32Max);
  c.op(Op.end);
  return [...vec([[...uleb(1), I32], [...uleb(3), V128]]), ...c.bytes];
}

function sreachBody(): number[] {
  const c = new Code();
  const s = 9;
  const t = 10;
  const m = 11;
  c.get(SA_).get(SN).i32(2).op(Op.i32Shl, Op.i32Add).set(SEND);
  c.get(SS).simd(Simd.f32x4Splat).set(s);
  c.get(ST).simd(Simd.f32x4Splat).set(t);
  c.i32(0).set(SCOUNT);
  c.i32(0).set(SJ);
  c.open(Op.block).open(Op.loop);
  c.get(SA_).get(SEND).op(Op.i32GeU).branch(Op.brIf, 1);
  emitBound(c, SA_, SC_, s, m, Simd.f32x4Add);
  c.get(t).simd(Simd.f32x4Lt).simd(Simd.v128Not).set(m);
  c.open(Op.block);
  c.get(m).simd(Simd.v128AnyTrue).op(Op.i32Eqz).branch(Op.brIf, 0);
  for (const lane of [0, 1, 2, 3]) {
    // Written always, kept (the count advanced) only where the lane is set: no branch per lane.
    c.get(SOUT).get(SCOUNT).i32(2).op(Op.i32Shl, Op.i32Add).get(SJ).i32(lane).op(Op.i32Add).store32(0);
    c.get(SCOUNT).get(m).simd(Simd.i32x4ExtractLane, lane).op(Op.i32Sub).set(SCOUNT);
  }
  c.op(Op.end);
  c.get(SA_).i32(16).op(Op.i32Add).set(SA_);
  c.get(SC_).i32(16).op(Op.i32Add).set(SC_);
  c.get(SJ).i32(4).op(Op.i32Add).set(SJ);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  c.get(SCOUNT);
  c.op(Op.end);
  return [...vec([[...uleb(3), I32], [...uleb(3), V128]]), ...c.bytes];
}

// touch(from, to) → i32: one load per 64-byte line of [from, to), so that the lines are in cache when a
// product reads them (a worker's read-ahead, worker.ts). The loads are folded into the result so that
// the compiler cannot drop them.
const FROM = 0;
const TO = 1;
const FOLD = 2;

function touchBody(): number[] {
  const c = new Code();
  c.open(Op.block).open(Op.loop);
  c.get(FROM).get(TO).op(Op.i32GeU).branch(Op.brIf, 1);
  c.get(FOLD).get(FROM).load32(0).op(Op.i32Xor).set(FOLD);
  c.get(FROM).i32(64).op(Op.i32Add).set(FROM);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  c.get(FOLD);
  c.op(Op.end); // function
  return [...vec([[...uleb(1), I32]]), ...c.bytes];
}

/** The module: imports env.memory (shared, up to 4 GiB), exports mv, mvh (bf16 blocks), pack, packh, touch, smax and sreach. */
export function matVecModuleBytes(): Uint8Array {
  const i32s = (n: number): number[] => vec(new Array<number[]>(n).fill([I32]));
  const types = [
    [0x60, ...i32s(PARAMS), ...vec([])],
    [0x60, ...i32s(PACK_PARAMS), ...vec([])],
    [0x60, ...i32s(2), ...i32s(1)],
    [0x60, ...i32s(PACKH_PARAMS), ...vec([])],
    [0x60, ...vec([[I32], [I32], [I32], [F32]]), ...vec([[F32]])],
    [0x60, ...vec([[I32], [I32], [I32], [F32], [F32], [I32]]), ...i32s(1)],
  ];
  const type = section(1, vec(types));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x03, ...uleb(1), ...uleb(65536)]]));
  const functions: [string, number, number[]][] = [
    ['mv', 0, mvBody('f32')],
    ['mvh', 0, mvBody('bf16')],
    ['pack', 1, packBody()],
    ['packh', 3, packHalfBody()],
    ['touch', 2, touchBody()],
    ['smax', 4, smaxBody()],
    ['sreach', 5, sreachBody()],
  ];
  const functionTypes = section(3, vec(functions.map(([, t]) => uleb(t))));
  const exports = section(7, vec(functions.map(([n], i) => [...name(n), 0x00, ...uleb(i)])));
  const code = section(10, vec(functions.map(([, , body]) => [...uleb(body.length), ...body])));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...functionTypes, ...exports, ...code]);
}

/** Columns per packed block. */
export const BLOCK = 8;
