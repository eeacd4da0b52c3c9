import type { LoadSource, Target } from './balancer.ts';
import { hashKey, mix32 } from './hash.ts';
import type { Locate } from './hashing.ts';

/** Points on the ring the targets share, when each gets between MIN and MAX points. */
const RING_POINTS = 1 << 20;
/** At least this many points per target: share spread (≈ 1/√points) stays near ±10%. */
const MIN_POINTS_PER_TARGET = 100;
/** Small pools stop here: ±1.6% spread, about 36 KB per target (9 bytes a point with its index). */
const MAX_POINTS_PER_TARGET = 4096;
/** Radix of the sort: 16 bits per pass. */
const DIGITS = 1 << 16;

/**
 * CONSISTENT_HASH's mapping: a hash ring. Each target puts points on a 32-bit circle at hashes of
 * its id, and a key belongs to the owner of the first point at or after the key's hash, found by a
 * binary search within the bucket of the hash's top bits (a handful of points: O(1) expected).
 * Points depend on ids, not on positions in the target list, so building over the same targets
 * less one moves exactly the keys of the one that went, about 1/N, and no other key. Weighted,
 * each target's points, and so its share, follow its weight at construction.
 *
 * Ring rather than Maglev: Maglev's O(1) table is more even, but at a few hundred slots per target
 * it moves several times 1/N of keys when a target goes (about 6× at 1,000 targets), and slots per
 * target cannot stay high at 10,000 targets without tables of tens of megabytes.
 */
export function hashRing(targets: readonly Target[], load: LoadSource, weighted: boolean): Locate {
  const n = targets.length;
  const counts = pointCounts(n, load, weighted);
  let total = 0;
  for (const c of counts) total += c;
  const points = new Uint32Array(total);
  const owners = new Int32Array(total);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const base = hashKey(targets[i]!.id);
    // mix32(k + 1) rather than k × constant: shifted sequences would let two targets' points coincide wholesale.
    for (let k = 0; k < counts[i]!; k++, at++) {
      points[at] = mix32(base ^ mix32(k + 1));
      owners[at] = i;
    }
  }
  sortPoints(points, owners);
  // An index by the top bits of the hash narrows each search to the few points of one bucket:
  // about 4 per bucket on average (total is at least MIN_POINTS_PER_TARGET).
  const bits = Math.floor(Math.log2(total)) - 2;
  const shift = 32 - bits;
  const bucketStart = new Uint32Array((1 << bits) + 1);
  for (let b = 0, p = 0; b <= 1 << bits; b++) {
    while (p < total && (points[p]! >>> shift) < b) p++;
    bucketStart[b] = p;
  }
  return (hash) => {
    const bucket = hash >>> shift;
    let lo = bucketStart[bucket]!;
    let hi = bucketStart[bucket + 1]!;
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

/**
 * Sorts the points, owners alongside, by LSD radix sort in two passes of 16 bits: O(points), where a
 * comparison sort of the million points of a 10,000-target ring would hold the event loop for a
 * good part of a second. Stable, so owners of equal points stay in target order.
 */
function sortPoints(points: Uint32Array, owners: Int32Array): void {
  const spare = { points: new Uint32Array(points.length), owners: new Int32Array(points.length) };
  const main = { points, owners };
  for (const [shift, from, to] of [[0, main, spare], [16, spare, main]] as const) {
    const starts = new Uint32Array(DIGITS + 1);
    for (const point of from.points) starts[((point >>> shift) & (DIGITS - 1)) + 1]!++;
    for (let d = 1; d <= DIGITS; d++) starts[d]! += starts[d - 1]!;
    for (let p = 0; p < from.points.length; p++) {
      const into = starts[(from.points[p]! >>> shift) & (DIGITS - 1)]!++;
      to.points[into] = from.points[p]!;
      to.owners[into] = from.owners[p]!;
    }
  }
}
