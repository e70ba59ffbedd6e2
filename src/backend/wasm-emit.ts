/**
 * A minimal WebAssembly binary emitter: the few sections, instructions and encodings that tfhf's own
 * kernels use (matvec/kernel-wasm.ts, heap-kernels.ts). Kernels are emitted rather than shipped as
 * binaries or built with a toolchain: each is a few dozen instructions, readable next to its caller.
 */

export const I32 = 0x7f;
export const V128 = 0x7b;
export const F32 = 0x7d;

export const enum Op {
  block = 0x02,
  loop = 0x03,
  br = 0x0c,
  brIf = 0x0d,
  end = 0x0b,
  localGet = 0x20,
  localSet = 0x21,
  i32Load = 0x28,
  i32Store = 0x36,
  f32Load = 0x2a,
  f32Store = 0x38,
  i32Const = 0x41,
  i32Eqz = 0x45,
  i32LtU = 0x49,
  i32GtU = 0x4b,
  i32GeU = 0x4f,
  i32Add = 0x6a,
  i32Sub = 0x6b,
  i32Mul = 0x6c,
  i32And = 0x71,
  i32Xor = 0x73,
  i32Shl = 0x74,
  f32Add = 0x92,
  f32Max = 0x97,
  f32Mul = 0x94,
  f32ConvertI32S = 0xb2,
  simd = 0xfd,
}

export const enum Simd {
  load = 0x00,
  load32Splat = 0x09,
  store = 0x0b,
  const = 0x0c,
  f32x4Splat = 0x13,
  i32x4ExtractLane = 0x1b,
  f32x4ExtractLane = 0x1f,
  f32x4Lt = 0x43,
  f32x4Gt = 0x44,
  v128Not = 0x4d,
  v128And = 0x4e,
  v128Or = 0x50,
  v128Bitselect = 0x52,
  v128AnyTrue = 0x53,
  f32x4Nearest = 0x6a,
  i32x4Shl = 0xab,
  i32x4ShrU = 0xad,
  i32x4Add = 0xae,
  f32x4Abs = 0xe0,
  f32x4Add = 0xe4,
  f32x4Sub = 0xe5,
  f32x4Mul = 0xe6,
  f32x4Div = 0xe7,
  f32x4Min = 0xe8,
  f32x4Max = 0xe9,
  i32x4TruncSatF32x4S = 0xf8,
}

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
export const wasmName = (s: string): number[] => vec([...Buffer.from(s, 'utf8')].map((b) => [b]));

/** An instruction stream with the few instructions the kernel needs. */
export class Code {
  readonly bytes: number[] = [];
  get(l: number): this {
    this.bytes.push(Op.localGet, ...uleb(l));
    return this;
  }
  set(l: number): this {
    this.bytes.push(Op.localSet, ...uleb(l));
    return this;
  }
  i32(c: number): this {
    this.bytes.push(Op.i32Const, ...sleb(c));
    return this;
  }
  op(...ops: Op[]): this {
    this.bytes.push(...ops);
    return this;
  }
  simd(op: Simd, ...immediates: number[]): this {
    this.bytes.push(Op.simd, ...uleb(op), ...immediates);
    return this;
  }
  /** f32.load / f32.store with a byte offset. */
  scalar(op: Op.f32Load | Op.f32Store, offset: number): this {
    this.bytes.push(op, 2, ...uleb(offset));
    return this;
  }
  /** i32.load with a byte offset (alignment hint: 4 bytes). */
  load32(offset: number): this {
    this.bytes.push(Op.i32Load, 2, ...uleb(offset));
    return this;
  }
  /** i32.store with a byte offset (alignment hint: 4 bytes). */
  store32(offset: number): this {
    this.bytes.push(Op.i32Store, 2, ...uleb(offset));
    return this;
  }
  /** The f32 sum of the four lanes of v128 `local`: l0 + (l1 + (l2 + l3)). */
  laneSum(local: number): this {
    for (const lane of [0, 1, 2, 3]) this.get(local).simd(Simd.f32x4ExtractLane, lane);
    this.bytes.push(Op.f32Add, Op.f32Add, Op.f32Add);
    return this;
  }
  /** v128.load / store / load32_splat with a byte offset (alignment hint: 4 bytes). */
  mem(op: Simd, offset: number): this {
    return this.simd(op, 2, ...uleb(offset));
  }
  zero(): this {
    return this.simd(Simd.const, ...new Array<number>(16).fill(0));
  }
  /** v128.const with `value` (rounded to float32) in all four f32 lanes. */
  f32x4(value: number): this {
    const lane = [...new Uint8Array(Float32Array.of(value).buffer)];
    return this.simd(Simd.const, ...lane, ...lane, ...lane, ...lane);
  }
  /** v128.const with `value` in all four i32 lanes. */
  i32x4(value: number): this {
    const lane = [...new Uint8Array(Int32Array.of(value).buffer)];
    return this.simd(Simd.const, ...lane, ...lane, ...lane, ...lane);
  }
  /** local += a */
  addTo(local: number, emitA: () => void): this {
    this.get(local);
    emitA();
    this.simd(Simd.f32x4Add).set(local);
    return this;
  }
  /** br / br_if to the enclosing construct `depth` levels out. */
  branch(kind: Op.br | Op.brIf, depth: number): this {
    this.bytes.push(kind, ...uleb(depth));
    return this;
  }
  /** Structured control: block/loop with an empty block type. */
  open(kind: Op.block | Op.loop): this {
    this.bytes.push(kind, 0x40);
    return this;
  }
}

