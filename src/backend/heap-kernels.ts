/**
 * SIMD loops that run on the tfjs wasm heap itself: a small emitted module (wasm-emit.ts) imports the
 * backend's WebAssembly.Memory, so fused kernels can hand it tensors by address instead of looping in
 * JavaScript (~2 ns per multiply-add there, ~0.2 ns here). Used by the T5 decode step's attention
 * (models/t5/kernels.ts); undefined off the wasm backend or if the heap is not reachable.
 *
 *   dots(a, b, rows, len, out):  out[r] = Σ_{i<len} a[i]·b[r·len + i]   for r < rows
 *   axpys(p, v, rows, len, out): out[i] = Σ_{r<rows} p[r]·v[r·len + i]  for i < len (len a multiple of 4)
 *
 * Arguments are byte addresses in the heap. Sums run in four f32 lanes, then across the lanes.
 */
import { Code, F32, I32, Op, section, Simd, uleb, V128, vec, wasmName } from './wasm-emit.js';

export interface HeapKernels {
  /** The heap the addresses refer to. */
  readonly buffer: () => ArrayBufferLike;
  dots(a: number, b: number, rows: number, len: number, out: number): void;
  axpys(p: number, v: number, rows: number, len: number, out: number): void;
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

function moduleBytes(): Uint8Array {
  const i32s = (n: number): number[] => vec(new Array<number[]>(n).fill([I32]));
  const type = section(1, vec([[0x60, ...i32s(5), ...vec([])]]));
  // Any non-shared memory: no maximum declared, so the import matches whatever the backend created.
  const imports = section(2, vec([[...wasmName('env'), ...wasmName('memory'), 0x02, 0x00, ...uleb(1)]]));
  const functions = section(3, vec([uleb(0), uleb(0)]));
  const exports = section(7, vec([[...wasmName('dots'), 0x00, ...uleb(0)], [...wasmName('axpys'), 0x00, ...uleb(1)]]));
  const bodies = [dotsBody(), axpysBody()];
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
      const exports = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), { env: { memory } }).exports as Pick<HeapKernels, 'dots' | 'axpys'>;
      k = { buffer: () => memory.buffer, dots: exports.dots, axpys: exports.axpys };
    } catch {
      k = null;
    }
    bound.set(memory, k);
  }
  return k ?? undefined;
}
