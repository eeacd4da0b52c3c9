import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import { sample } from './pickable.ts';

/** Uniform among pickable targets, O(1) expected. */
export class Random implements Balancer {
  readonly #n: number;
  readonly #load: LoadSource;
  readonly #random: () => number;

  constructor(n: number, load: LoadSource, random: () => number) {
    this.#n = n;
    this.#load = load;
    this.#random = random;
  }

  pick(_request: PickRequest, avoid?: ReadonlySet<number>): number {
    return sample(this.#n, this.#load, this.#random, avoid);
  }

  update(_index: number): void {}
}
