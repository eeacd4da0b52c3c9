/**
 * A weighted choice (a `WEIGHTED_ROUTE`'s canary split): item i is picked with probability
 * weight(i) / total. Built once per configuration as the running totals of the weights; a pick
 * draws u = random() in [0, 1) and binary-searches the first running total above u × total:
 * O(log n) per pick, no allocation, and exact shares up to the quality of `random` (injected: the
 * data plane passes `Math.random`, a test a seeded generator). Items of weight 0 are never picked.
 */
export class WeightedChoice<T> {
  readonly items: readonly T[];
  readonly total: number;
  /** cumulative[i] = sum of the weights of items 0..i. */
  readonly #cumulative: Float64Array;

  /** Throws when the lengths differ, a weight is negative or not finite, or every weight is 0. */
  constructor(items: readonly T[], weights: readonly number[]) {
    if (items.length !== weights.length) throw new Error(`weighted choice: ${items.length} items but ${weights.length} weights`);
    this.items = [...items];
    this.#cumulative = new Float64Array(weights.length);
    let total = 0;
    weights.forEach((w, i) => {
      if (!Number.isFinite(w) || w < 0) throw new Error(`weighted choice: weight ${i} is ${w}; weights are finite and not negative`);
      total += w;
      this.#cumulative[i] = total;
    });
    if (total <= 0) throw new Error('weighted choice: every weight is 0, nothing can be picked');
    this.total = total;
  }

  /** The index for a draw u in [0, 1): the first item whose running total exceeds u × total. */
  indexAt(u: number): number {
    const c = this.#cumulative;
    const x = u * this.total;
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    // lo is the last index here only when x reached the total (u rounding to 1): that item has
    // weight > 0 unless trailing items weigh 0, so step back to the last one that weighs something.
    while (lo > 0 && c[lo]! === c[lo - 1]!) lo--;
    return lo;
  }

  pick(random: () => number): T {
    return this.items[this.indexAt(random())]!;
  }

  /** Item i's expected share of picks, 0..1 (0 for an index that names no item). */
  share(i: number): number {
    const c = this.#cumulative;
    if (!Number.isInteger(i) || i < 0 || i >= c.length) return 0;
    return (c[i]! - (i > 0 ? c[i - 1]! : 0)) / this.total;
  }
}

/** A WEIGHTED_ROUTE's targets as a choice of pool ids. */
export function compileWeightedRoute(targets: readonly { pool_id: string; weight: number }[]): WeightedChoice<string> {
  return new WeightedChoice(
    targets.map((t) => t.pool_id),
    targets.map((t) => t.weight),
  );
}
