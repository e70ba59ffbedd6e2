/**
 * The T5 decode step in few kernels. The element-wise work and the data movement of a step are fused
 * kernels on the wasm and cpu backends (JavaScript loops over the tensors' memory: the wasm heap, or the
 * cpu backend's arrays); on every other backend (tfjs-node-gpu) the same functions are written with stock
 * tfjs ops, so model code is backend-agnostic and the two forms are checked against each other in tests.
 *
 * Why (docs/performance-notes.md): each tfjs op costs ~4 µs of kernel plus ~5–20 µs of bookkeeping on
 * wasm, and a plainly written flan-t5-small step was ~425 of them: an RMS norm is 6 ops, gelu_new gating
 * 8, appending a position to the self-attention cache 9. Fused, a decoder layer is ~21 kernels (7 XNNPACK
 * matMuls on weights, 4 small attention products, 3 norms each fused with the residual add before it, one
 * activation, one cache append, softmaxes and a bias add), ~170 per step. Products stay tfjs matMuls: a
 * JavaScript loop is ~2× slower per multiply-add than wasm's, so only work that is not multiply-adds moves
 * here, and the activation only while small (Math.exp is slow, FUSED_ACTIVATION_MAX) or when the heap's
 * SIMD loop computes it (gated gelu_new / silu on rows).
 *
 * Layouts: "rows" tensors are [rows, d] (normalised over the last axis); with `columns` they are [d, n]
 * (the encoder works on transposed activations, normalised over axis 0).
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { heapKernels, type HeapKernels } from '../../backend/heap-kernels.js';
import { tf } from '../../backend/index.js';
import { activate, rmsNorm as rmsNormOps, type Activation } from '../layers.js';

type Attrs = Record<string, number | boolean | string>;
type Shape = number[];

/** A tensor's memory as the kernel sees it: float32, or int32 for token ids. */
type View = Float32Array | Int32Array;

/** A fused kernel: output shapes from input shapes, then one pass over the tensors' memory (float32 out). */
interface FusedKernel {
  readonly inputs: readonly string[];
  outputShapes(shapes: readonly Shape[], attrs: Attrs): Shape[];
  compute(inputs: readonly View[], outputs: readonly Float32Array[], shapes: readonly Shape[], attrs: Attrs): void;
}

const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const num = (a: Attrs, k: string): number => a[k] as number;

// ---------------------------------------------------------------------------------------------
// The loops. Each takes typed arrays and numbers only, so V8 compiles it once for good (array-of-arrays
// arguments and tfjs shape arrays of varying element kinds made it deoptimise again and again).

const EMPTY = new Float32Array(0);
const f32 = Math.fround;
const TWO_SQRT_2_OVER_PI = 2 * Math.sqrt(2 / Math.PI);

/** gelu_new = 0.5·x·(1 + tanh z) written as x·sigmoid(2z) (Math.exp is cheaper than Math.tanh). */
const geluNew = (x: number): number => x / (1 + Math.exp(-TWO_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
const relu = (x: number): number => (x > 0 ? x : 0);
const silu = (x: number): number => x / (1 + Math.exp(-x));
const ACT: Readonly<Record<string, (x: number) => number>> = { relu, gelu_new: geluNew, silu };

/** Activations the fused kernels implement; others (exact gelu) always use the ops form. */
export function fusedActivation(a: Activation): boolean {
  return a in ACT;
}

/**
 * y = x · rsqrt(mean(x²) + eps) · g per row, with exactly the float32 roundings of the ops form on wasm
 * (sequential float32 sum as wasm's Mean kernel, then one rounding per op): the ill-conditioned
 * checkpoints (t5-relu: hidden states up to ±46) amplify any other rounding of the norm past the golden
 * tolerance, even a more accurate one.
 */
function normRows(x: Float32Array, g: Float32Array, y: Float32Array, d: number, eps: number): void {
  const e = f32(eps);
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let s = 0;
    for (let i = 0; i < d; i++) {
      const v = x[o + i] as number;
      s = f32(s + f32(v * v));
    }
    const k = f32(1 / f32(Math.sqrt(f32(f32(s / d) + e))));
    for (let i = 0; i < d; i++) y[o + i] = (g[i] as number) * f32((x[o + i] as number) * k);
  }
}

/** normRows on columns: x [d, n] normalised over axis 0. */
function normColumns(x: Float32Array, g: Float32Array, y: Float32Array, d: number, eps: number, acc: Float64Array): void {
  const e = f32(eps);
  const n = x.length / d;
  acc.fill(0, 0, n);
  for (let i = 0; i < d; i++) {
    const o = i * n;
    for (let c = 0; c < n; c++) {
      const v = x[o + c] as number;
      acc[c] = f32((acc[c] as number) + f32(v * v));
    }
  }
  for (let c = 0; c < n; c++) acc[c] = f32(1 / f32(Math.sqrt(f32(f32((acc[c] as number) / d) + e))));
  for (let i = 0; i < d; i++) {
    const o = i * n;
    const gi = g[i] as number;
    for (let c = 0; c < n; c++) y[o + c] = gi * f32((x[o + c] as number) * (acc[c] as number));
  }
}

function addInto(x: Float32Array, r: Float32Array, s: Float32Array): void {
  for (let i = 0; i < x.length; i++) s[i] = (x[i] as number) + (r[i] as number);
}

/** y[r, j] = act(h[r, j]) · h[r, f + j] for h [rows, 2f]. */
function gatedRows(h: Float32Array, y: Float32Array, f: number, act: (x: number) => number): void {
  const rows = y.length / f;
  for (let r = 0; r < rows; r++) {
    const i0 = r * 2 * f;
    const o0 = r * f;
    for (let j = 0; j < f; j++) y[o0 + j] = act(h[i0 + j] as number) * (h[i0 + f + j] as number);
  }
}

/** y[i] = act(h[i]) · h[half + i]: the gated form on columns ([2f, n] → [f, n]). */
function gatedHalves(h: Float32Array, y: Float32Array, act: (x: number) => number): void {
  const half = y.length;
  for (let i = 0; i < half; i++) y[i] = act(h[i] as number) * (h[half + i] as number);
}

function activateAll(h: Float32Array, y: Float32Array, act: (x: number) => number): void {
  for (let i = 0; i < h.length; i++) y[i] = act(h[i] as number);
}

/**
 * The caches of one new decoder position per row: from y [rows, 3·H·D] (q|k|v), K, V [rows, H, T + 1, D]
 * are the past ones (pk, pv [rows, H, T, D], empty at T = 0) with the new position appended.
 */
function appendPosition(y: Float32Array, pk: Float32Array, pv: Float32Array, K: Float32Array, V: Float32Array, rows: number, H: number, D: number, T: number): void {
  const inner = H * D;
  const T1 = T + 1;
  for (let b = 0; b < rows; b++) {
    const yb = b * 3 * inner;
    for (let h = 0; h < H; h++) {
      const src = (b * H + h) * T * D;
      const dst = (b * H + h) * T1 * D;
      if (T > 0) {
        K.set(pk.subarray(src, src + T * D), dst);
        V.set(pv.subarray(src, src + T * D), dst);
      }
      const k0 = yb + inner + h * D;
      K.set(y.subarray(k0, k0 + D), dst + T * D);
      V.set(y.subarray(k0 + inner, k0 + inner + D), dst + T * D);
    }
  }
}

/**
 * One query of one head: ctx[c0…c0+D) = softmax(q·Kᵀ + bias)·V over L keys. Keys K[k0 + t·D + d];
 * values row-wise V[v0 + t·D + d] or, with `vColumns`, transposed V[v0 + d·L + t]; the additive bias of
 * key t is bias[b0 + t] (the relative position table, or the padding mask). Products and sums in double
 * precision, each score and output rounded once to float32. `p` is scratch of at least L.
 */
function attendOne(
  q: Float32Array,
  q0: number,
  K: Float32Array,
  k0: number,
  V: Float32Array,
  v0: number,
  vColumns: boolean,
  bias: Float32Array,
  b0: number,
  L: number,
  D: number,
  ctx: Float32Array,
  c0: number,
  p: Float64Array,
): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let t = 0; t < L; t++) {
    let s = 0;
    const kt = k0 + t * D;
    for (let d = 0; d < D; d++) s += (q[q0 + d] as number) * (K[kt + d] as number);
    const score = f32(f32(s) + (bias[b0 + t] as number));
    p[t] = score;
    if (score > max) max = score;
  }
  let sum = 0;
  for (let t = 0; t < L; t++) {
    const e = Math.exp((p[t] as number) - max);
    p[t] = e;
    sum += e;
  }
  if (vColumns) {
    for (let d = 0; d < D; d++) {
      let acc = 0;
      const vd = v0 + d * L;
      for (let t = 0; t < L; t++) acc += (p[t] as number) * (V[vd + t] as number);
      ctx[c0 + d] = acc / sum;
    }
  } else {
    for (let d = 0; d < D; d++) p[L + d] = 0;
    for (let t = 0; t < L; t++) {
      const w = p[t] as number;
      const vt = v0 + t * D;
      for (let d = 0; d < D; d++) p[L + d] = (p[L + d] as number) + w * (V[vt + d] as number);
    }
    for (let d = 0; d < D; d++) ctx[c0 + d] = (p[L + d] as number) / sum;
  }
}

/**
 * softmax(s + bias) in place on the f32 scores s[0…L) (bias[b0…b0+L)), the same roundings as attendOne:
 * each biased score to f32, exponentials and their sum in double precision, each probability to f32.
 */
function softmaxInPlace(s: Float32Array, L: number, bias: Float32Array, b0: number): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let t = 0; t < L; t++) {
    const v = f32((s[t] as number) + (bias[b0 + t] as number));
    s[t] = v;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let t = 0; t < L; t++) sum += Math.exp((s[t] as number) - max);
  for (let t = 0; t < L; t++) s[t] = Math.exp((s[t] as number) - max) / sum;
}

/** The heap's SIMD loops, with a scratch row in the heap for one head's scores (wasm backend only). */
let heap: { k: HeapKernels; scratch: number; floats: number } | undefined;
const HEAP_SCRATCH_FLOATS = 1 << 16;

/** Whether the SIMD loops can take these views (heap memory, the scratch large enough, D a multiple of 4). */
function onHeap(views: readonly Float32Array[], L: number, D: number): boolean {
  if (!heap || L > heap.floats || D % 4 !== 0) return false;
  const buffer = heap.k.buffer();
  return views.every((v) => v.buffer === buffer);
}

/** selfAttend on the heap: scores with dots, softmax here, the context with axpys. */
function selfAttendHeap(y: Float32Array, K: Float32Array, V: Float32Array, table: Float32Array, ctx: Float32Array, rows: number, H: number, D: number, T1: number, n: number, start: number): void {
  const { k, scratch } = heap as NonNullable<typeof heap>;
  const s = new Float32Array(k.buffer(), scratch, T1);
  const inner = H * D;
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < H; h++) {
      const kv = 4 * (b * H + h) * T1 * D;
      k.dots(y.byteOffset + 4 * (b * 3 * inner + h * D), K.byteOffset + kv, T1, D, scratch);
      softmaxInPlace(s, T1, table, h * n + start);
      k.axpys(scratch, V.byteOffset + kv, T1, D, ctx.byteOffset + 4 * (b * inner + h * D));
    }
  }
}

/** crossAttend on the heap: q·kᵀ and p·v (v transposed: one dot per output) with dots. */
function crossAttendHeap(q: Float32Array, kk: Float32Array, vT: Float32Array, mask: Float32Array, maskRows: boolean, ctx: Float32Array, rows: number, H: number, D: number, S: number): void {
  const { k, scratch } = heap as NonNullable<typeof heap>;
  const s = new Float32Array(k.buffer(), scratch, S);
  const inner = H * D;
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < H; h++) {
      const kv = 4 * (b * H + h) * S * D;
      k.dots(q.byteOffset + 4 * (b * inner + h * D), kk.byteOffset + kv, S, D, scratch);
      softmaxInPlace(s, S, mask, maskRows ? b * S : 0);
      k.dots(scratch, vT.byteOffset + kv, D, S, ctx.byteOffset + 4 * (b * inner + h * D));
    }
  }
}

/** Self-attention of each row's new position (q in y) over its keys 0…T, bias table[h, start…start+T]. */
function selfAttend(y: Float32Array, K: Float32Array, V: Float32Array, table: Float32Array, ctx: Float32Array, rows: number, H: number, D: number, T1: number, n: number, start: number, p: Float64Array): void {
  const inner = H * D;
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < H; h++) {
      const kv = (b * H + h) * T1 * D;
      attendOne(y, b * 3 * inner + h * D, K, kv, V, kv, false, table, h * n + start, T1, D, ctx, b * inner + h * D, p);
    }
  }
}

/** Cross-attention of q [rows, H·D] over k [rows, H, S, D], vT [rows, H, D, S], mask [rows, S] or zeros. */
function crossAttend(q: Float32Array, k: Float32Array, vT: Float32Array, mask: Float32Array, maskRows: boolean, ctx: Float32Array, rows: number, H: number, D: number, S: number, p: Float64Array): void {
  const inner = H * D;
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < H; h++) {
      const kv = (b * H + h) * S * D;
      attendOne(q, b * inner + h * D, k, kv, vT, kv, true, mask, maskRows ? b * S : 0, S, D, ctx, b * inner + h * D, p);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Kernels: shapes and attributes → the loops

let scratch64 = new Float64Array(256);
function scratch(n: number): Float64Array {
  if (scratch64.length < n) scratch64 = new Float64Array(Math.max(n, 2 * scratch64.length));
  return scratch64;
}

const last = (s: Shape): number => s[s.length - 1] as number;

const RMS_NORM: FusedKernel = {
  inputs: ['x', 'g'],
  outputShapes: ([x]) => [[...(x as Shape)]],
  compute([x, g], [y], [xs], a) {
    const eps = num(a, 'eps');
    if (a.columns === true) normColumns(x as Float32Array, g as Float32Array, y as Float32Array, (xs as Shape)[0] as number, eps, scratch((x as Float32Array).length / ((xs as Shape)[0] as number)));
    else normRows(x as Float32Array, g as Float32Array, y as Float32Array, last(xs as Shape), eps);
  },
};

/** s = x + r; y = rmsNorm(s) · g: the residual add and the next sub-layer's norm. */
const ADD_RMS_NORM: FusedKernel = {
  inputs: ['x', 'r', 'g'],
  outputShapes: ([x]) => [[...(x as Shape)], [...(x as Shape)]],
  compute([x, r, g], [s, y], [xs], a) {
    addInto(x as Float32Array, r as Float32Array, s as Float32Array);
    const eps = num(a, 'eps');
    if (a.columns === true) normColumns(s as Float32Array, g as Float32Array, y as Float32Array, (xs as Shape)[0] as number, eps, scratch((x as Float32Array).length / ((xs as Shape)[0] as number)));
    else normRows(s as Float32Array, g as Float32Array, y as Float32Array, last(xs as Shape), eps);
  },
};

/**
 * act(h₀) · h₁ where h = [h₀ | h₁] along the last axis ([rows, 2f] → [rows, f]) or, with `columns`,
 * along axis 0 ([2f, n] → [f, n]); ungated, act(h).
 */
const GATED_ACT: FusedKernel = {
  inputs: ['h'],
  outputShapes([h], a) {
    const s = [...(h as Shape)];
    if (a.gated === true) {
      const axis = a.columns === true ? 0 : s.length - 1;
      s[axis] = (s[axis] as number) / 2;
    }
    return [s];
  },
  compute([h], [y], [hs], a) {
    const act = ACT[a.activation as string] as (x: number) => number;
    if (a.gated !== true) activateAll(h as Float32Array, y as Float32Array, act);
    else if (a.columns === true) gatedHalves(h as Float32Array, y as Float32Array, act);
    else {
      const f = last(hs as Shape) / 2;
      const loop = heapGated(a.activation as string, f);
      if (loop && onHeap([h, y] as Float32Array[], 0, 0)) loop(h.byteOffset, y.byteOffset, y.length / f, f);
      else gatedRows(h as Float32Array, y as Float32Array, f, act);
    }
  },
};

/** The heap's SIMD loop for a gated activation of rows [.., 2f], where there is one (gelu_new, silu; f a multiple of 4). */
function heapGated(activation: string, f: number): HeapKernels['gatedGelu'] | undefined {
  if (!heap || f % 4 !== 0) return undefined;
  return activation === 'gelu_new' ? heap.k.gatedGelu : activation === 'silu' ? heap.k.gatedSilu : undefined;
}

/**
 * Inputs qkv [rows, 3·H·D], table [1, H, 1, n], pastK, pastV [rows, H, T, D] (absent at T = 0); outputs
 * the context [rows, H·D] and the caches K, V [rows, H, T + 1, D] (appendPosition, selfAttend).
 */
const SELF_ATTENTION_STEP: FusedKernel = {
  inputs: ['qkv', 'table', 'pastK', 'pastV'],
  outputShapes([qkv, , pastK], a) {
    const rows = (qkv as Shape)[0] as number;
    const heads = num(a, 'heads');
    const dKv = num(a, 'dKv');
    const t1 = (pastK ? (pastK[2] as number) : 0) + 1;
    return [
      [rows, heads * dKv],
      [rows, heads, t1, dKv],
      [rows, heads, t1, dKv],
    ];
  },
  compute([y, table, pk, pv], [ctx, K, V], [qkvShape, tableShape, pastShape], a) {
    const rows = (qkvShape as Shape)[0] as number;
    const H = num(a, 'heads');
    const D = num(a, 'dKv');
    const T = pastShape ? (pastShape[2] as number) : 0;
    appendPosition(y as Float32Array, (pk as Float32Array | undefined) ?? EMPTY, (pv as Float32Array | undefined) ?? EMPTY, K as Float32Array, V as Float32Array, rows, H, D, T);
    if (onHeap([y, K, V, ctx] as Float32Array[], T + 1, D)) {
      selfAttendHeap(y as Float32Array, K as Float32Array, V as Float32Array, table as Float32Array, ctx as Float32Array, rows, H, D, T + 1, last(tableShape as Shape), num(a, 'start'));
      return;
    }
    selfAttend(y as Float32Array, K as Float32Array, V as Float32Array, table as Float32Array, ctx as Float32Array, rows, H, D, T + 1, last(tableShape as Shape), num(a, 'start'), scratch(T + 1 + D));
  },
};

/** Inputs q [rows, H·D], k [rows, H, S, D], vT [rows, H, D, S], mask [rows, 1, 1, S] (optional); output the context. */
const CROSS_ATTENTION_STEP: FusedKernel = {
  inputs: ['q', 'k', 'vT', 'mask'],
  outputShapes: ([q]) => [[...(q as Shape)]],
  compute([q, k, vT, mask], [ctx], [qShape, kShape, , maskShape], a) {
    const rows = (qShape as Shape)[0] as number;
    const S = (kShape as Shape)[2] as number;
    const zeros = mask ? undefined : zerosOf(S);
    const maskRows = maskShape !== undefined && (maskShape[0] as number) > 1;
    if (onHeap([q, k, vT, ctx] as Float32Array[], S, num(a, 'dKv')) && S % 4 === 0) {
      crossAttendHeap(q as Float32Array, k as Float32Array, vT as Float32Array, (mask as Float32Array | undefined) ?? (zeros as Float32Array), maskRows, ctx as Float32Array, rows, num(a, 'heads'), num(a, 'dKv'), S);
      return;
    }
    crossAttend(q as Float32Array, k as Float32Array, vT as Float32Array, (mask as Float32Array | undefined) ?? (zeros as Float32Array), maskRows, ctx as Float32Array, rows, num(a, 'heads'), num(a, 'dKv'), S, scratch(S + num(a, 'dKv')));
  },
};

/** Inputs table [vocab, d] and ids [n] (int32): the rows [n, d] (wasm's GatherV2 takes ~150 µs for one row). */
const GATHER_ROWS: FusedKernel = {
  inputs: ['table', 'ids'],
  outputShapes: ([table, ids]) => [[(ids as Shape)[0] as number, (table as Shape)[1] as number]],
  compute([table, ids], [y], [tableShape]) {
    const [vocab, d] = tableShape as [number, number];
    for (let r = 0; r < (ids as Int32Array).length; r++) {
      const id = (ids as Int32Array)[r] as number;
      if (!(id >= 0 && id < vocab)) throw new RangeError(`token id ${id} is outside the embedding table (${vocab} rows)`);
      (y as Float32Array).set((table as Float32Array).subarray(id * d, (id + 1) * d), r * d);
    }
  },
};

let zeroRow = new Float32Array(0);
function zerosOf(n: number): Float32Array {
  if (zeroRow.length < n) zeroRow = new Float32Array(n);
  return zeroRow;
}

const KERNELS: Readonly<Record<string, FusedKernel>> = {
  TfhfRmsNorm: RMS_NORM,
  TfhfAddRmsNorm: ADD_RMS_NORM,
  TfhfGatedActivation: GATED_ACT,
  TfhfSelfAttentionStep: SELF_ATTENTION_STEP,
  TfhfCrossAttentionStep: CROSS_ATTENTION_STEP,
  TfhfGatherRows: GATHER_ROWS,
};

// ---------------------------------------------------------------------------------------------
// Registration on the backends whose memory JavaScript can address

type KernelParams = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function present(k: FusedKernel, inputs: tf.NamedTensorInfoMap): (tf.TensorInfo | undefined)[] {
  return k.inputs.map((name) => inputs[name]);
}

function wasmKernel(k: FusedKernel) {
  return ({ inputs, backend, attrs }: KernelParams): tf.TensorInfo | tf.TensorInfo[] => {
    const b = backend as BackendWasm;
    const a = (attrs ?? {}) as Attrs;
    const ins = present(k, inputs);
    const shapes = ins.map((i) => (i ? i.shape : (undefined as unknown as Shape)));
    const outs = k.outputShapes(shapes, a).map((s) => b.makeOutput(s, 'float32'));
    // Views after every allocation: growing the heap detaches earlier ones.
    const inViews = ins.map((i) => (i ? (b.typedArrayFromHeap(i) as View) : (undefined as unknown as View)));
    const outViews = outs.map((o) => b.typedArrayFromHeap(o) as Float32Array);
    k.compute(inViews, outViews, shapes, a);
    return outs.length === 1 ? (outs[0] as tf.TensorInfo) : outs;
  };
}

function cpuKernel(k: FusedKernel) {
  return ({ inputs, backend, attrs }: KernelParams): tf.TensorInfo | tf.TensorInfo[] => {
    const b = backend as MathBackendCPU;
    const a = (attrs ?? {}) as Attrs;
    const ins = present(k, inputs);
    const shapes = ins.map((i) => (i ? i.shape : (undefined as unknown as Shape)));
    const inViews = ins.map((i) => (i ? (b.readSync(i.dataId) as View) : (undefined as unknown as View)));
    const outShapes = k.outputShapes(shapes, a);
    const outViews = outShapes.map((s) => new Float32Array(size(s)));
    k.compute(inViews, outViews, shapes, a);
    const outs = outShapes.map((s, i) => b.makeTensorInfo(s, 'float32', outViews[i]));
    return outs.length === 1 ? (outs[0] as tf.TensorInfo) : outs;
  };
}

const FUSED_BACKENDS = ['wasm', 'cpu'] as const;
let registered = false;

function register(): void {
  if (registered) return;
  registered = true;
  for (const [name, k] of Object.entries(KERNELS)) {
    for (const backendName of FUSED_BACKENDS) {
      if (tf.getKernel(name, backendName)) continue;
      const kernelFunc = backendName === 'wasm' ? wasmKernel(k) : cpuKernel(k);
      tf.registerKernel({ kernelName: name, backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
    }
  }
}

let forced: boolean | undefined;

/** Outside any kernel (a malloc may grow the heap, detaching views a kernel holds). */
let heapTried = false;
function setUpHeap(): void {
  heapTried = true;
  const module = (tf.backend() as BackendWasm).wasm as unknown as { asm?: { memory?: WebAssembly.Memory }; _malloc(n: number): number };
  const k = heapKernels(module.asm?.memory);
  const scratch = k ? module._malloc(4 * HEAP_SCRATCH_FLOATS) >>> 0 : 0;
  heap = k && scratch !== 0 ? { k, scratch, floats: HEAP_SCRATCH_FLOATS } : undefined;
}

/** Tests: `false` forces the ops form on every backend; `undefined` restores the default. */
export function forceFusedKernels(value: boolean | undefined): void {
  forced = value;
}

/** Whether the fused kernels run on the current backend. */
export function fusedKernels(): boolean {
  if (forced === false) return false;
  register();
  if (!heapTried && tf.getBackend() === 'wasm') setUpHeap();
  return (FUSED_BACKENDS as readonly string[]).includes(tf.getBackend());
}

function run(name: string, inputs: Record<string, tf.Tensor | undefined>, attrs: Attrs): tf.Tensor | tf.Tensor[] {
  const named: tf.NamedTensorMap = {};
  for (const [k, v] of Object.entries(inputs)) if (v) named[k] = v;
  return tf.engine().runKernel(name, named, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
}

// ---------------------------------------------------------------------------------------------
// The operations, fused where possible

/** Column form of the ops: x [d, n] normalised over axis 0, g [d]. */
function rmsNormColumnsOps<T extends tf.Tensor>(x: T, g: tf.Tensor1D, eps: number): T {
  const variance = tf.mean(tf.square(x), 0, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), tf.reshape(g, [-1, 1]));
}

/** RMS norm over the last axis (rows) or axis 0 (`columns`). */
export function rmsNorm<T extends tf.Tensor>(x: T, g: tf.Tensor1D, eps: number, columns = false): T {
  if (fusedKernels()) return run('TfhfRmsNorm', { x, g }, { eps, columns }) as T;
  return columns ? rmsNormColumnsOps(x, g, eps) : rmsNormOps(x, g, eps);
}

/** [x + r, rmsNorm(x + r)·g]: a residual add and the norm of the next sub-layer. */
export function addRmsNorm<T extends tf.Tensor>(x: T, r: T, g: tf.Tensor1D, eps: number, columns = false): [T, T] {
  if (fusedKernels()) return run('TfhfAddRmsNorm', { x, r, g }, { eps, columns }) as [T, T];
  const s: T = tf.add(x, r);
  return [s, columns ? rmsNormColumnsOps(s, g, eps) : rmsNormOps(s, g, eps)];
}

/**
 * Above this many outputs the activation runs as tfjs ops, unless the heap's SIMD loop takes it: Math.exp
 * costs ~10–20 ns in JavaScript, more than wasm's vectorised sigmoid plus the extra kernels (decode steps
 * are far below it, encoders above).
 */
const FUSED_ACTIVATION_MAX = 8192;

/** Whether the heap's SIMD loop will take this activation (the heap is set up by fusedKernels()). */
function simdGated(h: tf.Tensor, activation: Activation, gated: boolean, columns: boolean): boolean {
  return gated && !columns && heapGated(activation, (h.shape[h.rank - 1] as number) / 2) !== undefined;
}

/** act(h₀)·h₁ for h = [h₀ | h₁] (last axis, or axis 0 with `columns`); ungated: act(h). */
export function gatedActivation<T extends tf.Tensor>(h: T, activation: Activation, gated: boolean, columns = false): T {
  if (fusedKernels() && fusedActivation(activation) && (h.size <= (gated ? 2 : 1) * FUSED_ACTIVATION_MAX || simdGated(h, activation, gated, columns))) {
    return run('TfhfGatedActivation', { h }, { activation, gated, columns }) as T;
  }
  if (!gated) return activate(h, activation);
  const axis = columns ? 0 : h.rank - 1;
  const [h0, h1] = tf.split(h, 2, axis) as unknown as [T, T];
  return tf.mul(activate(h0, activation), h1);
}

/** table [vocab, d] rows at ids [n] (int32): [n, d], as tf.gather(table, ids). */
export function gatherRows(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  if (fusedKernels() && table.dtype === 'float32' && ids.dtype === 'int32') return run('TfhfGatherRows', { table, ids }, {}) as tf.Tensor2D;
  return tf.gather(table, ids);
}

/** Keys and values of one attention, [rows, heads, len, dKv]. */
export type KeyValues = { readonly k: tf.Tensor4D; readonly v: tf.Tensor4D };

/**
 * Self-attention of one new position per row: qkv [rows, 3·heads·dKv] is the fused q|k|v projection,
 * `past` the cache [rows, heads, T, dKv], `table` [1, heads, 1, n] the per-distance bias read from
 * column `start` for the T + 1 keys. Returns the context [rows, heads·dKv] and the caches with the new
 * position. Fused, one kernel: the data movement and a few thousand multiply-adds, which as tfjs ops were
 * 6 kernels, two of them batched matMuls that wasm runs in a scalar loop.
 */
export function selfAttentionStep(
  qkv: tf.Tensor2D,
  past: KeyValues | undefined,
  table: tf.Tensor4D,
  start: number,
  heads: number,
  dKv: number,
): { ctx: tf.Tensor2D; kv: KeyValues } {
  if (fusedKernels()) {
    const [ctx, k, v] = run('TfhfSelfAttentionStep', { qkv, table, pastK: past?.k, pastV: past?.v }, { heads, dKv, start }) as tf.Tensor[];
    return { ctx: ctx as tf.Tensor2D, kv: { k: k as tf.Tensor4D, v: v as tf.Tensor4D } };
  }
  const rows = qkv.shape[0];
  const [q, kNew, vNew] = tf.split(qkv, 3, 1).map((t) => tf.reshape(t, [rows, heads, 1, dKv])) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
  const k = past ? tf.concat([past.k, kNew], 2) : kNew;
  const v = past ? tf.concat([past.v, vNew], 2) : vNew;
  const bias = tf.slice(table, [0, 0, 0, start], [1, heads, 1, k.shape[2]]);
  const p = tf.softmax(tf.add(tf.matMul(q, k, false, true), bias));
  return { ctx: tf.reshape(tf.matMul(p, v), [rows, heads * dKv]), kv: { k, v } };
}

/**
 * Cross-attention of one position per row over the encoder's keys k [rows, heads, S, dKv] and transposed
 * values vT [rows, heads, dKv, S]; `mask` is additive, [rows, 1, 1, S]: the context [rows, heads·dKv].
 * One fused kernel where they run, else 4 tfjs ops.
 */
export function crossAttentionStep(
  q: tf.Tensor2D,
  k: tf.Tensor4D,
  vT: tf.Tensor4D,
  mask: tf.Tensor | undefined,
  heads: number,
  dKv: number,
): tf.Tensor2D {
  if (fusedKernels()) return run('TfhfCrossAttentionStep', { q, k, vT, mask }, { heads, dKv }) as tf.Tensor2D;
  const rows = q.shape[0];
  let scores = tf.matMul(tf.reshape(q, [rows, heads, 1, dKv]), k, false, true); // [rows, heads, 1, S]
  if (mask) scores = tf.add(scores, mask);
  return tf.reshape(tf.matMul(tf.softmax(scores), vT, false, true), [rows, heads * dKv]);
}
