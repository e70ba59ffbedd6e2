/**
 * V8 settings for token-by-token decoding. A decode step is ~100 tfjs kernel calls around the matvec
 * engine's products, and V8 optimises tfjs's large dispatch functions (runKernelFunc, endScope, …) while
 * the first tokens are produced, on the same cores the products stream on: a fresh process's first ~40
 * steps ran 3–5 ms slower than later ones. TurboFan without inlining compiles those functions in a
 * fraction of the time, and the code it makes is no slower here (64 new tokens, alternating fresh
 * processes: median 10.5 against 11.8 ms/token; docs/performance.md).
 */
import { setFlagsFromString } from 'node:v8';

let tuned = false;

/** Applies the settings, once, before the decoding code gets hot. */
export function tuneJitForDecoding(): void {
  if (tuned) return;
  tuned = true;
  setFlagsFromString('--no-turbo-inlining');
}
