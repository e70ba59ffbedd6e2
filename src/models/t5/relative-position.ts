/**
 * T5's relative position buckets (modeling_t5.py `_relative_position_bucket`), pure and on the host:
 * half the buckets are exact small distances, the rest logarithmic up to max_distance; the encoder
 * uses both signs (bidirectional), the decoder only the past.
 */

export function relativePositionBucket(
  relativePosition: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  let buckets = numBuckets;
  let bucket = 0;
  let n = relativePosition;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (n > 0) bucket += buckets;
    n = Math.abs(n);
  } else {
    // -min(n, 0), written so that a future key gives +0 rather than -0.
    n = Math.max(-n, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (n < maxExact) return bucket + n;
  // torch's order and precision: float32 tensor ops, math.log(max_distance / max_exact) taken in double
  // (Python) and rounded to float32 when it meets the tensor.
  const f = Math.fround;
  const scale = f(Math.log(maxDistance / maxExact));
  const large = maxExact + Math.trunc(f(f(f(Math.log(f(n / maxExact))) / scale) * (buckets - maxExact)));
  return bucket + Math.min(large, buckets - 1);
}

/** Buckets of every (query, key) pair: row-major [queryLength, keyLength], key position minus query position. */
export function bucketMatrix(
  queryLength: number,
  keyLength: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
  queryOffset = 0,
): Int32Array {
  const out = new Int32Array(queryLength * keyLength);
  for (let q = 0; q < queryLength; q++) {
    for (let k = 0; k < keyLength; k++) {
      out[q * keyLength + k] = relativePositionBucket(k - (q + queryOffset), bidirectional, numBuckets, maxDistance);
    }
  }
  return out;
}
