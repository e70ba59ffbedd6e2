/**
 * The sampler's randomness: a seeded xoshiro128** stream. Sampling cannot reproduce torch's generator, so the
 * aim is only that one seed always gives the same text, on every platform.
 */

import { randomInt } from 'node:crypto';

/** Uniform draws in [0, 1). */
export type Random = () => number;

/** Expands a seed into well-mixed state words (splitmix32), so nearby seeds give unrelated streams. */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/**
 * A reproducible stream for `seed`; `stream` separates independent consumers (one per returned sequence) so a
 * sequence does not depend on what else is generated in the same batch.
 */
export function seededRandom(seed: number, stream = 0): Random {
  // Seeds up to 2^53: fold the high part in rather than dropping it.
  const mix = splitmix32((seed ^ Math.floor(seed / 2 ** 32) ^ Math.imul(stream + 1, 0x27d4eb2d)) >>> 0);
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  if ((a | b | c | d) === 0) a = 1;
  const next32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  // 53 bits per draw: tiny probabilities of a 32k vocabulary stay reachable.
  return () => ((next32() >>> 5) * 2 ** 26 + (next32() >>> 6)) / 2 ** 53;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A seed for runs without one. */
export function freshSeed(): number {
  return randomInt(2 ** 47);
}

/**
 * One draw from the categorical distribution proportional to `weights` (torch.multinomial does not need them
 * normalised either). Returns -1 when every weight is zero.
 */
export function sampleIndex(weights: ArrayLike<number>, random: Random): number {
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i]!;
  if (!(total > 0)) return -1;
  const target = random() * total;
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (w <= 0) continue;
    cumulative += w;
    last = i;
    if (target < cumulative) return i;
  }
  // Rounding left the target just past the sum: the last token with any weight is the draw.
  return last;
}
