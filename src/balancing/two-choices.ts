import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import type { Score } from './least-load.ts';
import { sample } from './pickable.ts';

/**
 * Power of two choices: two distinct pickable targets at random, the lower score wins. O(1) with
 * no shared ordered structure, and nearly as even as a full least-load search; scores are read
 * live, so update() has nothing to do. Equal scores keep the first draw, itself random.
 */
export class TwoChoices implements Balancer {
  readonly #n: number;
  readonly #load: LoadSource;
  readonly #score: Score;
  readonly #random: () => number;

  constructor(n: number, load: LoadSource, score: Score, random: () => number) {
    this.#n = n;
    this.#load = load;
    this.#score = score;
    this.#random = random;
  }

  pick(_request: PickRequest, avoid?: ReadonlySet<number>): number {
    const a = sample(this.#n, this.#load, this.#random, avoid);
    if (a < 0) return -1;
    const b = sample(this.#n, this.#load, this.#random, avoid, a);
    if (b < 0) return a;
    return this.#score(this.#load, b) < this.#score(this.#load, a) ? b : a;
  }

  update(_index: number): void {}
}
