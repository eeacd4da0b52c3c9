import type { LoadSource, Target } from './balancer.ts';
import { hashKey, mix32 } from './hash.ts';
import type { Locate } from './hashing.ts';

/** Points on the ring the targets share, when each gets between MIN and MAX points. */
const RING_POINTS = 1 << 20;
/** At least this many points per target: share spread (≈ 1/√points) stays near ±10%. */
const MIN_POINTS_PER_TARGET = 100;
/** Small pools stop here (±1.6% spread, ≤ 4096 × 8 bytes per target). */
const MAX_POINTS_PER_TARGET = 4096;
/** Points are sorted as hash × OWNERS + owner in a float64, exact below 2^53. */
const OWNERS = 2 ** 21;

/**
 * CONSISTENT_HASH's mapping: a hash ring. Each target puts points on a 32-bit circle at hashes of
 * its id, and a key belongs to the owner of the first point at or after the key's hash, found by
 * binary search. Points depend on ids, not on positions in the target list, so building over the
 * same targets less one moves exactly the keys of the one that went, about 1/N, and no other key.
 * Weighted, each target's points, and so its share, follow its weight at construction.
 */
export function hashRing(targets: readonly Target[], load: LoadSource, weighted: boolean): Locate {
  const n = targets.length;
  if (n >= OWNERS) throw new RangeError(`a hash ring holds at most ${OWNERS - 1} targets`);
  const counts = pointCounts(n, load, weighted);
  let total = 0;
  for (const c of counts) total += c;
  const packed = new Float64Array(total);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const base = hashKey(targets[i]!.id);
    // mix32(k + 1) rather than k × constant: shifted sequences would let two targets' points coincide wholesale.
    for (let k = 0; k < counts[i]!; k++) packed[at++] = mix32(base ^ mix32(k + 1)) * OWNERS + i;
  }
  packed.sort();
  const points = new Uint32Array(total);
  const owners = new Int32Array(total);
  for (let p = 0; p < total; p++) {
    points[p] = Math.floor(packed[p]! / OWNERS);
    owners[p] = packed[p]! % OWNERS;
  }
  return (hash) => {
    let lo = 0;
    let hi = total;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return owners[lo === total ? 0 : lo]!;
  };
}

/** Points per target: equal, or in proportion to weight (equal again when all weights are 0). */
function pointCounts(n: number, load: LoadSource, weighted: boolean): number[] {
  const perTarget = Math.min(Math.max(Math.floor(RING_POINTS / n), MIN_POINTS_PER_TARGET), MAX_POINTS_PER_TARGET);
  const weights = Array.from({ length: n }, (_, i) => (weighted ? Math.max(0, load.weight(i)) : 1));
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => perTarget);
  return weights.map((w) => Math.round((perTarget * n * w) / sum));
}
