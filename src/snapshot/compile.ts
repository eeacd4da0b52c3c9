/**
 * Configuration → RuntimeSnapshot. Pure apart from reading the store: every per-request decision
 * that can be made from configuration alone (which backends are in, their weights' inputs, the
 * balancer, how the hash key is found) is made here, once per revision.
 */
import { createBalancer } from '../balancing/index.ts';
import { weightPlan } from '../control/backend-view.ts';
import type { Backend } from '../model/backend.ts';
import type { Certificate } from '../model/certificate.ts';
import type { Listener } from '../model/listener.ts';
import type { Pool } from '../model/pool.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import type { CircuitBreakerState } from '../runtime/circuit-breaker.ts';
import type { ReadView } from '../store/store.ts';
import { type BackendTarget, type HashKeySource, type ListenerRuntime, type PoolRuntime, type RuntimeSnapshot, TargetLoad } from './snapshot.ts';

export interface CompileDeps {
  state: BackendState;
  /** The pool's circuit breaker, created or reconfigured for this revision; null when disabled. */
  breaker(pool: Pool): CircuitBreakerState | null;
  now: () => number;
  random: () => number;
}

export interface ConfigSet {
  revision: number;
  certificates: Certificate[];
  listeners: Listener[];
  pools: Pool[];
  backends: Backend[];
}

export async function readConfig(store: ReadView & { revision(): Promise<number> }): Promise<ConfigSet> {
  const revision = await store.revision();
  const [certificates, listeners, pools, backends] = await Promise.all([
    store.list<Certificate>('certificate'),
    store.list<Listener>('listener'),
    store.list<Pool>('pool'),
    store.list<Backend>('backend'),
  ]);
  return {
    revision,
    certificates: certificates.items.map((r) => r.body),
    listeners: listeners.items.map((r) => r.body),
    pools: pools.items.map((r) => r.body),
    backends: backends.items.map((r) => r.body),
  };
}

function hashKeySource(pool: Pool): HashKeySource {
  if (pool.algorithm === 'IP_HASH') return { kind: 'ip' };
  if (pool.algorithm !== 'CONSISTENT_HASH') return { kind: 'none' };
  const key = pool.algorithm_config.hash_key;
  if (key?.header) return { kind: 'header', name: key.header.toLowerCase() };
  if (key?.cookie) return { kind: 'cookie', name: key.cookie };
  return { kind: 'ip' };
}

/** `http://host:port` of a backend: the key of its upstream connection pool. */
export function backendOrigin(b: Backend): string {
  const host = b.ip_address ?? b.hostname!;
  return `http://${host.includes(':') ? `[${host}]` : host}:${b.port}`;
}

function compilePool(pool: Pool, backends: Backend[], deps: CompileDeps): PoolRuntime {
  const targets: BackendTarget[] = backends
    .filter((b) => b.admin_status === 'ENABLED')
    .map((b) => ({
      id: b.server_id,
      backend: b,
      record: deps.state.record(b.server_id),
      plan: weightPlan(pool, b),
      maxConnections: b.max_connections ?? pool.connection_limits.max_connections_per_backend ?? Infinity,
      origin: backendOrigin(b),
    }));
  const load = new TargetLoad(targets, deps.now);
  const balancer = createBalancer(targets, load, {
    algorithm: pool.algorithm,
    weighted: pool.algorithm_config.weighted ?? false,
    powerOfTwoChoices: pool.algorithm_config.power_of_two_choices ?? false,
    random: deps.random,
  });
  load.live();
  const index = new Map(targets.map((t, i) => [t.id, i]));
  return { pool, targets, index, balancer, hashKey: hashKeySource(pool), retries: pool.retries, breaker: deps.breaker(pool), passive: pool.passive_health?.enabled !== false };
}

export function compile(config: ConfigSet, deps: CompileDeps): RuntimeSnapshot {
  const byPool = new Map<string, Backend[]>();
  for (const b of config.backends) {
    let list = byPool.get(b.pool_id);
    if (!list) byPool.set(b.pool_id, (list = []));
    list.push(b);
  }
  // A stable order makes picks reproducible across identical revisions.
  for (const list of byPool.values()) list.sort((a, b) => (a.server_id < b.server_id ? -1 : 1));

  const pools = new Map<string, PoolRuntime>();
  for (const p of config.pools) pools.set(p.pool_id, compilePool(p, byPool.get(p.pool_id) ?? [], deps));

  const listeners = new Map<string, ListenerRuntime>();
  for (const l of config.listeners) {
    listeners.set(l.listener_id, { listener: l, pool: l.default_pool_id ? (pools.get(l.default_pool_id) ?? null) : null });
  }
  const backends = new Map(config.backends.map((b) => [b.server_id, { poolId: b.pool_id, record: deps.state.record(b.server_id) }]));
  return { revision: config.revision, listeners, pools, backends };
}
