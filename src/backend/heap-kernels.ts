/**
 * SIMD loops that run on the tfjs wasm heap itself: a small emitted module (wasm-emit.ts) imports the
 * backend's WebAssembly.Memory, so fused kernels can hand it tensors by address instead of looping in
 * JavaScript (~2 ns per multiply-add there, ~0.2 ns here). Used by the T5 decode step's attention
 * (models/t5/kernels.ts); undefined off the wasm backend or if the heap is not reachable.
 *
 *   dots(a, b, rows, len, out):  out[r] = Σ_{i<len} a[i]·b[r·len + i]   for r < rows
 *   axpys(p, v, rows, len, out): out[i] = Σ_{r<rows} p[r]·v[r·len + i]  for i < len (len a multiple of 4)
 *   gatedGelu(h, y, rows, f):    y[r, j] = gelu_new(h[r, j]) · h[r, f + j]  for j < f (f a multiple of 4)
 *   gatedSilu(h, y, rows, f):    the same with silu
 *
 * Arguments are byte addresses in the heap. Sums run in four f32 lanes, then across the lanes. The gated
 * activations take exp from a float32 polynomial (within 2 ulp of the exact value) instead of Math.exp
 * per element, ~40 µs of each flan-t5-small decoder layer's step in JavaScript.
 */
import { Code, F32, I32, Op, section, Simd, uleb, V128, vec, wasmName } from './wasm-emit.js';

export interface HeapKernels {
  /** The heap the addresses refer to. */
  readonly buffer: () => ArrayBufferLike;
  dots(a: number, b: number, rows: number, len: number, out: number): void;
  axpys(p: number, v: number, rows: number, len: number, out: number): void;
  gatedGelu(h: number, y: number, rows: number, f: number): void;
  gatedSilu(h: number, y: number, rows: number, f: number): void;
}

// Parameters (both functions): 0 a|p, 1 b|v, 2 rows, 3 len, 4 out; locals from 5.
const A = 0;
const B = 1;
const ROWS = 2;
const LEN = 3;
const OUT = 4;
const R = 5;
const PA = 6;
const PB = 7;
const END4 = 8; // a + 4·(len rounded down to 4)
const END = 9; // a + 4·len
const ACC = 10; // v128
const TAIL = 11; // f32

function dotsBody(): number[] {
  const c = new Code();
  c.get(A).get(LEN).i32(-4).op(Op.i32And).i32(2).op(Op.i32Shl, Op.i32Add).set(END4); // i32.and
  c.get(A).get(LEN).i32(2).op(Op.i32Shl, Op.i32Add).set(END);
  c.get(B).set(PB);
  c.i32(0).set(R);
  c.open(Op.block).open(Op.loop); // rows
  c.get(R).get(ROWS).op(Op.i32GeU).branch(Op.brIf, 1);
  c.zero().set(ACC);
  c.get(A).set(PA);
  c.open(Op.block).open(Op.loop); // four at a time
  c.get(PA).get(END4).op(Op.i32GeU).branch(Op.brIf, 1);
  c.addTo(ACC, () => c.get(PA).mem(Simd.load, 0).get(PB).mem(Simd.load, 0).simd(Simd.f32x4Mul));
  c.get(PA).i32(16).op(Op.i32Add).set(PA);
  c.get(PB).i32(16).op(Op.i32Add).set(PB);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  c.i32(0).op(Op.f32ConvertI32S).set(TAIL); // f32.convert_i32_s: 0.0
  c.open(Op.block).open(Op.loop); // the rest, one at a time
  c.get(PA).get(END).op(Op.i32GeU).branch(Op.brIf, 1);
  c.get(TAIL).get(PA).scalar(Op.f32Load, 0).get(PB).scalar(Op.f32Load, 0).op(Op.f32Mul, Op.f32Add).set(TAIL);
  c.get(PA).i32(4).op(Op.i32Add).set(PA);
  c.get(PB).i32(4).op(Op.i32Add).set(PB);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  // out[r] = lanes + tail
  c.get(OUT).get(R).i32(2).op(Op.i32Shl, Op.i32Add);
  c.laneSum(ACC).get(TAIL).op(Op.f32Add);
  c.scalar(Op.f32Store, 0);
  c.get(R).i32(1).op(Op.i32Add).set(R);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end, Op.end);
  return [...vec([[...uleb(5), I32], [...uleb(1), V128], [...uleb(1), F32]]), ...c.bytes];
}

// axpys: locals 5 i (byte offset of the 4-column group), 6 r, 7 pp, 8 pv, 9 acc (v128)
const I = 5;
const AR = 6;
const PP = 7;
const PV = 8;
const AACC = 9;

function axpysBody(): number[] {
  const c = new Code();
  c.i32(0).set(I);
  c.open(Op.block).open(Op.loop); // column groups
  c.get(I).get(LEN).i32(2).op(Op.i32Shl).op(Op.i32GeU).branch(Op.brIf, 1);
  c.zero().set(AACC);
  c.get(A).set(PP);
  c.get(B).get(I).op(Op.i32Add).set(PV);
  c.i32(0).set(AR);
  c.open(Op.block).open(Op.loop); // rows
  c.get(AR).get(ROWS).op(Op.i32GeU).branch(Op.brIf, 1);
  c.addTo(AACC, () => c.get(PP).mem(Simd.load32Splat, 0).get(PV).mem(Simd.load, 0).simd(Simd.f32x4Mul));
  c.get(PP).i32(4).op(Op.i32Add).set(PP);
  c.get(PV).get(LEN).i32(2).op(Op.i32Shl, Op.i32Add).set(PV);
  c.get(AR).i32(1).op(Op.i32Add).set(AR);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  c.get(OUT).get(I).op(Op.i32Add).get(AACC).mem(Simd.store, 0);
  c.get(I).i32(16).op(Op.i32Add).set(I);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end, Op.end);
  return [...vec([[...uleb(4), I32], [...uleb(1), V128]]), ...c.bytes];
}

// gated: parameters 0 h, 1 y, 2 rows, 3 f; locals 4 r, 5 p (h), 6 q (y), 7 end of the row's first half,
// 8 f·4; v128 9 x, 10 u (then exp u), 11 n, 12 r (reduced argument), 13 polynomial.
const GH = 0;
const GY = 1;
const GROWS = 2;
const GF = 3;
const GR = 4;
const GP = 5;
const GQ = 6;
const GEND = 7;
const GF4 = 8;
const GX = 9;
const GU = 10;
const GN = 11;
const GRED = 12;
const GPOLY = 13;

/**
 * exp of the four lanes of GU, into GU: Cody–Waite reduction u = n·ln 2 + r with |r| ≤ ln2/2, a degree-7
 * polynomial for e^r (Cephes' expf coefficients), times 2^n built in the exponent bits. u is clamped to
 * where 2^n stays a normal float, so nothing overflows (the activations only need e^u ≈ 0 or ≫ 1 there).
 */
function expInPlace(c: Code): void {
  c.get(GU).f32x4(-87.3).simd(Simd.f32x4Max).f32x4(88.3).simd(Simd.f32x4Min).set(GU);
  c.get(GU).f32x4(Math.LOG2E).simd(Simd.f32x4Mul).simd(Simd.f32x4Nearest).set(GN);
  c.get(GU).get(GN).f32x4(0.693359375).simd(Simd.f32x4Mul).simd(Simd.f32x4Sub);
  c.get(GN).f32x4(-2.12194440e-4).simd(Simd.f32x4Mul).simd(Simd.f32x4Sub).set(GRED);
  c.f32x4(1.9875691500e-4);
  for (const k of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]) {
    c.get(GRED).simd(Simd.f32x4Mul).f32x4(k).simd(Simd.f32x4Add);
  }
  // p·r² + r + 1
  c.get(GRED).simd(Simd.f32x4Mul).get(GRED).simd(Simd.f32x4Mul).get(GRED).simd(Simd.f32x4Add).f32x4(1).simd(Simd.f32x4Add).set(GPOLY);
  // 2^n: (n + 127) << 23 as float bits
  c.get(GN).simd(Simd.i32x4TruncSatF32x4S).i32x4(127).simd(Simd.i32x4Add).i32(23).simd(Simd.i32x4Shl);
  c.get(GPOLY).simd(Simd.f32x4Mul).set(GU);
}

/** The gated loop; `argument` leaves u on the stack from x (GX): act(x) = x / (1 + e^u). */
function gatedBody(argument: (c: Code) => void): number[] {
  const c = new Code();
  c.get(GF).i32(2).op(Op.i32Shl).set(GF4);
  c.get(GH).set(GP);
  c.get(GY).set(GQ);
  c.i32(0).set(GR);
  c.open(Op.block).open(Op.loop); // rows
  c.get(GR).get(GROWS).op(Op.i32GeU).branch(Op.brIf, 1);
  c.get(GP).get(GF4).op(Op.i32Add).set(GEND);
  c.open(Op.block).open(Op.loop); // four columns at a time
  c.get(GP).get(GEND).op(Op.i32GeU).branch(Op.brIf, 1);
  c.get(GP).mem(Simd.load, 0).set(GX);
  argument(c);
  c.set(GU);
  expInPlace(c);
  // y = x / (1 + e^u) · gate
  c.get(GQ);
  c.get(GX).f32x4(1).get(GU).simd(Simd.f32x4Add).simd(Simd.f32x4Div);
  c.get(GP).get(GF4).op(Op.i32Add).mem(Simd.load, 0).simd(Simd.f32x4Mul);
  c.mem(Simd.store, 0);
  c.get(GP).i32(16).op(Op.i32Add).set(GP);
  c.get(GQ).i32(16).op(Op.i32Add).set(GQ);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end);
  c.get(GP).get(GF4).op(Op.i32Add).set(GP); // past the gate half
  c.get(GR).i32(1).op(Op.i32Add).set(GR);
  c.branch(Op.br, 0);
  c.op(Op.end, Op.end, Op.end);
  return [...vec([[...uleb(5), I32], [...uleb(5), V128]]), ...c.bytes];
}

/** gelu_new(x) = x·sigmoid(2z), z = √(2/π)·(x + 0.044715·x³): u = −2z. */
const geluArgument = (c: Code): void => {
  c.get(GX).get(GX).simd(Simd.f32x4Mul).get(GX).simd(Simd.f32x4Mul).f32x4(0.044715).simd(Simd.f32x4Mul);
  c.get(GX).simd(Simd.f32x4Add).f32x4(-2 * Math.sqrt(2 / Math.PI)).simd(Simd.f32x4Mul);
};
/** silu(x) = x·sigmoid(x): u = −x. */
const siluArgument = (c: Code): void => {
  c.zero().get(GX).simd(Simd.f32x4Sub);
};

function moduleBytes(): Uint8Array {
  const i32s = (n: number): number[] => vec(new Array<number[]>(n).fill([I32]));
  const type = section(1, vec([[0x60, ...i32s(5), ...vec([])], [0x60, ...i32s(4), ...vec([])]]));
  // Any non-shared memory: no maximum declared, so the import matches whatever the backend created.
  const imports = section(2, vec([[...wasmName('env'), ...wasmName('memory'), 0x02, 0x00, ...uleb(1)]]));
  const functions = section(3, vec([uleb(0), uleb(0), uleb(1), uleb(1)]));
  const names = ['dots', 'axpys', 'gatedGelu', 'gatedSilu'];
  const exports = section(7, vec(names.map((n, i) => [...wasmName(n), 0x00, ...uleb(i)])));
  const bodies = [dotsBody(), axpysBody(), gatedBody(geluArgument), gatedBody(siluArgument)];
  const code = section(10, vec(bodies.map((b) => [...uleb(b.length), ...b])));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...functions, ...exports, ...code]);
}

const bound = new WeakMap<object, HeapKernels | null>();

/** The kernels bound to `memory` (the wasm backend's heap), built once per memory. */
export function heapKernels(memory: WebAssembly.Memory | undefined): HeapKernels | undefined {
  if (!memory) return undefined;
  let k = bound.get(memory);
  if (k === undefined) {
    try {
      const exports = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { memory } }).exports as Omit<HeapKernels, 'buffer'>;
      k = { buffer: () => memory.buffer, dots: exports.dots, axpys: exports.axpys, gatedGelu: exports.gatedGelu, gatedSilu: exports.gatedSilu };
    } catch {
      k = null;
    }
    bound.set(memory, k);
  }
  return k ?? undefined;
}
