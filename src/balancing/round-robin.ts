import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import { pickable } from './pickable.ts';

/**
 * Plain round robin: the next pickable target after the previous pick, weights ignored. O(1) while
 * targets are pickable; a run of unpickable ones is stepped over. It starts at a random target so
 * that frequent rebuilds (one per configuration change) do not keep favouring the first.
 */
export class RoundRobin implements Balancer {
  readonly #n: number;
  readonly #load: LoadSource;
  #next: number;

  constructor(n: number, load: LoadSource, random: () => number) {
    this.#n = n;
    this.#load = load;
    this.#next = Math.floor(random() * n);
  }

  pick(_request: PickRequest, avoid?: ReadonlySet<number>): number {
    let i = this.#next;
    for (let k = 0; k < this.#n; k++) {
      if (i >= this.#n) i = 0;
      if (pickable(this.#load, i, avoid)) {
        this.#next = i + 1;
        return i;
      }
      i++;
    }
    return -1;
  }

  update(_index: number): void {}
}
