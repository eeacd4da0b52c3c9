/**
 * The seam between the data plane and the balancing algorithms. Pure: no sockets, no clock, no
 * global randomness — the data plane passes live load in through `LoadSource` and randomness in
 * through `BalancerOptions.random`, so every algorithm is tested deterministically.
 *
 * A balancer is built once per configuration snapshot for one pool, over that pool's targets in a
 * fixed order; picks return an index into that array.
 */
import type { Algorithm } from '../model/pool.ts';

/** One backend as a balancer sees it. */
export interface Target {
  /** The backend's identity (`server_id`), stable across snapshots. */
  readonly id: string;
}

/**
 * Live facts about the targets, owned by the data plane and read at pick time. Any of them may
 * change between two picks (slow start ramps weights, connections open and close, health moves).
 */
export interface LoadSource {
  /** Effective weight now, slow start applied. 0 means the target takes no new traffic. */
  weight(index: number): number;
  /** Requests or connections in flight to the target. */
  active(index: number): number;
  /** Smoothed (EWMA) response time in ms; 0 while nothing was measured yet. */
  latencyMs(index: number): number;
  /** False when the target may not be picked now: full, unhealthy, circuit open. */
  usable(index: number): boolean;
}

export interface PickRequest {
  /**
   * What the hashing algorithms hash: the client IP for IP_HASH, and for CONSISTENT_HASH the
   * configured header or cookie value, falling back to the client IP. Ignored by the others.
   */
  readonly key: string;
}

export interface Balancer {
  /**
   * The index of the chosen target, or -1 when no target is usable (usable and weight > 0) and
   * not in `avoid` (targets this request already failed on). Must stay O(1) or O(log n) in the
   * common case as targets grow to 10,000.
   */
  pick(request: PickRequest, avoid?: ReadonlySet<number>): number;
  /**
   * The data plane calls this after a target's `active`, `latencyMs` or `weight` changed, so an
   * algorithm that keeps an ordered structure (a heap) can reposition it in O(log n). Changes of
   * `usable`, and of `weight` through health or slow start, may come without a call: every
   * algorithm notices them by itself, at the latest within as many picks as there are targets.
   */
  update(index: number): void;
}

export interface BalancerOptions {
  algorithm: Algorithm;
  /**
   * `algorithm_config.weighted`: weigh ROUND_ROBIN, LEAST_CONNECTIONS, LEAST_RESPONSE_TIME, RANDOM
   * and the hashes by weight (the WEIGHTED_ algorithms always are). The hashes take the weights
   * once, when the balancer is built; the others read them as they change.
   */
  weighted: boolean;
  /**
   * `algorithm_config.power_of_two_choices`, for LEAST_CONNECTIONS, WEIGHTED_LEAST_CONNECTIONS and
   * LEAST_RESPONSE_TIME: sample two pickable targets, keep the better one. Ignored by the others.
   */
  powerOfTwoChoices: boolean;
  /** Uniform in [0, 1). */
  random: () => number;
}
