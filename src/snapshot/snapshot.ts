/**
 * The data plane's view of one configuration revision, compiled once and then only read: a request
 * captures the snapshot's objects when it starts and keeps them to its end, and a new revision
 * swaps whole objects in, never edits them (DESIGN.md §2). Live state (connections, health,
 * latency) is reached through each target's `record`, which outlives snapshots.
 */
import type { Balancer, LoadSource, Target } from '../balancing/balancer.ts';
import type { Backend } from '../model/backend.ts';
import type { EffectiveBackendTls } from '../control/backend-tls.ts';
import type { Listener, RedirectSettings } from '../model/listener.ts';
import type { Pool } from '../model/pool.ts';
import type { BackendRecord } from '../runtime/backend-state.ts';
import type { CircuitBreakerState } from '../runtime/circuit-breaker.ts';
import type { StickyTable } from '../runtime/sticky.ts';
import type { AccessList } from '../policy/access-list.ts';
import type { CidrSet } from '../policy/cidr.ts';
import type { L7Policies } from './policies.ts';
import { effectiveWeight, healthySince, type WeightPlan } from '../runtime/weight.ts';

/** A backend that may take traffic in this revision (ENABLED; DISABLED and DRAINING are left out). */
export interface BackendTarget extends Target {
  readonly backend: Backend;
  readonly record: BackendRecord;
  readonly plan: WeightPlan;
  /** `max_connections` of the backend, else the pool's `max_connections_per_backend`, else none. */
  readonly maxConnections: number;
  /** How the backend is reached: the upstream connection pool's identity and settings. */
  readonly upstream: UpstreamSpec;
  /**
   * A DRAINING backend of a pool with session persistence: never picked by the balancer, only
   * by clients pinned to it, until its drain ends (seed 001).
   */
  readonly draining: boolean;
}

/** A pool's session persistence, compiled. */
export interface StickyRuntime {
  readonly type: 'COOKIE' | 'APP_COOKIE' | 'SOURCE_IP';
  /** COOKIE: the cookie Fulcrum inserts; APP_COOKIE: the application's cookie it follows. */
  readonly cookieName: string;
  readonly ttlMs: number;
  /** COOKIE: the opaque value naming each backend, and back. */
  readonly tokenOf: ReadonlyMap<string, string>;
  readonly serverOf: ReadonlyMap<string, string>;
  /** SOURCE_IP and APP_COOKIE: the pins (runtime state, kept across revisions). */
  readonly table: StickyTable | null;
}

/** Where and how Fulcrum connects to one backend, decided once per revision. */
export interface UpstreamSpec {
  /** Identity of the upstream connection pool: the backend, its address and every TLS setting. */
  readonly key: string;
  readonly serverId: string;
  /** `http://host:port` or `https://host:port`. */
  readonly origin: string;
  readonly host: string;
  readonly port: number;
  readonly tls: EffectiveBackendTls;
  /** PROXY protocol header sent first on each connection to the backend. */
  readonly proxyProtocol: 'NONE' | 'V1' | 'V2';
}

/** TLS_PASSTHROUGH: the pool for a ClientHello's server name. */
export interface SniTable {
  /** Exact names, lower-case. */
  readonly exact: ReadonlyMap<string, PoolRuntime | null>;
  /** `*.example.com` routes, keyed by `example.com`. */
  readonly wildcard: ReadonlyMap<string, PoolRuntime | null>;
}

/** How a request's hash key is found: for IP_HASH and CONSISTENT_HASH only. */
export type HashKeySource = { kind: 'none' } | { kind: 'ip' } | { kind: 'header'; name: string } | { kind: 'cookie'; name: string };

export interface PoolRuntime {
  readonly pool: Pool;
  readonly targets: readonly BackendTarget[];
  /** server_id → index in `targets`. */
  readonly index: ReadonlyMap<string, number>;
  readonly balancer: Balancer;
  readonly hashKey: HashKeySource;
  /** Further backends a request may try after a failed connect. */
  readonly retries: number;
  /** The pool's circuit breaker (runtime state kept across revisions); null when not enabled. */
  readonly breaker: CircuitBreakerState | null;
  /** Live traffic marks failing backends OFFLINE (passive health). */
  readonly passive: boolean;
  /** on_marked_down_action SHUTDOWN_SESSIONS: a backend that turns unhealthy loses its open connections. */
  readonly shutdownOnDown: boolean;
  /** Session persistence; null when the pool has none. */
  readonly sticky: StickyRuntime | null;
  /** The live load the balancer reads (sticky picks check a pinned target with it too). */
  readonly load: TargetLoad;
  /** A new balancer over the same targets and live load, for picks that must not move `balancer` (the dry run). */
  freshBalancer(): Balancer;
}

export interface ListenerRuntime {
  readonly listener: Listener;
  /** The default pool; null when the listener has none or it no longer exists. */
  readonly pool: PoolRuntime | null;
  /** Fields added to every answer of the listener (Strict-Transport-Security), flat [name, value, …]. */
  readonly responseHeaders: readonly string[];
  /** HTTP listeners that send everyone to HTTPS. */
  readonly redirect: RedirectSettings | null;
  /** TLS_PASSTHROUGH routes by SNI; null for other protocols. */
  readonly sni: SniTable | null;
  /**
   * Request fields no client may send to a backend through this listener: the client certificate
   * subject headers of every HTTPS listener, so a backend behind one of them can trust its header
   * even when an HTTP listener reaches it too.
   */
  readonly dropHeaders: ReadonlySet<string>;
  /** The listener's access list; null when it has none (everyone is let in). */
  readonly accessList: AccessList | null;
  /** Peers that may (and must) send a PROXY protocol header; null when the listener does not accept it. */
  readonly proxyFrom: CidrSet | null;
  /** HTTP and HTTPS: its organisation's ACLs, routing rules and rate limits; null when it has none (requests go to `pool`). */
  readonly policies: L7Policies | null;
}

export interface RuntimeSnapshot {
  readonly revision: number;
  readonly listeners: ReadonlyMap<string, ListenerRuntime>;
  readonly pools: ReadonlyMap<string, PoolRuntime>;
  /** Every backend of the revision, whatever its admin state (draining ones still hold connections). */
  readonly backends: ReadonlyMap<string, { poolId: string; record: BackendRecord }>;
  /** An organisation's layer 7 policies; null when it has none. */
  readonly policies: (orgId: string) => L7Policies | null;
}

export const EMPTY_SNAPSHOT: RuntimeSnapshot = { revision: -1, listeners: new Map(), pools: new Map(), backends: new Map(), policies: () => null };

/**
 * Live load of a pool's targets, as the balancer reads it at pick time. While the balancer is
 * being built it reads configured weights instead: the hashes divide keys by weight once, and a
 * backend that is starting or ramping must still get its full share of keys for later.
 */
export class TargetLoad implements LoadSource {
  readonly #targets: readonly BackendTarget[];
  readonly #now: () => number;
  #building = true;

  /** From now on weights are live (health and slow start applied). */
  live(): this {
    this.#building = false;
    return this;
  }

  constructor(targets: readonly BackendTarget[], now: () => number) {
    this.#targets = targets;
    this.#now = now;
  }

  weight(i: number): number {
    const t = this.#targets[i]!;
    if (t.draining) return 0;
    if (this.#building) return t.plan.weight;
    return effectiveWeight(t.plan, t.record, this.#now());
  }

  active(i: number): number {
    return this.#targets[i]!.record.active;
  }

  latencyMs(i: number): number {
    return this.#targets[i]!.record.latencyMs;
  }

  usable(i: number): boolean {
    const t = this.#targets[i]!;
    return !t.draining && t.record.active < t.maxConnections;
  }

  /**
   * Whether a client pinned to target `i` may keep it: below its connection limit and healthy —
   * a DRAINING one too, until its drain ends.
   */
  pinnable(i: number): boolean {
    const t = this.#targets[i]!;
    if (t.record.active >= t.maxConnections) return false;
    return t.draining ? healthySince(t.plan, t.record, this.#now()) !== null : effectiveWeight(t.plan, t.record, this.#now()) > 0;
  }
}
