/**
 * The control block the engine's threads share: Int32 words at the start of the engine's memory. A job is
 * split into chunks of weight blocks; every thread claims chunks until none is left, so a worker that
 * wakes late (or not at all) only means the caller does more of the work.
 *
 * Claims carry the job's tag (the low TAG_BITS of its sequence number) next to the chunk counter in one
 * word, and the caller closes the word before it writes the next job's parameters; a worker also checks
 * that SEQ is still its job's right before each claim. So a worker holding a stale job's parameters can
 * claim a chunk of a newer job only if it stops between that check and the claim for 2^TAG_BITS jobs
 * (seconds at the least) and the tag then matches: one in 2^TAG_BITS. (A 64-bit claim word would rule
 * it out, but BigInt atomics made back-to-back products ~15% slower.)
 */

export const CONTROL_BYTES = 64;

/** Word indexes. */
export const SEQ = 0;
export const CLAIM = 1;
export const FINISHED = 2;
/** Workers blocked in Atomics.wait (the caller notifies only then: a notify costs a lock and a syscall check). */
export const SLEEPING = 3;
export const PARAM_X = 4;
export const PARAM_W = 5;
export const PARAM_Y = 6;
export const PARAM_K = 7;
export const PARAM_ROWS = 8;
export const PARAM_X_STRIDE = 9;
export const PARAM_Y_STRIDE = 10;
export const PARAM_BLOCKS = 11;
export const PARAM_CHUNK = 12;
/** The matrix the caller expects to multiply next (0 bytes: none): idle workers read it into cache. */
export const NEXT_AT = 13;
export const NEXT_BYTES = 14;
/** The job's block format: FORMAT_F32 (mv) or FORMAT_BF16 (mvh). */
export const PARAM_FORMAT = 15;
export const FORMAT_F32 = 0;
export const FORMAT_BF16 = 1;

/** CLAIM when no job is open. */
const CLOSED = -1;
/** A job has fewer than 2^COUNT_BITS chunks (the engine cuts a product into max(16, its bytes / 512 KB), ~7200 at most). */
export const COUNT_BITS = 13;
const TAG_BITS = 31 - COUNT_BITS;
const tagOf = (seq: number): number => seq & ((1 << TAG_BITS) - 1);
/** SEQ value that tells workers to exit. */
export const QUIT = -1;
/** Sequence numbers run 1…SEQ_LIMIT, then again from 1 (SEQ is an Int32 word, for Atomics.wait). */
export const SEQ_LIMIT = 0x3fffffff;

/** Opens job `seq`'s claims (after its parameters are written). */
export function openClaims(ctl: Int32Array, seq: number): void {
  Atomics.store(ctl, CLAIM, tagOf(seq) << COUNT_BITS);
}

/** The exported kernel, as both the caller and the workers call it (kernel-wasm.ts). */
export type PackFunction = (src: number, dst: number, k: number, n: number, blocks: number, blockBytes: number) => void;
export type TouchFunction = (from: number, to: number) => number;
export type MvFunction = (x: number, w: number, y: number, k: number, rows: number, xStride: number, yStride: number, b: number, bEnd: number) => void;
export type PackHalfFunction = (src: number, dst: number, k: number, n: number, blocks: number, blockBytes: number, norms: number) => void;
/** The product kernels by block format (a type, not an interface: it is cast from a module's exports). */
export type Kernels = { mv: MvFunction; mvh: MvFunction };

/**
 * Claims and runs chunks of job `seq` until none is left; returns how many this thread ran. Parameters
 * are read with atomic loads after SEQ, so they are the job's own (see the module comment).
 */
export function runChunks(ctl: Int32Array, seq: number, kernels: Kernels): number {
  const x = Atomics.load(ctl, PARAM_X);
  const w = Atomics.load(ctl, PARAM_W);
  const y = Atomics.load(ctl, PARAM_Y);
  const k = Atomics.load(ctl, PARAM_K);
  const rows = Atomics.load(ctl, PARAM_ROWS);
  const xStride = Atomics.load(ctl, PARAM_X_STRIDE);
  const yStride = Atomics.load(ctl, PARAM_Y_STRIDE);
  const blocks = Atomics.load(ctl, PARAM_BLOCKS);
  const chunk = Atomics.load(ctl, PARAM_CHUNK);
  const mv = Atomics.load(ctl, PARAM_FORMAT) === FORMAT_BF16 ? kernels.mvh : kernels.mv;
  const tag = tagOf(seq);
  let ran = 0;
  for (;;) {
    const v = Atomics.load(ctl, CLAIM);
    if (v === CLOSED || v >>> COUNT_BITS !== tag || Atomics.load(ctl, SEQ) !== seq) return ran;
    const b = (v & ((1 << COUNT_BITS) - 1)) * chunk;
    if (b >= blocks) return ran;
    if (Atomics.compareExchange(ctl, CLAIM, v, v + 1) !== v) continue;
    mv(x, w, y, k, rows, xStride, yStride, b, Math.min(blocks, b + chunk));
    Atomics.add(ctl, FINISHED, 1);
    ran++;
  }
}

/** Ends the open job's claims (before the next job's parameters are written). */
export function closeClaims(ctl: Int32Array): void {
  Atomics.store(ctl, CLAIM, CLOSED);
}
