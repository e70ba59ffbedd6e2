/**
 * The matvec engine: weight matrices packed in its own shared WebAssembly memory and multiplied by a few
 * rows of activations (a decode step's x @ W) on every core.
 *
 * Why it exists (docs/performance.md, "Decode step"): a batch-1 decode step streams all the decoder's
 * weights and the lm_head once, so its speed is memory bandwidth. The tfjs wasm backend is single-threaded
 * in Node and its XNNPACK kernel reads ~9 GB/s on this machine kind; one core cannot go past ~12 GB/s from
 * WebAssembly at all, both cores together ~20 GB/s. The engine packs each matrix once into the one
 * layout its kernel streams (kernel-wasm.ts) and splits each product between the calling thread and
 * worker threads sharing the memory (protocol.ts). Between products, idle workers read into cache the
 * matrix that followed the current one last time (a decode step multiplies in the same order every time).
 * The engine holds the only copy of the matrices it packs: XNNPACK keeps no packed duplicate of them,
 * which also shortens the model's warm-up.
 *
 * The results do not depend on the number of threads or rows (each output's sum is formed the same way).
 *
 * A matrix may also carry a screen, its bfloat16 rounding with a bound on how far each output can be from
 * the float32 product: greedy decoding streams the lm_head's screen (half the bytes) and multiplies only
 * the few columns the bounds leave in question in float32 (multiplyColumns).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { UsageError } from '../../errors.js';
import { faultIn } from '../fault-in.js';
import { BLOCK, GROUP, matVecModuleBytes, type BlockFormat } from './kernel-wasm.js';
import * as P from './protocol.js';

const PAGE = 65536;
const MAX_PAGES = 65536;
/** What a model may put in the engine: the 4 GiB of a wasm32 memory less room for scratch and staging. */
export const MAX_ENGINE_BYTES = 3.5 * 2 ** 30;
const ALIGN = 64;
/** Bytes of a matrix's rows staged at a time while it packs (engine.pack), at most (one row at least). */
export const PACK_STAGING_BYTES = 8 * 2 ** 20;
/** Chunks per job at least: load balance between threads that may start late. */
const CHUNKS = 16;
/**
 * Bytes of weights per chunk at most: the caller waits for the other threads' last chunks, on average
 * half a chunk's time; 4 MB chunks of the lm_head cost ~0.2 ms of waiting per step more than 512 KB ones.
 */
const CHUNK_BYTES = 512 * 1024;
/** Below this many multiply-adds a product runs on the calling thread alone (sync costs more). */
const PARALLEL_MIN_WORK = 64 * 1024;
/** Most threads worth using: beyond 4 the memory bus, not the cores, limits a decode step. */
const MAX_THREADS = 4;
/** A worker that stops answering mid-job is a bug; fail loudly instead of spinning forever. */
const STALL_MS = 30_000;

/** A matrix [k, n] packed for the kernel: ⌈n/8⌉ blocks of kPadded rows × 8 columns. */
export interface PackedMatrix {
  readonly format: BlockFormat;
  readonly k: number;
  readonly n: number;
  /** k rounded up to even (the kernel takes two rows of the matrix per step). */
  readonly kPadded: number;
  readonly blocks: number;
  /** Byte offset in the engine's memory. */
  readonly at: number;
  readonly bytes: number;
  /** A bfloat16 copy multiplied instead when bounds on the outputs will do (pack's `screen`). */
  readonly screen?: Screen;
}

/**
 * A cheaper stand-in for a float32 matrix: its bfloat16 rounding, half the bytes to stream. For any x,
 * |(x @ m)[j] − (x @ screen)[j]| ≤ ‖x‖₂ · columnRadius[j], both products as multiply() computes them:
 * the rounding's error (Cauchy–Schwarz over column j's errors) plus both float32 sums' own (k-term dot
 * products, Higham's γ bound), with room to spare for how the norms were computed.
 */
export interface Screen {
  readonly matrix: PackedMatrix;
  /** [n]; Infinity or NaN where the column holds no finite bound (non-finite weights). */
  readonly columnRadius: Float32Array;
  /** Byte offset of a copy in engine memory, padded with Infinity to the matrix's blocks × 8 (the scans'). */
  readonly radiusAt: number;
  /**
   * The largest ‖w_j‖ + ‖e_j‖ of the columns with a bound: below ‖x‖ times it no partial sum of either
   * product can overflow float32, which the bound assumes (multiplyScreen).
   */
  readonly maxNorm: number;
}

/**
 * multiplyScreen's result: the screen's outputs for `rows` rows, kept in engine memory ([rows, stride]
 * floats at `at`) for the bounds and scans below, until the next multiplyScreen. Output j of row r lies
 * within approx ± r with r = s·columnRadius[j] + |approx|·2⁻²² + 2⁻¹²⁶ for s ≥ ‖x_r‖₂·(1 + 2⁻²⁰): the
 * screen's bound, widened so that rounding r and approx ± r to float32 cannot make it narrower. A row
 * whose products could overflow has s = Infinity: no bound.
 */
export interface ScreenProduct {
  readonly matrix: PackedMatrix;
  readonly rows: number;
  readonly at: number;
  readonly stride: number;
  /** Per row, s above. */
  readonly scale: Float64Array;
}

type ScreenMax = (a: number, c: number, n4: number, s: number) => number;
type ScreenReach = (a: number, c: number, n4: number, s: number, t: number, out: number) => number;

/** Bytes per weight of each block format. */
const WEIGHT_BYTES: Record<BlockFormat, number> = { f32: 4, bf16: 2 };

interface Range {
  at: number;
  bytes: number;
}

/** First-fit allocator over the engine memory, growing it as needed. Frees coalesce with neighbours. */
class Arena {
  private free: Range[] = [];
  private top: number;

  constructor(
    private readonly memory: WebAssembly.Memory,
    start: number,
  ) {
    this.top = start;
  }

  alloc(bytes: number): number {
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    const i = this.free.findIndex((r) => r.bytes >= size);
    if (i >= 0) {
      const r = this.free[i] as Range;
      const at = r.at;
      if (r.bytes === size) this.free.splice(i, 1);
      else {
        r.at += size;
        r.bytes -= size;
      }
      return at;
    }
    const at = this.top;
    const end = at + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) throw new RangeError(`the matvec engine needs ${end} bytes, more than WebAssembly's 4 GiB`);
      this.memory.grow(pages);
    }
    this.top = end;
    return at;
  }

  release(at: number, bytes: number): void {
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    this.free.push({ at, bytes: size });
    this.free.sort((a, b) => a.at - b.at);
    const merged: Range[] = [];
    for (const r of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.at + last.bytes === r.at) last.bytes += r.bytes;
      else merged.push({ ...r });
    }
    const tail = merged[merged.length - 1];
    if (tail && tail.at + tail.bytes === this.top) {
      this.top = tail.at;
      merged.pop();
    }
    this.free = merged;
  }
}

/**
 * Screen.columnRadius from packh's per-block sums (kernel-wasm.ts): for column j, ‖e_j‖ + 2γ(‖w_j‖ + ‖e_j‖)
 * with e_j the rounding errors, w_j the weights and γ = nu/(1 − nu) for n = k + 2 terms, u = 2⁻²⁴;
 * times 1 + 2⁻¹⁰, far more than the float32 sums of squares can be off by (a relative γ) while they stay
 * normal. Squares of weights below ~1e-19 underflow: each norm also gets √k·2⁻⁷⁴, above the most k
 * float32 squares and additions can lose that way (2⁻¹⁵⁰ each). Non-finite weights give Infinity or NaN:
 * no bound (a consumer treats NaN as none). Also the largest finite ‖w_j‖ + ‖e_j‖ (Screen.maxNorm).
 */
function columnRadius(norms: Float64Array, k: number, n: number): { radius: Float32Array; maxNorm: number } {
  const nu = (k + 2) * 2 ** -24;
  const gamma = nu / (1 - nu);
  const floor = Math.sqrt(k) * 2 ** -74;
  const radius = new Float32Array(n);
  let maxNorm = 0;
  for (let j = 0; j < n; j++) {
    const at = (j >> 3) * 16 + ((j & 7) >> 2) * 4 + (j & 3);
    const e = Math.sqrt(norms[at] as number) + floor;
    const w = Math.sqrt(norms[at + 8] as number) + floor;
    if (w + e > maxNorm && w + e < Infinity) maxNorm = w + e;
    // The factor 1 + 2⁻²² keeps it above r once rounded to float32 (by at most 2⁻²⁴ relative).
    radius[j] = (e + 2 * gamma * (w + e)) * (1 + 2 ** -10) * (1 + 2 ** -22);
  }
  return { radius, maxNorm };
}

/**
 * Threads for the engine: TFHF_NUM_THREADS (like OMP_NUM_THREADS for PyTorch: e.g. 1 per job under GNU
 * parallel), else the cores available, at most 4.
 */
export function engineThreads(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TFHF_NUM_THREADS;
  if (raw === undefined || raw === '') return Math.min(availableParallelism(), MAX_THREADS);
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1) {
    throw new UsageError(`TFHF_NUM_THREADS must be a positive whole number, not '${raw}'`, { hint: 'unset it to use every core' });
  }
  return Number(raw);
}

export class MatVecEngine {
  private readonly memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
  private readonly ctl = new Int32Array(this.memory.buffer, 0, P.CONTROL_BYTES / 4);
  private readonly arena = new Arena(this.memory, P.CONTROL_BYTES);
  private readonly kernels: P.Kernels;
  private readonly packBlocks: P.PackFunction;
  private readonly packHalves: P.PackHalfFunction;
  private readonly smax: ScreenMax;
  private readonly sreach: ScreenReach;
  /** multiplyScreen's outputs, then room for sreach's indexes. */
  private screenOut: Range = { at: 0, bytes: 0 };
  private readonly workers: Worker[] = [];
  private seq = 0;
  private scratch: Range = { at: 0, bytes: 0 };
  /** The product that followed each matrix last time (a decode step multiplies in the same order each time). */
  private readonly successor = new Map<number, PackedMatrix>();
  private previous: PackedMatrix | undefined;
  /**
   * Whether idle workers read the predicted next matrix into cache (protocol.ts NEXT_AT): between two
   * products of a decode step the caller computes for tens of microseconds, and the memory bus would idle.
   * Off only to measure what it brings; results are the same either way.
   */
  readAhead = true;
  /** Threads that compute a product: the caller plus the workers started. */
  readonly threads: number;

  /** Most code wants shared(); a separate engine has its own memory and workers (tests). */
  constructor(threads: number) {
    const module = new WebAssembly.Module(matVecModuleBytes());
    const kernels = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports as P.Kernels & {
      pack: P.PackFunction;
      packh: P.PackHalfFunction;
      smax: ScreenMax;
      sreach: ScreenReach;
    };
    this.kernels = { mv: kernels.mv, mvh: kernels.mvh };
    this.packBlocks = kernels.pack;
    this.packHalves = kernels.packh;
    this.smax = kernels.smax;
    this.sreach = kernels.sreach;
    P.closeClaims(this.ctl);
    for (let i = 1; i < threads; i++) {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { module, memory: this.memory } });
      // A failed worker only means fewer helpers: claims left unclaimed are run by the caller.
      worker.on('error', () => undefined);
      worker.unref();
      this.workers.push(worker);
    }
    this.threads = 1 + this.workers.length;
  }

  private static instance: MatVecEngine | undefined;

  /** The process's engine, started on first use with engineThreads() threads. */
  static shared(): MatVecEngine {
    this.instance ??= new MatVecEngine(engineThreads());
    return this.instance;
  }

  /** Whether the process's engine has been started (tests, `tfhf env`). */
  static get started(): MatVecEngine | undefined {
    return this.instance;
  }

  private f32(): Float32Array {
    return new Float32Array(this.memory.buffer);
  }

  /**
   * Packs src, a row-major [k, n] matrix (x @ W's W), into engine memory; with `screen`, a bfloat16 copy
   * beside it (see Screen). The source goes through engine memory a slab of rows at a time (the copy into
   * blocks is a wasm loop, ~10× a JS one), each row padded with zeros to whole blocks of 8 columns.
   */
  pack(src: Float32Array, k: number, n: number, screen = false): PackedMatrix {
    if (src.length !== k * n) throw new RangeError(`pack: ${src.length} values for a ${k}×${n} matrix`);
    const m = this.allocMatrix('f32', k, n);
    let h: PackedMatrix | undefined;
    const { kPadded, blocks } = m;
    const width = blocks * BLOCK;
    const slabRows = Math.max(1, Math.min(k, Math.floor(PACK_STAGING_BYTES / Math.max(1, width * 4))));
    const stagingBytes = slabRows * width * 4 + blocks * 64;
    let staging = -1;
    try {
      staging = this.arena.alloc(stagingBytes);
      const norms = staging + slabRows * width * 4;
      h = screen ? this.allocMatrix('bf16', k, n) : undefined;
      const sums = new Float64Array(blocks * 16);
      for (let i0 = 0; i0 < k; i0 += slabRows) {
        const rows = Math.min(slabRows, k - i0);
        const mem = this.f32();
        if (width === n) mem.set(src.subarray(i0 * n, (i0 + rows) * n), staging / 4);
        else
          for (let i = 0; i < rows; i++) {
            mem.set(src.subarray((i0 + i) * n, (i0 + i + 1) * n), staging / 4 + i * width);
            mem.fill(0, staging / 4 + i * width + n, staging / 4 + (i + 1) * width);
          }
        this.packBlocks(staging, m.at + i0 * BLOCK * 4, rows, width, blocks, kPadded * BLOCK * 4);
        if (h) {
          this.packHalves(staging, h.at + i0 * BLOCK * 2, rows, width, blocks, kPadded * BLOCK * 2, norms);
          const slab = this.f32().subarray(norms / 4, norms / 4 + blocks * 16);
          for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] as number) + (slab[i] as number);
        }
      }
      if (kPadded !== k) {
        // The padding row of each block: zeros.
        const mem = this.f32();
        for (let b = 0; b < blocks; b++) mem.fill(0, (m.at + b * kPadded * BLOCK * 4) / 4 + k * BLOCK, (m.at + (b + 1) * kPadded * BLOCK * 4) / 4);
        if (h) {
          const u16 = new Uint16Array(this.memory.buffer);
          for (let b = 0; b < blocks; b++) u16.fill(0, (h.at + b * kPadded * BLOCK * 2) / 2 + k * BLOCK, (h.at + (b + 1) * kPadded * BLOCK * 2) / 2);
        }
      }
      return h ? { ...m, screen: this.screenOf(h, sums) } : m;
    } catch (err) {
      this.arena.release(m.at, m.bytes);
      if (h) this.arena.release(h.at, h.bytes);
      throw err;
    } finally {
      if (staging >= 0) this.arena.release(staging, stagingBytes);
    }
  }

  private allocMatrix(format: BlockFormat, k: number, n: number): PackedMatrix {
    const kPadded = k + (k & 1);
    const blocks = Math.ceil(n / BLOCK);
    const bytes = blocks * kPadded * BLOCK * WEIGHT_BYTES[format];
    return { format, k, n, kPadded, blocks, at: this.arena.alloc(bytes), bytes };
  }

  /** The screen of packed bfloat16 blocks `h`, from packh's per-block sums added over every slab. */
  private screenOf(h: PackedMatrix, sums: Float64Array): Screen {
    const { radius, maxNorm } = columnRadius(sums, h.kPadded, h.n);
    const radiusAt = this.arena.alloc(h.blocks * BLOCK * 4);
    const mem = this.f32();
    mem.set(radius, radiusAt / 4);
    mem.fill(Infinity, radiusAt / 4 + h.n, radiusAt / 4 + h.blocks * BLOCK);
    return { matrix: h, columnRadius: radius, radiusAt, maxNorm };
  }

  /**
   * Grows the memory by `bytes` and faults the new pages in on libuv's threads until `until` settles
   * (fault-in.ts): the packs that follow then write to mapped memory. The block is held while the reads
   * run, so no pack lands in it meanwhile, and freed at the end for the packs to reuse.
   */
  async reserve(bytes: number, until?: Promise<unknown>): Promise<void> {
    if (!(bytes > 0)) return;
    const at = this.arena.alloc(bytes);
    try {
      await faultIn((from, n) => new Uint8Array(this.memory.buffer, at + from, n), bytes, until);
    } finally {
      this.arena.release(at, bytes);
    }
  }

  free(m: PackedMatrix): void {
    // A stale prediction would only read freed memory; forget it anyway so that nothing points at m.
    this.successor.delete(m.at);
    for (const [at, next] of this.successor) if (next === m) this.successor.delete(at);
    if (this.previous === m) this.previous = undefined;
    this.arena.release(m.at, m.bytes);
    if (m.screen) {
      this.free(m.screen.matrix);
      this.arena.release(m.screen.radiusAt, m.blocks * BLOCK * 4);
    }
  }

  private scratchAt(bytes: number): number {
    if (this.scratch.bytes < bytes) {
      if (this.scratch.bytes > 0) this.arena.release(this.scratch.at, this.scratch.bytes);
      this.scratch = { at: this.arena.alloc(bytes), bytes };
    }
    return this.scratch.at;
  }

  /** out[rows, n] = x[rows, k] @ m, x and out row-major (out's rows `outStride` floats apart). */
  multiply(x: Float32Array, rows: number, m: PackedMatrix, out: Float32Array, outStride = m.n): void {
    const { k, n, kPadded, blocks } = m;
    if (x.length < rows * k || (rows > 0 && out.length < (rows - 1) * outStride + n)) throw new RangeError('multiply: arrays smaller than rows × k / rows × n');
    if (rows === 0 || k === 0) {
      // The kernel's loops run at least once: nothing to multiply must not reach it.
      for (let r = 0; r < rows; r++) out.fill(0, r * outStride, r * outStride + n);
      return;
    }
    const xStride = kPadded * 4;
    const yStride = blocks * BLOCK * 4;
    const xAt = this.scratchAt(rows * (xStride + yStride));
    const yAt = xAt + rows * xStride;
    const mem = this.f32();
    if (kPadded === k) mem.set(x.subarray(0, rows * k), xAt / 4);
    else
      for (let r = 0; r < rows; r++) {
        mem.set(x.subarray(r * k, (r + 1) * k), xAt / 4 + r * kPadded);
        mem[xAt / 4 + r * kPadded + k] = 0;
      }
    if (this.previous !== undefined) this.successor.set(this.previous.at, m);
    this.previous = m;
    const next = this.readAhead ? this.successor.get(m.at) : undefined;
    Atomics.store(this.ctl, P.NEXT_AT, next?.at ?? 0);
    Atomics.store(this.ctl, P.NEXT_BYTES, next?.bytes ?? 0);
    this.run(m.format, xAt, m.at, yAt, kPadded, rows, xStride, yStride, blocks);
    if (n === blocks * BLOCK && outStride === n) out.set(mem.subarray(yAt / 4, yAt / 4 + rows * n));
    else for (let r = 0; r < rows; r++) out.set(mem.subarray(yAt / 4 + (r * yStride) / 4, yAt / 4 + (r * yStride) / 4 + n), r * outStride);
  }

  /**
   * out[j] = (x @ m)[j] for at least the `columns` listed (the whole group of GROUP·8 columns around each),
   * x one row of k floats; bit for bit what multiply() gives, on the calling thread. For a few columns of
   * a large matrix: a screen's candidates.
   */
  multiplyColumns(x: Float32Array, m: PackedMatrix, columns: ArrayLike<number>, out: Float32Array): void {
    const { k, n, kPadded, blocks } = m;
    if (x.length < k || out.length < n) throw new RangeError('multiplyColumns: x shorter than k or out than n');
    if (k === 0) {
      out.fill(0, 0, n);
      return;
    }
    const xStride = kPadded * 4;
    const yStride = blocks * BLOCK * 4;
    const xAt = this.scratchAt(xStride + yStride);
    const yAt = xAt + xStride;
    const mem = this.f32();
    mem.set(x.subarray(0, k), xAt / 4);
    if (kPadded !== k) mem[xAt / 4 + k] = 0;
    const mv = m.format === 'bf16' ? this.kernels.mvh : this.kernels.mv;
    const span = GROUP * BLOCK;
    for (const g of new Set(Array.from(columns, (j) => Math.floor(j / span)))) {
      if (g < 0 || g * span >= n) continue;
      // The same block ranges as a whole product's chunks (whole groups, then the tail): the same sums.
      mv(xAt, m.at, yAt, kPadded, 1, xStride, yStride, g * GROUP, Math.min(blocks, (g + 1) * GROUP));
      out.set(mem.subarray(yAt / 4 + g * span, yAt / 4 + Math.min(n, (g + 1) * span)), g * span);
    }
  }

  /** x[rows, k] @ m's screen, kept in engine memory for screenValues / screenBounds / screenMaxLower / screenReaching. */
  multiplyScreen(x: Float32Array, rows: number, m: PackedMatrix): ScreenProduct {
    const screen = m.screen;
    if (!screen) throw new Error('multiplyScreen: the matrix has no screen');
    const stride = m.blocks * BLOCK;
    const bytes = rows * stride * 4 + stride * 4;
    if (this.screenOut.bytes < bytes) {
      if (this.screenOut.bytes > 0) this.arena.release(this.screenOut.at, this.screenOut.bytes);
      this.screenOut = { at: this.arena.alloc(bytes), bytes };
    }
    const at = this.screenOut.at;
    this.multiply(x, rows, screen.matrix, this.f32().subarray(at / 4, at / 4 + rows * stride), stride);
    const scale = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let i = r * m.k; i < (r + 1) * m.k; i++) sum += (x[i] as number) ** 2;
      scale[r] = Math.sqrt(sum) * (1 + 2 ** -20);
      // Where a partial sum could overflow, a float32 output may be ±Infinity whatever the screen says: no bound.
      if (!(scale[r]! * screen.maxNorm * (1 + 2 ** -10) < 2 ** 127)) scale[r] = Infinity;
    }
    return { matrix: m, rows, at, stride, scale };
  }

  /** Row r's screen outputs at `columns`. */
  screenValues(p: ScreenProduct, row: number, columns: readonly number[]): Float32Array {
    const mem = this.f32();
    const base = (p.at + row * p.stride * 4) / 4;
    return Float32Array.from(columns, (j) => mem[base + j] as number);
  }

  /** Row r's bounds on the outputs at `columns` (as the scans form them, in double precision: no narrower). */
  screenBounds(p: ScreenProduct, row: number, columns: readonly number[]): { lower: Float32Array; upper: Float32Array } {
    const approx = this.screenValues(p, row, columns);
    const radius = p.matrix.screen!.columnRadius;
    const lower = new Float32Array(columns.length);
    const upper = new Float32Array(columns.length);
    columns.forEach((j, i) => {
      const a = approx[i] as number;
      const r = (p.scale[row] as number) * (radius[j] as number) + Math.abs(a) * 2 ** -22 + 2 ** -126;
      lower[i] = r < Infinity ? a - r : -Infinity;
      upper[i] = r < Infinity ? a + r : Infinity;
    });
    return { lower, upper };
  }

  /** The largest lower bound of row r's outputs but `except`'s (-Infinity if none has one). */
  screenMaxLower(p: ScreenProduct, row: number, except: readonly number[]): number {
    return this.withHidden(p, row, except, (a) => this.smax(a, p.matrix.screen!.radiusAt, p.stride, p.scale[row] as number));
  }

  /** Row r's outputs, ascending and but `except`, whose upper bound reaches `threshold` or that have none. */
  screenReaching(p: ScreenProduct, row: number, threshold: number, except: readonly number[]): number[] {
    const out = p.at + p.rows * p.stride * 4;
    const count = this.withHidden(p, row, except, (a) => this.sreach(a, p.matrix.screen!.radiusAt, p.stride, p.scale[row] as number, threshold, out));
    const found = new Int32Array(this.memory.buffer, out, count);
    const skip = new Set(except);
    const n = p.matrix.n;
    const reaching: number[] = [];
    // Padding columns (radius Infinity) and the hidden ones come back too.
    for (const j of found) if (j < n && !skip.has(j)) reaching.push(j);
    return reaching;
  }

  /** Runs `scan` on row r's outputs with `except`'s set to NaN (no bound, never the maximum), then restores them. */
  private withHidden<T>(p: ScreenProduct, row: number, except: readonly number[], scan: (a: number) => T): T {
    const a = p.at + row * p.stride * 4;
    const mem = this.f32();
    const saved = except.map((j) => mem[a / 4 + j] as number);
    for (const j of except) mem[a / 4 + j] = NaN;
    try {
      return scan(a);
    } finally {
      except.forEach((j, i) => (mem[a / 4 + j] = saved[i] as number));
    }
  }

  private run(format: BlockFormat, x: number, w: number, y: number, k: number, rows: number, xStride: number, yStride: number, blocks: number): void {
    if (this.workers.length === 0 || blocks < 2 * GROUP || rows * k * blocks * BLOCK < PARALLEL_MIN_WORK) {
      (format === 'bf16' ? this.kernels.mvh : this.kernels.mv)(x, w, y, k, rows, xStride, yStride, 0, blocks);
      return;
    }
    // Chunks in whole groups, so every block takes the same path (group or tail) for any thread count.
    const wanted = Math.min(Math.max(CHUNKS, Math.ceil((k * blocks * BLOCK * WEIGHT_BYTES[format]) / CHUNK_BYTES)), 2 ** P.COUNT_BITS - 1);
    const chunk = GROUP * Math.max(1, Math.ceil(blocks / wanted / GROUP));
    const chunks = Math.ceil(blocks / chunk);
    const ctl = this.ctl;
    Atomics.store(ctl, P.PARAM_X, x);
    Atomics.store(ctl, P.PARAM_W, w);
    Atomics.store(ctl, P.PARAM_Y, y);
    Atomics.store(ctl, P.PARAM_K, k);
    Atomics.store(ctl, P.PARAM_ROWS, rows);
    Atomics.store(ctl, P.PARAM_X_STRIDE, xStride);
    Atomics.store(ctl, P.PARAM_Y_STRIDE, yStride);
    Atomics.store(ctl, P.PARAM_BLOCKS, blocks);
    Atomics.store(ctl, P.PARAM_CHUNK, chunk);
    Atomics.store(ctl, P.PARAM_FORMAT, format === 'bf16' ? P.FORMAT_BF16 : P.FORMAT_F32);
    Atomics.store(ctl, P.FINISHED, 0);
    const seq = (this.seq = (this.seq % P.SEQ_LIMIT) + 1);
    P.openClaims(ctl, seq);
    Atomics.store(ctl, P.SEQ, seq);
    if (Atomics.load(ctl, P.SLEEPING) > 0) Atomics.notify(ctl, P.SEQ);
    try {
      P.runChunks(ctl, seq, this.kernels);
      this.awaitOthers(chunks);
    } finally {
      P.closeClaims(ctl);
    }
  }

  /**
   * Waits for the chunks other threads claimed. A worker that makes no progress for STALL_MS of running
   * time is a bug: the workers are let go (one may still write to the old scratch, which is abandoned)
   * and the error thrown; later products run on the caller alone.
   */
  private awaitOthers(chunks: number): void {
    const ctl = this.ctl;
    let last = performance.now();
    let stalled = 0;
    for (let spins = 1; Atomics.load(ctl, P.FINISHED) < chunks; spins++) {
      if ((spins & 4095) !== 0) continue;
      const now = performance.now();
      // Between two checks a few microseconds pass; a long gap means the process was suspended (Ctrl-Z).
      if (now - last < 1000) stalled += now - last;
      last = now;
      if (stalled > STALL_MS) {
        for (const w of this.workers) void w.terminate();
        this.workers.length = 0;
        this.scratch = { at: 0, bytes: 0 };
        throw new Error('a matvec engine worker stopped mid-product');
      }
    }
  }

  /** Stops the workers (tests; a CLI process just exits). */
  async close(): Promise<void> {
    Atomics.store(this.ctl, P.SEQ, P.QUIT);
    Atomics.notify(this.ctl, P.SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    if (MatVecEngine.instance === this) MatVecEngine.instance = undefined;
  }
}
