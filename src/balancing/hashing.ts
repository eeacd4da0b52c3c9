import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import { hashKey, mix32 } from './hash.ts';
import { pickable } from './pickable.ts';

/** Maps a 32-bit key hash to a target index. */
export type Locate = (hash: number) => number;

/** Rehashes tried when the key's own target is not pickable, before walking the targets in order. */
const REHASHES = 20;
/** Odd constant (2^32 / golden ratio) that makes each rehash of the same key start far apart. */
const REHASH_STEP = 0x9e3779b9;

/**
 * The hashing algorithms' pick: the key's target when it is pickable, otherwise a fallback that
 * depends only on the key and on which targets are pickable, so a key keeps its fallback target
 * and keys whose own target is fine never move. The fallback rehashes the key (spreading a down
 * target's keys over the others in proportion to their shares), then walks on from the key's
 * target in index order, so it answers whenever anything is pickable.
 */
export class HashBalancer implements Balancer {
  readonly #n: number;
  readonly #load: LoadSource;
  readonly #locate: Locate;

  constructor(n: number, load: LoadSource, locate: Locate) {
    this.#n = n;
    this.#load = load;
    this.#locate = locate;
  }

  pick(request: PickRequest, avoid?: ReadonlySet<number>): number {
    const hash = hashKey(request.key);
    const home = this.#locate(hash);
    if (pickable(this.#load, home, avoid)) return home;
    for (let k = 1; k <= REHASHES; k++) {
      const i = this.#locate(mix32(hash + Math.imul(k, REHASH_STEP)));
      if (pickable(this.#load, i, avoid)) return i;
    }
    for (let k = 1; k < this.#n; k++) {
      const i = (home + k) % this.#n;
      if (pickable(this.#load, i, avoid)) return i;
    }
    return -1;
  }

  update(_index: number): void {}
}
