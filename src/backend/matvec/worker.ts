/**
 * A matvec engine worker thread (engine.ts): runs chunks of the jobs the main thread posts in shared
 * memory. Between jobs it spins for a while (a decode step posts dozens of jobs tens of microseconds
 * apart, and waking from Atomics.wait takes longer than most of them), then sleeps until notified.
 */
import { workerData } from 'node:worker_threads';
import { QUIT, runChunks, SEQ, SLEEPING, type MvFunction } from './protocol.js';

const SPIN_MS = 3;

const { module, memory } = workerData as { module: WebAssembly.Module; memory: WebAssembly.Memory };
const mv = (new WebAssembly.Instance(module, { env: { memory } }).exports as { mv: MvFunction }).mv;
const ctl = new Int32Array(memory.buffer, 0, 16);

let seen = Atomics.load(ctl, SEQ);
for (;;) {
  let seq = Atomics.load(ctl, SEQ);
  if (seq === seen) {
    const until = performance.now() + SPIN_MS;
    for (let spins = 1; (seq = Atomics.load(ctl, SEQ)) === seen; spins++) {
      if ((spins & 1023) === 0 && performance.now() > until) {
        // SLEEPING before the wait, which sleeps only if SEQ is still `seen`: a job posted in between is
        // either seen by the wait or finds SLEEPING set and notifies.
        Atomics.add(ctl, SLEEPING, 1);
        Atomics.wait(ctl, SEQ, seen);
        Atomics.sub(ctl, SLEEPING, 1);
      }
    }
  }
  if (seq === QUIT) break;
  seen = seq;
  runChunks(ctl, seq, mv);
}
