/**
 * The balancing algorithms behind one factory. The data plane builds a balancer per pool and
 * configuration snapshot, then calls pick() per request and update() on load changes.
 */
import type { Balancer, BalancerOptions, LoadSource, Target } from './balancer.ts';
import { HashBalancer } from './hashing.ts';
import { HeapBalancer } from './heap-balancer.ts';
import { ipHash } from './ip-hash.ts';
import { connections, responseTime, type Score, ScoreOrder, weightedConnections } from './least-load.ts';
import { Random } from './random.ts';
import { hashRing } from './ring.ts';
import { RoundRobin } from './round-robin.ts';
import { TwoChoices } from './two-choices.ts';
import { DeadlineOrder } from './weighted-round-robin.ts';
import { WeightedRandom } from './weighted-random.ts';

export type { Balancer, BalancerOptions, LoadSource, PickRequest, Target } from './balancer.ts';
export { hashKey } from './hash.ts';

const NOTHING: Balancer = { pick: () => -1, update: () => {} };

export function createBalancer(targets: readonly Target[], load: LoadSource, options: BalancerOptions): Balancer {
  const { algorithm, weighted, powerOfTwoChoices, random } = options;
  const n = targets.length;
  if (n === 0) return NOTHING;
  const leastLoad = (score: Score): Balancer =>
    powerOfTwoChoices ? new TwoChoices(n, load, score, random) : new HeapBalancer(n, load, new ScoreOrder(n, load, score));
  switch (algorithm) {
    case 'ROUND_ROBIN':
      return weighted ? new HeapBalancer(n, load, new DeadlineOrder(n, load)) : new RoundRobin(n, load, random);
    case 'WEIGHTED_ROUND_ROBIN':
      return new HeapBalancer(n, load, new DeadlineOrder(n, load));
    case 'LEAST_CONNECTIONS':
      return leastLoad(weighted ? weightedConnections : connections);
    case 'WEIGHTED_LEAST_CONNECTIONS':
      return leastLoad(weightedConnections);
    case 'RANDOM':
      return weighted ? new WeightedRandom(n, load, random) : new Random(n, load, random);
    case 'IP_HASH':
      return new HashBalancer(n, load, ipHash(n, load, weighted));
    case 'CONSISTENT_HASH':
      return new HashBalancer(n, load, hashRing(targets, load, weighted));
    case 'LEAST_RESPONSE_TIME':
      return leastLoad(responseTime(weighted));
    default:
      // The algorithm comes from stored configuration, which the type system does not vouch for.
      throw new Error(`unknown balancing algorithm: ${String(algorithm satisfies never)}`);
  }
}
