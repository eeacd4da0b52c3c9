import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import { pickable } from './pickable.ts';

/** Draws before falling back to a scan; see `sample` in pickable.ts for the same trade. */
const DRAWS = 16;

/**
 * Random in proportion to weight. Weights live in a Fenwick tree (prefix sums), so a draw and an
 * update() are both O(log n) however skewed the weights are. A draw that lands on an unpickable
 * target is drawn again, which keeps the odds proportional among the pickable ones; when every
 * draw misses, one linear pass over the live weights answers exactly.
 *
 * In the data plane weights also change without an update() call (health, slow start), so each
 * pick re-reads one target's weight, in rotation: the tree is never more than n picks behind.
 */
export class WeightedRandom implements Balancer {
  readonly #n: number;
  readonly #load: LoadSource;
  readonly #random: () => number;
  /** The weights as last seen, which the tree sums. */
  readonly #weights: Float64Array;
  /** 1-based: tree[k] sums the weights of targets k - (k & -k) .. k - 1. */
  readonly #tree: Float64Array;
  #total = 0;
  /** The target whose weight the next pick re-reads. */
  #stale = 0;

  constructor(n: number, load: LoadSource, random: () => number) {
    this.#n = n;
    this.#load = load;
    this.#random = random;
    this.#weights = new Float64Array(n);
    this.#tree = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) this.update(i);
  }

  pick(_request: PickRequest, avoid?: ReadonlySet<number>): number {
    this.update(this.#stale);
    this.#stale = (this.#stale + 1) % this.#n;
    for (let k = 0; k < DRAWS && this.#total > 0; k++) {
      const i = this.#find(this.#random() * this.#total);
      if (pickable(this.#load, i, avoid)) return i;
    }
    return this.#scan(avoid);
  }

  update(index: number): void {
    const w = Math.max(0, this.#load.weight(index));
    const delta = w - this.#weights[index]!;
    if (delta === 0) return;
    this.#weights[index] = w;
    this.#total += delta;
    for (let k = index + 1; k <= this.#n; k += k & -k) this.#tree[k]! += delta;
  }

  /** The target whose share of [0, total) holds x: the first whose prefix sum exceeds x. */
  #find(x: number): number {
    let at = 0;
    for (let step = 1 << Math.floor(Math.log2(this.#n)); step > 0; step >>= 1) {
      const next = at + step;
      if (next <= this.#n && this.#tree[next]! <= x) {
        at = next;
        x -= this.#tree[next]!;
      }
    }
    // Rounding in the running sums can push x past the last share; the last target then takes it.
    return Math.min(at, this.#n - 1);
  }

  #scan(avoid: ReadonlySet<number> | undefined): number {
    let sum = 0;
    for (let i = 0; i < this.#n; i++) if (pickable(this.#load, i, avoid)) sum += this.#load.weight(i);
    let x = this.#random() * sum;
    let last = -1;
    for (let i = 0; i < this.#n; i++) {
      if (!pickable(this.#load, i, avoid)) continue;
      x -= this.#load.weight(i);
      if (x < 0) return i;
      last = i;
    }
    return last;
  }
}
