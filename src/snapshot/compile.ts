/**
 * Configuration → RuntimeSnapshot. Pure apart from reading the store: every per-request decision
 * that can be made from configuration alone (which backends are in, their weights' inputs, the
 * balancer, how the hash key is found) is made here, once per revision.
 */
import { createBalancer } from '../balancing/index.ts';
import { effectiveBackendTls, effectiveProxyProtocol } from '../control/backend-tls.ts';
import { weightPlan } from '../control/backend-view.ts';
import type { Backend } from '../model/backend.ts';
import type { Certificate } from '../model/certificate.ts';
import type { Listener } from '../model/listener.ts';
import type { Pool } from '../model/pool.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import type { CircuitBreakerState } from '../runtime/circuit-breaker.ts';
import type { ReadView } from '../store/store.ts';
import { createHash } from 'node:crypto';
import { type AccessList, compileAccessList } from '../policy/access-list.ts';
import { CidrSet, type Network, parseNetwork } from '../policy/cidr.ts';
import type { StickyTables } from '../runtime/sticky.ts';
import type { Acl } from '../model/acl.ts';
import type { RateLimit } from '../model/rate-limit.ts';
import type { RoutingRule } from '../model/routing-rule.ts';
import type { PolicyCompiler } from './policies.ts';
import { routingRuleOrder } from '../policy/routing/matcher.ts';
import { rateLimitOrder } from '../policy/rate-limit.ts';
import { type BackendTarget, type HashKeySource, type StickyRuntime, type ListenerRuntime, type PoolRuntime, type RuntimeSnapshot, type SniTable, TargetLoad, type UpstreamSpec } from './snapshot.ts';

export interface CompileDeps {
  /** Sticky tables by pool (SOURCE_IP and APP_COOKIE persistence), kept across revisions. */
  sticky?: StickyTables;
  /** Compiled access lists by listener and version: rebuilt only when the listener changes. */
  accessLists?: Map<string, { version: number; list: AccessList | null }>;
  /** Layer 7 policies (ACLs, routing rules, rate limits); absent: HTTP listeners have none. */
  policies?: PolicyCompiler;
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
  routingRules: RoutingRule[];
  rateLimits: RateLimit[];
  acls: Acl[];
}

export async function readConfig(store: ReadView & { revision(): Promise<number> }): Promise<ConfigSet> {
  const revision = await store.revision();
  const [certificates, listeners, pools, backends, routingRules, rateLimits, acls] = await Promise.all([
    store.list<Certificate>('certificate'),
    store.list<Listener>('listener'),
    store.list<Pool>('pool'),
    store.list<Backend>('backend'),
    store.list<RoutingRule>('routing_rule'),
    store.list<RateLimit>('rate_limit'),
    store.list<Acl>('acl'),
  ]);
  return {
    revision,
    certificates: certificates.items.map((r) => r.body),
    listeners: listeners.items.map((r) => r.body),
    pools: pools.items.map((r) => r.body),
    backends: backends.items.map((r) => r.body),
    // In the order they are tried, the same as the API lists them.
    routingRules: routingRules.items.map((r) => r.body).sort(routingRuleOrder),
    rateLimits: rateLimits.items.map((r) => r.body).sort(rateLimitOrder),
    acls: acls.items.map((r) => r.body),
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

/** How a backend of `pool` is reached; its key changes with anything that needs a new connection. */
export function upstreamSpec(pool: Pool, b: Backend): UpstreamSpec {
  const host = b.ip_address ?? b.hostname!;
  const tls = effectiveBackendTls(pool, b);
  const origin = `${tls.enabled ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${b.port}`;
  const ca = tls.ca === undefined ? '' : createHash('sha256').update(tls.ca).digest('base64url').slice(0, 16);
  const proxyProtocol = effectiveProxyProtocol(pool, b);
  const key = `${b.server_id}|${origin}|${tls.http2 ? 'h2' : 'h1'}|${tls.verify ? 'verify' : 'noverify'}|${tls.servername ?? ''}|${ca}|${proxyProtocol}`;
  return { key, serverId: b.server_id, origin, host, port: b.port, tls, proxyProtocol };
}

/** RFC 6797 §6.1: the Strict-Transport-Security value a listener's `hsts` asks for. */
function hstsValue(l: Listener): string | null {
  const h = l.hsts;
  if (!h || l.protocol !== 'HTTPS') return null;
  return `max-age=${h.max_age_seconds}${h.include_subdomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}`;
}

/**
 * A listener's compiled access list, kept across revisions while the listener's version is the
 * same. Items are validated when written; one that still cannot be compiled closes the listener to
 * everyone (a DENY skipped would let its clients in).
 */
function accessListOf(l: Listener, deps: CompileDeps): AccessList | null {
  const cached = deps.accessLists?.get(l.listener_id);
  if (cached && cached.version === l.version) return cached.list;
  let list: AccessList | null = null;
  if (l.access_list && l.access_list.length > 0) {
    try {
      list = compileAccessList(l.access_list);
    } catch {
      list = { allows: () => false, size: l.access_list.length };
    }
  }
  deps.accessLists?.set(l.listener_id, { version: l.version, list });
  return list;
}

function sniTable(l: Listener, pools: ReadonlyMap<string, PoolRuntime>): SniTable | null {
  if (l.protocol !== 'TLS_PASSTHROUGH') return null;
  const exact = new Map<string, PoolRuntime | null>();
  const wildcard = new Map<string, PoolRuntime | null>();
  for (const route of l.sni_routes ?? []) {
    const pool = pools.get(route.pool_id) ?? null;
    for (const name of route.hostnames) {
      if (name.startsWith('*.')) wildcard.set(name.slice(2), pool);
      else exact.set(name, pool);
    }
  }
  return { exact, wildcard };
}

/** The opaque cookie value naming a backend of a pool (COOKIE persistence): stable, not its id. */
function stickyToken(poolId: string, serverId: string): string {
  return createHash('sha256').update(`${poolId}\0${serverId}`).digest('base64url').slice(0, 16);
}

function compileSticky(pool: Pool, targets: readonly BackendTarget[], deps: CompileDeps): StickyRuntime | null {
  const sp = pool.session_persistence;
  if (!sp.enabled || sp.type === undefined) return null;
  const tokenOf = new Map<string, string>();
  const serverOf = new Map<string, string>();
  if (sp.type === 'COOKIE') {
    for (const t of targets) {
      const token = stickyToken(pool.pool_id, t.id);
      tokenOf.set(t.id, token);
      serverOf.set(token, t.id);
    }
  }
  return {
    type: sp.type,
    cookieName: sp.type === 'APP_COOKIE' ? (sp.app_cookie_name ?? sp.cookie_name!) : (sp.cookie_name ?? 'FULCRUM_BACKEND'),
    ttlMs: (sp.ttl_seconds ?? 3600) * 1000,
    tokenOf,
    serverOf,
    table: sp.type === 'COOKIE' ? null : (deps.sticky?.table(pool.pool_id) ?? null),
  };
}

function compilePool(pool: Pool, backends: Backend[], deps: CompileDeps): PoolRuntime {
  // A pool with session persistence keeps its DRAINING backends for the clients pinned to them.
  const sticky = pool.session_persistence.enabled === true && pool.session_persistence.type !== undefined;
  const targets: BackendTarget[] = backends
    .filter((b) => b.admin_status === 'ENABLED' || (sticky && b.admin_status === 'DRAINING'))
    .map((b) => ({
      id: b.server_id,
      backend: b,
      record: deps.state.record(b.server_id),
      plan: weightPlan(pool, b),
      maxConnections: b.max_connections ?? pool.connection_limits.max_connections_per_backend ?? Infinity,
      upstream: upstreamSpec(pool, b),
      draining: b.admin_status === 'DRAINING',
    }));
  const options = {
    algorithm: pool.algorithm,
    weighted: pool.algorithm_config.weighted ?? false,
    powerOfTwoChoices: pool.algorithm_config.power_of_two_choices ?? false,
    random: deps.random,
  };
  const load = new TargetLoad(targets, deps.now);
  const balancer = createBalancer(targets, load, options);
  load.live();
  const freshBalancer = () => {
    const l = new TargetLoad(targets, deps.now);
    const b = createBalancer(targets, l, options);
    l.live();
    return b;
  };
  const index = new Map(targets.map((t, i) => [t.id, i]));
  return { pool, targets, index, balancer, hashKey: hashKeySource(pool), retries: pool.retries, breaker: deps.breaker(pool), passive: pool.passive_health?.enabled !== false,
    shutdownOnDown: pool.on_marked_down_action === 'SHUTDOWN_SESSIONS',
    sticky: compileSticky(pool, targets, deps),
    load,
    freshBalancer,
  };
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
  const dropHeaders = new Set<string>();
  for (const l of config.listeners) if (l.protocol === 'HTTPS' && l.tls) dropHeaders.add(l.tls.client_subject_header.toLowerCase());
  const policiesOf = deps.policies?.compile(config, pools) ?? (() => null);
  for (const l of config.listeners) {
    const hsts = hstsValue(l);
    listeners.set(l.listener_id, {
      listener: l,
      pool: l.default_pool_id ? (pools.get(l.default_pool_id) ?? null) : null,
      responseHeaders: hsts === null ? [] : ['strict-transport-security', hsts],
      redirect: l.protocol === 'HTTP' && l.redirect_to_https?.enabled ? l.redirect_to_https : null,
      sni: sniTable(l, pools),
      dropHeaders,
      accessList: accessListOf(l, deps),
      policies: l.protocol === 'HTTP' || l.protocol === 'HTTPS' ? policiesOf(l.org_id) : null,
      proxyFrom: l.accept_proxy_protocol?.enabled ? new CidrSet(l.accept_proxy_protocol.trusted_cidrs.map((c) => parseNetwork(c)).filter((n): n is Network => typeof n !== 'string')) : null,
    });
  }
  const backends = new Map(config.backends.map((b) => [b.server_id, { poolId: b.pool_id, record: deps.state.record(b.server_id) }]));
  return { revision: config.revision, listeners, pools, backends, policies: policiesOf };
}
