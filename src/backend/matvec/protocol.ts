/**
 * The control block the engine's threads share: Int32 words at the start of the engine's memory. A job is
 * split into chunks of weight blocks; every thread claims chunks until none is left, so a worker that
 * wakes late (or not at all) only means the caller does more of the work.
 *
 * Claims carry the job's tag (its sequence number, 15 bits) next to the chunk counter in one word, and
 * the caller closes the word before it writes the next job's parameters: a worker that read a stale job
 * can never claim a chunk of a newer one.
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

/** CLAIM when no job is open. */
export const CLOSED = -1;
/** SEQ value that tells workers to exit. */
export const QUIT = -1;

export const tagOf = (seq: number): number => seq & 0x7fff;
export const openClaim = (seq: number): number => tagOf(seq) << 16;

/** The exported kernel, as both the caller and the workers call it (kernel-wasm.ts). */
export type PackFunction = (src: number, dst: number, k: number, n: number, blocks: number, blockBytes: number) => void;
export type TouchFunction = (from: number, to: number) => number;
export type MvFunction = (x: number, w: number, y: number, k: number, rows: number, xStride: number, yStride: number, b: number, bEnd: number) => void;

/**
 * Claims and runs chunks of job `seq` until none is left; returns how many this thread ran. Parameters
 * are read with atomic loads after SEQ, so they are the job's own (see the module comment).
 */
export function runChunks(ctl: Int32Array, seq: number, mv: MvFunction): number {
  const x = Atomics.load(ctl, PARAM_X);
  const w = Atomics.load(ctl, PARAM_W);
  const y = Atomics.load(ctl, PARAM_Y);
  const k = Atomics.load(ctl, PARAM_K);
  const rows = Atomics.load(ctl, PARAM_ROWS);
  const xStride = Atomics.load(ctl, PARAM_X_STRIDE);
  const yStride = Atomics.load(ctl, PARAM_Y_STRIDE);
  const blocks = Atomics.load(ctl, PARAM_BLOCKS);
  const chunk = Atomics.load(ctl, PARAM_CHUNK);
  const tag = tagOf(seq);
  let ran = 0;
  for (;;) {
    const v = Atomics.load(ctl, CLAIM);
    if (v === CLOSED || v >>> 16 !== tag) return ran;
    const c = v & 0xffff;
    const b = c * chunk;
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
