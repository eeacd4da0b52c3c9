/**
 * Test doubles for the balancing suite: a LoadSource over plain arrays, a seeded PRNG, the list of
 * algorithm variants every conformance check runs over, and a stand-in for the data plane.
 */
import type { Balancer, LoadSource, Target } from '../../src/balancing/balancer.ts';
import { createBalancer } from '../../src/balancing/index.ts';
import { ALGORITHMS, type Algorithm } from '../../src/model/pool.ts';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Load facts the test sets directly. */
export class FakeLoad implements LoadSource {
  readonly weights: number[];
  readonly actives: number[];
  readonly latencies: number[];
  readonly usables: boolean[];

  constructor(weights: readonly number[]) {
    this.weights = [...weights];
    this.actives = weights.map(() => 0);
    this.latencies = weights.map(() => 0);
    this.usables = weights.map(() => true);
  }

  static even(n: number): FakeLoad {
    return new FakeLoad(Array.from({ length: n }, () => 1));
  }

  weight(i: number): number {
    return this.weights[i]!;
  }
  active(i: number): number {
    return this.actives[i]!;
  }
  latencyMs(i: number): number {
    return this.latencies[i]!;
  }
  usable(i: number): boolean {
    return this.usables[i]!;
  }

  pickable(i: number, avoid?: ReadonlySet<number>): boolean {
    return this.usables[i]! && this.weights[i]! > 0 && !avoid?.has(i);
  }
}

export const targetsOf = (n: number): Target[] => Array.from({ length: n }, (_, i) => ({ id: `backend-${i}` }));

/** A client address per k, as IP_HASH and CONSISTENT_HASH see keys. */
export const keyOf = (k: number): string => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;

export interface Variant {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly weighted: boolean;
  readonly powerOfTwoChoices: boolean;
  /** Shares follow the weights; otherwise they are even whatever the weights. */
  readonly byWeight: boolean;
  /** Picks depend on load, so checks play traffic through `Traffic`. */
  readonly loadAware: boolean;
  readonly hashing: boolean;
}

const LOAD_AWARE: readonly Algorithm[] = ['LEAST_CONNECTIONS', 'WEIGHTED_LEAST_CONNECTIONS', 'LEAST_RESPONSE_TIME'];
const HASHING: readonly Algorithm[] = ['IP_HASH', 'CONSISTENT_HASH'];
const WEIGHTED_BY_NAME: readonly Algorithm[] = ['WEIGHTED_ROUND_ROBIN', 'WEIGHTED_LEAST_CONNECTIONS'];

/** Every algorithm, weighted and not, and with power of two choices where it applies. */
export const VARIANTS: readonly Variant[] = ALGORITHMS.flatMap((algorithm) =>
  [false, true].flatMap((weighted) =>
    (LOAD_AWARE.includes(algorithm) ? [false, true] : [false]).map((powerOfTwoChoices) => ({
      name: `${algorithm}${weighted ? ' weighted' : ''}${powerOfTwoChoices ? ' p2c' : ''}`,
      algorithm,
      weighted,
      powerOfTwoChoices,
      byWeight: weighted || WEIGHTED_BY_NAME.includes(algorithm),
      loadAware: LOAD_AWARE.includes(algorithm),
      hashing: HASHING.includes(algorithm),
    })),
  ),
);

export function build(v: Variant, load: LoadSource, n: number, seed = 1): Balancer {
  return createBalancer(targetsOf(n), load, {
    algorithm: v.algorithm,
    weighted: v.weighted,
    powerOfTwoChoices: v.powerOfTwoChoices,
    random: seeded(seed),
  });
}

/**
 * Plays the data plane: a pick opens a request on its target (active + 1, update), and once more
 * than `concurrency` are open the oldest closes (active - 1, update), so every request lasts the
 * same number of picks and a target's share of picks is its share of open requests.
 */
export class Traffic {
  readonly #balancer: Balancer;
  readonly #load: FakeLoad;
  readonly #concurrency: number;
  readonly #open: number[] = [];
  #oldest = 0;
  #keys = 0;

  constructor(balancer: Balancer, load: FakeLoad, concurrency = 32) {
    this.#balancer = balancer;
    this.#load = load;
    this.#concurrency = concurrency;
  }

  /** One request with a fresh client key; the pick. */
  request(avoid?: ReadonlySet<number>): number {
    const i = this.#balancer.pick({ key: keyOf(this.#keys++) }, avoid);
    if (i >= 0) this.open(i);
    return i;
  }

  /** Opens a request on target i, closing the oldest when too many are open. */
  open(i: number): void {
    this.#load.actives[i]!++;
    this.#balancer.update(i);
    this.#open.push(i);
    if (this.#open.length - this.#oldest > this.#concurrency) {
      const j = this.#open[this.#oldest++]!;
      this.#load.actives[j]!--;
      this.#balancer.update(j);
    }
  }

  /** Picks per target over `count` requests. */
  count(count: number, avoid?: ReadonlySet<number>): number[] {
    const counts = this.#load.weights.map(() => 0);
    for (let k = 0; k < count; k++) {
      const i = this.request(avoid);
      if (i >= 0) counts[i]!++;
    }
    return counts;
  }
}

/** Each count's share of the total. */
export const shares = (counts: readonly number[]): number[] => {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => c / total);
};
