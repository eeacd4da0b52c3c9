import type { LoadSource } from './balancer.ts';
import type { HeapOrder } from './heap-balancer.ts';

/** How loaded target i is now, lower is better; only asked about pickable targets (weight > 0). */
export type Score = (load: LoadSource, i: number) => number;

export const connections: Score = (load, i) => load.active(i);

/** (active + 1) / weight: with the +1, an idle target of weight 4 still beats an idle one of weight 1. */
export const weightedConnections: Score = (load, i) => (load.active(i) + 1) / load.weight(i);

/**
 * Latency stand-in for a target not measured yet (latencyMs 0): one nanosecond, below any real
 * round trip, so unmeasured targets are tried first, yet among them the score still grows with
 * requests in flight and new traffic spreads over all of them.
 */
const UNMEASURED_MS = 1e-6;

/** latency × (active + 1), divided by the weight when weighted. */
export function responseTime(weighted: boolean): Score {
  return (load, i) => {
    const score = Math.max(load.latencyMs(i), UNMEASURED_MS) * (load.active(i) + 1);
    return weighted ? score / load.weight(i) : score;
  };
}

/**
 * Least score first; among equal scores the target picked longest ago, so that traffic rotates
 * over equally loaded targets even when the load never changes between picks.
 */
export class ScoreOrder implements HeapOrder {
  readonly #load: LoadSource;
  readonly #score: Score;
  /** Cached scores: the heap's order must not change behind its back, only through refresh(). */
  readonly #scores: Float64Array;
  readonly #lastPicked: Float64Array;
  #picks: number;

  constructor(n: number, load: LoadSource, score: Score) {
    this.#load = load;
    this.#score = score;
    this.#scores = new Float64Array(n);
    this.#lastPicked = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.#scores[i] = score(load, i);
      this.#lastPicked[i] = i;
    }
    this.#picks = n;
  }

  less(a: number, b: number): boolean {
    const sa = this.#scores[a]!;
    const sb = this.#scores[b]!;
    return sa < sb || (sa === sb && this.#lastPicked[a]! < this.#lastPicked[b]!);
  }

  refresh(i: number): void {
    this.#scores[i] = this.#score(this.#load, i);
  }

  picked(i: number): void {
    this.#lastPicked[i] = this.#picks++;
  }
}
