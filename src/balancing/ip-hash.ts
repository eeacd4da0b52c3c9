import type { LoadSource } from './balancer.ts';
import type { Locate } from './hashing.ts';

/**
 * IP_HASH's mapping: the hash modulo the number of targets or, weighted, the hash as a point on
 * the line of cumulative weights (taken at construction), found by binary search. Simple and
 * even, but not consistent: a change in the target list moves most keys (CONSISTENT_HASH does not).
 */
export function ipHash(n: number, load: LoadSource, weighted: boolean): Locate {
  const ends = weighted ? cumulativeWeights(n, load) : undefined;
  if (ends === undefined) return (hash) => hash % n;
  const total = ends[n - 1]!;
  return (hash) => {
    const x = (hash / 2 ** 32) * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ends[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

/** Running sums of the weights; undefined when they are all 0 (then every target counts alike). */
function cumulativeWeights(n: number, load: LoadSource): Float64Array | undefined {
  const ends = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) ends[i] = total += Math.max(0, load.weight(i));
  return total > 0 ? ends : undefined;
}
