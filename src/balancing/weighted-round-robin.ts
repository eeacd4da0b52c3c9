import type { LoadSource } from './balancer.ts';
import type { HeapOrder } from './heap-balancer.ts';

/** Fractional part of the golden ratio: i × this mod 1 spreads any number of phases evenly over [0, 1). */
const GOLDEN = 0.6180339887498949;

/**
 * Smooth weighted round robin as earliest-deadline-first scheduling (as in Envoy): each target is
 * due every 1/weight units of virtual time and the pick is the target due first, so a target of
 * weight 5 beside two of weight 1 is picked 5 times in every 7, spread out (a b a a c a a), never
 * in a burst. The period is read from the live weight at each pick, so slow start's changing
 * weights take effect at once.
 *
 * The first deadlines are staggered by a golden-ratio phase per target: started in step, targets
 * of equal weight would fall due together and the heavy target's picks would bunch between them.
 */
export class DeadlineOrder implements HeapOrder {
  readonly #load: LoadSource;
  readonly #deadline: Float64Array;
  /** When each target was last due: its next deadline is this plus its current period. */
  readonly #start: Float64Array;
  /** Virtual time: the deadline of the latest pick. */
  #now = 0;

  constructor(n: number, load: LoadSource) {
    this.#load = load;
    this.#deadline = new Float64Array(n);
    this.#start = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const period = 1 / load.weight(i);
      // Weight 0: parked, and keyed by refresh() when it comes back.
      if (!(period < Infinity)) continue;
      this.#deadline[i] = period * (1 - ((i * GOLDEN) % 1));
      this.#start[i] = this.#deadline[i]! - period;
    }
  }

  less(a: number, b: number): boolean {
    const da = this.#deadline[a]!;
    const db = this.#deadline[b]!;
    return da < db || (da === db && a < b);
  }

  refresh(i: number): void {
    // Never earlier than now: a target moved into the past would take a burst of picks to catch up.
    this.#deadline[i] = Math.max(this.#now, this.#start[i]! + 1 / this.#load.weight(i));
  }

  picked(i: number): void {
    this.#now = this.#deadline[i]!;
    this.#start[i] = this.#now;
    this.#deadline[i] = this.#now + 1 / this.#load.weight(i);
  }
}
