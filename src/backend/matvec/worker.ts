/**
 * A matvec engine worker thread (engine.ts): runs chunks of the jobs the main thread posts in shared
 * memory. Between jobs it spins for a while (a decode step posts dozens of jobs tens of microseconds
 * apart, and waking from Atomics.wait takes longer than most of them), then sleeps until notified.
 * Right after its share of a job it reads the matrix the caller predicted for the next job into cache,
 * until that job is posted: the memory bus is otherwise idle while the caller does a step's other work.
 */
import { workerData } from 'node:worker_threads';
import { NEXT_AT, NEXT_BYTES, QUIT, runChunks, SEQ, SLEEPING, type Kernels, type TouchFunction } from './protocol.js';

const SPIN_MS = 3;

const { module, memory } = workerData as { module: WebAssembly.Module; memory: WebAssembly.Memory };
const { mv, mvh, touch } = new WebAssembly.Instance(module, { env: { memory } }).exports as Kernels & { touch: TouchFunction };
const kernels: Kernels = { mv, mvh };
/** Read-ahead granule: small enough to see the next job within a few microseconds. */
const AHEAD = 16384;
const ctl = new Int32Array(memory.buffer, 0, 16);

/** The next job's sequence number after `seen`: spins for SPIN_MS, then sleeps until notified. */
function nextJob(seen: number): number {
  let seq = Atomics.load(ctl, SEQ);
  if (seq !== seen) return seq;
  let until = performance.now() + SPIN_MS;
  for (let spins = 1; (seq = Atomics.load(ctl, SEQ)) === seen; spins++) {
    if ((spins & 1023) === 0 && performance.now() > until) {
      // SLEEPING before the wait, which sleeps only if SEQ is still `seen`: a job posted in between is
      // either seen by the wait or finds SLEEPING set and notifies.
      Atomics.add(ctl, SLEEPING, 1);
      Atomics.wait(ctl, SEQ, seen);
      Atomics.sub(ctl, SLEEPING, 1);
      until = performance.now() + SPIN_MS;
    }
  }
  return seq;
}

/** While the caller does the step's other work, reads the matrix it multiplies next into cache. */
function readAhead(seq: number): void {
  // The two words may come from different jobs (they are read while the caller may post the next): keep
  // the range inside the memory, which only grows.
  const at = Atomics.load(ctl, NEXT_AT) >>> 0;
  const end = Math.min(at + (Atomics.load(ctl, NEXT_BYTES) >>> 0), memory.buffer.byteLength);
  for (let p = at; p < end && Atomics.load(ctl, SEQ) === seq; p += AHEAD) touch(p, Math.min(end, p + AHEAD));
}

// A loop calling small functions rather than one loop at the top level: V8 optimises top-level code by
// on-stack replacement, a larger compilation (one took ~70 ms of a compiler thread, competing with the
// two threads streaming a process's first products) that was deoptimised and redone more than once.
function serve(): void {
  for (let seen = Atomics.load(ctl, SEQ); ; ) {
    const seq = nextJob(seen);
    if (seq === QUIT) return;
    seen = seq;
    runChunks(ctl, seq, kernels);
    readAhead(seq);
  }
}

serve();
