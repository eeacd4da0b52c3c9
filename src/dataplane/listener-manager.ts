import type { IncomingMessage } from 'node:http';
import { createSocket } from 'node:dgram';
import { createServer as createNetServer, isIPv6, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Backend } from '../model/backend.ts';
import type { Listener } from '../model/listener.ts';
import { SUPPORTED_LISTENER_PROTOCOLS } from '../model/listener.ts';
import type { DataPlaneControl } from '../control/context.ts';
import { type ListenerMetrics, Metrics } from '../observability/metrics.ts';
import { requestId } from '../observability/request-id.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import { compile, readConfig, upstreamSpec } from '../snapshot/compile.ts';
import { EMPTY_SNAPSHOT, type ListenerRuntime, type PoolRuntime, type RuntimeSnapshot } from '../snapshot/snapshot.ts';
import type { Store } from '../store/store.ts';
import { forward, type ListenerView, type ProxyDeps } from './http/proxy.ts';
import { answerRaw, tunnel } from './http/tunnel.ts';
import { Upstreams } from './http/upstreams.ts';
import { compileListenerTls, type ListenerTlsRuntime, SecureContextCache } from './tls/listener-tls.ts';
import { passthrough } from './tls/passthrough.ts';
import { type FrontHooks, httpServer, httpsServer, type ListenerServer, tcpServer, type TlsHandlers } from './servers.ts';
import type { Admission } from './accept.ts';
import { connectionBytes, peerAddress } from './accept.ts';
import { relay } from './tcp/relay.ts';
import { RelayWorkers } from './tcp/relay-workers.ts';
import { StickyTables } from '../runtime/sticky.ts';
import { udpServer } from './udp/udp-server.ts';
import { refuse as refuseL4 } from './tcp/relay.ts';
import { ConnectionThrottle } from '../policy/throttle.ts';
import type { AccessList } from '../policy/access-list.ts';
import { ConnectionLog } from '../observability/connection-log.ts';
import type { SecretBox } from '../tls/secret-box.ts';
import { DrainSupervisor } from './drain.ts';
import { POOL_DEFAULTS } from '../model/pool.ts';
import { type BreakerSettings, type BreakerView, CircuitBreakerState } from '../runtime/circuit-breaker.ts';
import { effectiveHealthCheck } from '../control/backend-view.ts';
import { type CheckedBackend, HealthChecker } from '../health/checker.ts';
import { PROBES } from '../health/probes/index.ts';
import type { ConfigSet } from '../snapshot/compile.ts';
import { PolicyCompiler } from '../snapshot/policies.ts';
import type { PolicyState } from '../runtime/policies.ts';
import type { RequestFacts } from '../policy/request.ts';
import { type DryRunResult, dryRun, redirectedDryRun } from './http/policies.ts';
import { previewSticky } from './http/sticky.ts';
import { healthStatus, healthySince } from '../runtime/weight.ts';

const ADMITTED: Admission = { ok: true, release() {} };
const EMPTY = Buffer.alloc(0);

/** How often ramping (slow start) weights are pushed to the balancers. */
const RAMP_TICK_MS = 250;

interface Bound extends ListenerView {
  listener: Listener;
  runtime: ListenerRuntime;
  handle: ListenerServer & { applyTls?(next: ListenerTlsRuntime, previous: ListenerTlsRuntime): void };
  key: string;
  /** Set when the socket stops accepting: responses still running close their connection. */
  closing: boolean;
  metrics: ListenerMetrics;
  /** HTTPS: the certificates and TLS settings it serves now (read at each handshake). */
  tls: ListenerTlsRuntime | undefined;
}

export interface DataPlaneOptions {
  /** Opens certificate private keys for HTTPS listeners. */
  secrets: SecretBox;
  /** Where connection logs go (`connection_logging`). */
  connectionLog: ConnectionLog;
  /** Worker processes for layer 4 bytes; 0 (or absent) pumps them in this process. */
  relayWorkers?: number;
  /** What ACLs, routing rules and rate limits remember; absent: HTTP listeners apply none. */
  policies?: PolicyState;
  /**
   * Removes a backend whose drain completed (zero connections, or its timeout passed), unless it
   * left that drain meanwhile; resolves to whether it was removed.
   */
  removeDrained(backend: Backend): Promise<boolean>;
  now?: () => number;
  random?: () => number;
}

function servable(l: Listener): boolean {
  return l.enabled && SUPPORTED_LISTENER_PROTOCOLS.includes(l.protocol);
}

type Status = ReturnType<DataPlaneControl['listenerStatus']>;

function bindKey(l: Listener): string {
  return `${l.protocol}|${l.bind_address}|${l.port}`;
}


/** A socket's current response, when node:http has begun one (an internal field, read-only here). */
function responseStarted(socket: Socket): boolean {
  const message = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  return message?.headersSent === true;
}

function hasRequestInFlight(socket: Socket): boolean {
  return (socket as Socket & { _httpMessage?: unknown })._httpMessage != null;
}

/** Every backend with an enabled active check, and where to probe it. */
function checkedBackends(config: ConfigSet): CheckedBackend[] {
  const pools = new Map(config.pools.map((p) => [p.pool_id, p]));
  const out: CheckedBackend[] = [];
  for (const b of config.backends) {
    const pool = pools.get(b.pool_id);
    const check = pool ? effectiveHealthCheck(pool, b) : null;
    if (!check?.enabled) continue;
    out.push({ serverId: b.server_id, target: { host: b.ip_address ?? b.hostname!, port: check.port ?? b.port }, check });
  }
  return out;
}

/** A reverse proxy is not a forward proxy: CONNECT tunnels are refused. */
function refuseConnect(socket: Socket): void {
  answerRaw(socket, 405, requestId(undefined), 'CONNECT is not served by this listener', 'allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n');
}

/**
 * Owns the data plane's sockets and the snapshot they serve. `sync` compiles the store's current
 * revision into a RuntimeSnapshot and swaps it in whole; `reconcile` binds, keeps or releases each
 * listener by identity: a listener whose address is unchanged keeps its socket and its
 * connections; one that moved is bound at the new address before the old closes. A listener that
 * fails to bind gets status ERROR with the OS's reason; the others are unaffected.
 */
export class ListenerManager implements DataPlaneControl {
  readonly #store: Store;
  readonly #state: BackendState;
  readonly #log: Logger;
  readonly #bound = new Map<string, Bound>();
  readonly #errors = new Map<string, string>();
  /** Old sockets still finishing their in-flight requests; stop() waits for them too. */
  readonly #retiring = new Map<Bound, Promise<void>>();
  readonly #upstreams = new Upstreams();
  readonly #drains: DrainSupervisor;
  readonly #health: HealthChecker;
  /** Circuit breakers by pool identity: their state outlives revisions. */
  readonly #breakers = new Map<string, CircuitBreakerState>();
  readonly #secrets: SecretBox;
  /** HTTPS listeners' compiled TLS of the applied revision, or why it cannot be served. */
  #tls = new Map<string, ListenerTlsRuntime | Error>();
  readonly #contexts = new SecureContextCache();
  /** Connection throttles by listener identity: open counts and rates outlive revisions. */
  readonly #throttles = new Map<string, ConnectionThrottle>();
  readonly #connectionLog: ConnectionLog;
  readonly #relayWorkers: RelayWorkers;
  /** Session persistence tables by pool identity: pins outlive revisions. */
  readonly #sticky = new StickyTables();
  readonly #accessLists = new Map<string, { version: number; list: AccessList | null }>();
  readonly #proxy: ProxyDeps;
  readonly #policies: PolicyCompiler | undefined;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly metrics: Metrics;
  #snapshot: RuntimeSnapshot = EMPTY_SNAPSHOT;
  #desired = new Map<string, Listener>();
  #syncing: Promise<void> = Promise.resolve();
  #rampTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(store: Store, state: BackendState, log: Logger, options: DataPlaneOptions) {
    this.#store = store;
    this.#state = state;
    this.#log = log;
    this.#now = options.now ?? Date.now;
    this.#secrets = options.secrets;
    this.#connectionLog = options.connectionLog;
    this.#random = options.random ?? Math.random;
    this.metrics = new Metrics({
      backendConnections: () => this.#backendConnections(),
      configVersion: () => Math.max(0, this.#snapshot.revision),
      breakers: () => [...this.#breakers].map(([pool, b]) => ({ pool, state: b.state(this.#now()) })),
    });
    this.#drains = new DrainSupervisor({
      state,
      now: this.#now,
      log,
      closeIdle: (serverId) => this.#upstreams.closeBackend(serverId),
      remove: options.removeDrained,
    });
    this.#health = new HealthChecker({
      state,
      probes: PROBES,
      now: this.#now,
      random: this.#random,
      log,
      changed: (serverId) => this.#healthChanged(serverId),
    });
    this.#relayWorkers = new RelayWorkers(options.relayWorkers ?? 0, log.child({ component: 'relay-workers' }));
    // A child with a field of its own: `component` is already the data plane's.
    const policyLog = log.child({ stage: 'policies' });
    this.#policies =
      options.policies &&
      new PolicyCompiler({
        state: options.policies,
        onInvalidRule: (ruleId, reason) => policyLog.error({ rule_id: ruleId, reason }, 'routing rule skipped: it does not compile'),
        logAcl: (entry) => policyLog.info(entry, 'ACL matched'),
      });
    this.#proxy = {
      random: this.#random,
      relayWorkers: this.#relayWorkers,
      upstreams: this.#upstreams,
      metrics: this.metrics,
      now: this.#now,
      loadChanged: (pool, index) => this.#loadChanged(pool, index),
    };
  }

  /** A pool's circuit breaker as the API shows it; null when the pool has none enabled. */
  breakerView(poolId: string): BreakerView | null {
    return this.#breakers.get(poolId)?.view(this.#now()) ?? null;
  }

  /**
   * The dry run of a request (POST /routing-rules/test) against the revision served now: what the
   * policies decide and the backend a balancer built afresh would pick. Counts nothing.
   */
  routeTest(facts: RequestFacts, rawHeaders: readonly string[]): DryRunResult {
    const snapshot = this.#snapshot;
    const listener = snapshot.listeners.get(facts.listenerId);
    const policies = listener ? listener.policies : snapshot.policies(facts.orgId);
    const now = this.#now();
    const redirect = listener?.redirect;
    if (redirect) return redirectedDryRun(facts, redirect);
    // The fields Fulcrum itself adds on the way to the backend, which a rule may remove too.
    const forwarded = [...rawHeaders, 'X-Forwarded-For', '', 'X-Forwarded-Proto', '', 'X-Forwarded-Port', '', 'X-Forwarded-Host', '', 'X-Request-ID', ''];
    return dryRun(policies, facts, forwarded, snapshot.pools, listener?.pool ?? null, now, (pool, f) => {
      const index = previewSticky(pool, f, f.clientIp, now, pool.freshBalancer());
      return { index, reason: index < 0 ? `no backend of pool ${pool.pool.pool_id} can take a request now (none healthy, enabled and below its limits)` : null };
    });
  }

  /** The snapshot the data plane serves now. */
  get snapshot(): RuntimeSnapshot {
    return this.#snapshot;
  }

  /**
   * Applies the store's current configuration; concurrent calls run one after another. Never
   * rejects: the write that asked for it has committed, so a failure here is the data plane's to
   * report (logged, and visible as listener status), not a failed API call. When compiling fails
   * the last good snapshot stays live.
   */
  sync(): Promise<void> {
    this.#syncing = this.#syncing
      .then(() => this.#syncOnce())
      .catch((err: unknown) => this.#log.error({ err }, 'data plane sync failed'));
    return this.#syncing;
  }

  async #syncOnce(): Promise<void> {
    if (this.#stopped) return;
    const config = await readConfig(this.#store);
    if (config.revision === this.#snapshot.revision) return;
    const breakers = new Set<string>();
    const next = compile(config, {
      policies: this.#policies,
      sticky: this.#sticky,
      accessLists: this.#accessLists,
      state: this.#state,
      now: this.#now,
      random: this.#random,
      breaker: (pool) => {
        if (pool.circuit_breaker.enabled !== true) return null;
        breakers.add(pool.pool_id);
        const settings = { ...POOL_DEFAULTS.circuit_breaker, ...pool.circuit_breaker } as BreakerSettings;
        const known = this.#breakers.get(pool.pool_id);
        if (known) known.configure(settings);
        else this.#breakers.set(pool.pool_id, new CircuitBreakerState(settings));
        return this.#breakers.get(pool.pool_id)!;
      },
    });
    for (const id of this.#breakers.keys()) if (!breakers.has(id)) this.#breakers.delete(id);
    this.#snapshot = next;
    this.#sticky.retain(new Set([...next.pools.values()].filter((p) => p.sticky?.table).map((p) => p.pool.pool_id)));
    this.#upstreams.retain(this.#upstreamKeys(next, config));
    const certificates = new Map(config.certificates.map((c) => [c.cert_id, c]));
    this.#tls = new Map();
    this.#contexts.begin();
    for (const l of config.listeners) {
      if (l.protocol !== 'HTTPS' || !l.enabled) continue;
      try {
        this.#tls.set(l.listener_id, compileListenerTls(l, certificates, this.#secrets, this.#contexts));
      } catch (err) {
        this.#tls.set(l.listener_id, err as Error);
      }
    }
    this.#contexts.end();
    for (const l of config.listeners) {
      let throttle = this.#throttles.get(l.listener_id);
      if (!throttle) this.#throttles.set(l.listener_id, (throttle = new ConnectionThrottle({ now: this.#now })));
      throttle.configure(l.connection_throttle ?? null);
    }
    const ids = new Set(config.listeners.map((l) => l.listener_id));
    for (const id of this.#throttles.keys()) if (!ids.has(id)) this.#throttles.delete(id);
    for (const id of this.#accessLists.keys()) if (!ids.has(id)) this.#accessLists.delete(id);
    await this.reconcile(config.listeners);
    this.#drains.watch(config.backends.filter((b) => b.admin_status === 'DRAINING'));
    this.#health.sync(checkedBackends(config));
    this.#watchRamps();
  }

  healthChanged(serverId: string): void {
    this.#healthChanged(serverId);
  }

  /** A backend turned healthy or unhealthy: every pool holding it re-reads its weight. */
  #healthChanged(serverId: string): void {
    for (const pool of this.#snapshot.pools.values()) {
      const i = pool.index.get(serverId);
      if (i === undefined) continue;
      pool.balancer.update(i);
      if (pool.shutdownOnDown) this.#shutdownIfDown(pool, i);
    }
    this.#watchRamps();
  }

  /**
   * Seed 002's on_marked_down_action SHUTDOWN_SESSIONS: once a backend is marked down (by its
   * checks, by live traffic, or by an operator's override), its open connections are closed, so
   * long-lived sessions move to a healthy backend instead of hanging on to a failing one.
   */
  #shutdownIfDown(pool: PoolRuntime, index: number): void {
    const t = pool.targets[index]!;
    if (t.record.connections.size === 0) return;
    const status = healthStatus(t.plan, t.record, this.#now());
    if (status !== 'UNHEALTHY' && status !== 'OFFLINE') return;
    this.#log.info({ server_id: t.id, status, connections: t.record.connections.size }, 'backend marked down: closing its connections (SHUTDOWN_SESSIONS)');
    for (const terminate of [...t.record.connections]) terminate();
  }

  /** Upstream pools still needed: every backend a listener can reach, and draining ones that keep idle connections. */
  #upstreamKeys(snapshot: RuntimeSnapshot, config: ConfigSet): Set<string> {
    const keys = new Set<string>();
    const connectTimeouts = new Set<number>();
    for (const l of snapshot.listeners.values()) {
      connectTimeouts.add(l.listener.timeouts.connect_ms);
      for (const t of l.pool?.targets ?? []) keys.add(Upstreams.key(t.upstream, l.listener.timeouts.connect_ms));
    }
    const pools = new Map(config.pools.map((p) => [p.pool_id, p]));
    for (const b of config.backends) {
      if (b.admin_status !== 'DRAINING' || b.drain?.close_idle_connections !== false) continue;
      const pool = pools.get(b.pool_id);
      if (!pool) continue;
      for (const ms of connectTimeouts) keys.add(Upstreams.key(upstreamSpec(pool, b), ms));
    }
    return keys;
  }

  /** A target's load changed: the balancer of the pool's current revision repositions it. */
  #loadChanged(pool: PoolRuntime, index: number): void {
    pool.balancer.update(index);
    // Live traffic may have just marked the backend OFFLINE (passive health).
    if (pool.shutdownOnDown) this.#shutdownIfDown(pool, index);
    const current = this.#snapshot.pools.get(pool.pool.pool_id);
    if (current === undefined || current === pool) return;
    const i = current.index.get(pool.targets[index]!.id);
    if (i !== undefined) current.balancer.update(i);
  }

  /**
   * Slow start changes weights with nothing else happening: while any target ramps, balancers
   * that order targets by weight are told every RAMP_TICK_MS, so a ramping backend's share grows
   * as its weight does.
   */
  #tickRamps(): void {
    const now = this.#now();
    let ramping = false;
    for (const pool of this.#snapshot.pools.values()) {
      pool.targets.forEach((t, i) => {
        if (t.plan.rampMs === 0) return;
        const since = healthySince(t.plan, t.record, now);
        if (since === null || now - since > t.plan.rampMs + RAMP_TICK_MS) return;
        ramping = true;
        pool.balancer.update(i);
      });
    }
    if (!ramping) {
      clearInterval(this.#rampTimer);
      this.#rampTimer = undefined;
    }
  }

  #watchRamps(): void {
    const any = [...this.#snapshot.pools.values()].some((p) => p.targets.some((t) => t.plan.rampMs > 0));
    if (any && this.#rampTimer === undefined) {
      this.#rampTimer = setInterval(() => this.#tickRamps(), RAMP_TICK_MS);
      this.#rampTimer.unref();
    }
  }

  *#backendConnections(): Iterable<{ pool: string; backend: string; active: number }> {
    for (const b of this.#snapshot.backends.values()) yield { pool: b.poolId, backend: b.record.id, active: b.record.active };
  }

  async reconcile(listeners: Listener[]): Promise<void> {
    this.#desired = new Map(listeners.map((l) => [l.listener_id, l]));
    const wanted = listeners.filter(servable);
    const wantedIds = new Set(wanted.map((l) => l.listener_id));

    for (const [id, bound] of this.#bound) {
      if (!wantedIds.has(id)) {
        this.#bound.delete(id);
        this.#retire(bound);
        this.#log.info({ listener_id: id }, 'listener unbound');
      }
    }
    for (const id of this.#errors.keys()) if (!wantedIds.has(id)) this.#errors.delete(id);

    for (const listener of wanted) {
      const runtime = this.#snapshot.listeners.get(listener.listener_id)!;
      const current = this.#bound.get(listener.listener_id);
      let tls: ListenerTlsRuntime | undefined;
      if (listener.protocol === 'HTTPS') {
        const compiled = this.#tls.get(listener.listener_id);
        if (!compiled || compiled instanceof Error) {
          // A listener whose certificates cannot be served: it says why; one already serving keeps its last good TLS.
          const reason = compiled?.message ?? 'no TLS configuration';
          this.#errors.set(listener.listener_id, reason);
          this.#log.error({ listener_id: listener.listener_id, reason }, 'listener TLS unusable');
          if (current) current.runtime = runtime;
          continue;
        }
        tls = compiled;
      }
      if (current && current.key === bindKey(listener)) {
        // Same socket, new settings: requests already running keep the runtime they started with;
        // new handshakes see the new TLS, connections already open keep what they negotiated.
        current.listener = listener;
        current.runtime = runtime;
        if (tls && current.tls) {
          current.handle.applyTls?.(tls, current.tls);
          current.tls = tls;
        }
        this.#errors.delete(listener.listener_id);
        this.#applySettings(current);
        continue;
      }
      const next = this.#newServer(listener, runtime, tls);
      try {
        await next.handle.listen(listener.bind_address, listener.port);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        this.#errors.set(listener.listener_id, `cannot bind ${listener.bind_address}:${listener.port}: ${e.code ?? e.message}`);
        this.#log.error({ listener_id: listener.listener_id, err: e.message }, 'listener bind failed');
        continue;
      }
      this.#errors.delete(listener.listener_id);
      this.#bound.set(listener.listener_id, next);
      this.#log.info({ listener_id: listener.listener_id, protocol: listener.protocol, address: listener.bind_address, port: listener.port }, 'listener bound');
      if (current) this.#retire(current);
    }
  }

  /**
   * Stops accepting on an old socket at once (so its port is free for whoever binds it next) and
   * lets its in-flight requests finish in the background: a busy listener never holds up the
   * next configuration change.
   */
  #retire(bound: Bound): void {
    bound.closing = true;
    this.#retiring.set(
      bound,
      bound.handle.close().finally(() => this.#retiring.delete(bound)),
    );
  }

  /** Admission of a new connection from `ip`: the access list, then the throttle. */
  #admit(bound: Bound, ip: string): Admission {
    const acl = bound.runtime.accessList;
    if (acl !== null && !acl.allows(ip)) return { ok: false, reason: 'access_list' };
    const throttle = this.#throttles.get(bound.listener.listener_id);
    if (throttle === undefined) return ADMITTED;
    return throttle.admit(ip);
  }

  /** The accept-time hooks of a listener: its policy as it stands, refusals, accounting and logging. */
  #front(bound: Bound): FrontHooks {
    return {
      now: this.#now,
      policy: () => ({
        proxyFrom: bound.runtime.proxyFrom,
        clientMs: bound.listener.timeouts.client_ms,
        admit: (ip) => this.#admit(bound, ip),
      }),
      refused: (_socket, reason) => this.metrics.refused(bound.metrics, reason),
      opened: () => bound.metrics.connections.inc(),
      closed: (socket, facts) => {
        bound.metrics.connections.dec();
        const logging = bound.listener.connection_logging;
        if (!logging?.enabled) return;
        this.#connectionLog.write(logging, {
          started: facts.startedAt,
          ended: this.#now(),
          listener: bound.listener.listener_id,
          protocol: bound.listener.protocol,
          client: facts.clientIp,
          clientPort: facts.clientPort,
          backends: facts.backends,
          ...connectionBytes(socket, facts),
          end: facts.end ?? (bound.closing ? 'listener_closed' : 'closed'),
        });
      },
    };
  }

  #newServer(listener: Listener, runtime: ListenerRuntime, tls: ListenerTlsRuntime | undefined): Bound {
    const bound = {
      listener,
      runtime,
      key: bindKey(listener),
      closing: false,
      metrics: this.metrics.listener(listener.listener_id),
      tls,
    } as Bound;
    const front = this.#front(bound);
    if (listener.protocol === 'TLS_PASSTHROUGH') {
      bound.handle = tcpServer(front, (socket) => passthrough(this.#proxy, bound, socket));
      this.#applySettings(bound);
      return bound;
    }
    if (listener.protocol === 'UDP') {
      bound.handle = udpServer(this.#proxy, bound, {
        admit: (ip) => this.#admit(bound, ip),
        refused: (reason) => this.metrics.refused(bound.metrics, reason),
        ended: (s) => {
          const logging = bound.listener.connection_logging;
          if (!logging?.enabled) return;
          this.#connectionLog.write(logging, {
            started: s.startedAt,
            ended: this.#now(),
            listener: bound.listener.listener_id,
            protocol: 'UDP',
            client: s.clientIp,
            clientPort: s.clientPort,
            backends: [s.backend],
            bytesIn: s.bytesIn,
            bytesOut: s.bytesOut,
            end: s.end,
          });
        },
      });
      this.#applySettings(bound);
      return bound;
    }
    if (listener.protocol === 'TCP') {
      bound.handle = tcpServer(front, (socket) => {
        const pool = bound.runtime.pool;
        if (pool === null) refuseL4(this.#proxy, bound, socket, 'no_pool');
        else relay(this.#proxy, bound, pool, socket, peerAddress(socket), EMPTY);
      });
      this.#applySettings(bound);
      return bound;
    }
    const handlers: TlsHandlers = {
      request: (req, res) => forward(this.#proxy, bound, req, res),
      upgrade: (req: IncomingMessage, socket: Socket, head: Buffer) => tunnel(this.#proxy, bound, req, socket, head),
      connect: (socket: Socket) => refuseConnect(socket),
      clientError: (err: NodeJS.ErrnoException, socket: Socket) => this.#clientError(bound, err, socket),
      handshake: (socket: TLSSocket) => this.metrics.handshake(bound.metrics, socket.getProtocol() ?? 'unknown'),
      handshakeError: (err: Error, socket: Socket) => {
        bound.metrics.handshakeErrors.inc();
        this.#log.debug({ listener_id: bound.listener.listener_id, client: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
      },
    };
    bound.handle = tls
      ? httpsServer(front, tls, () => bound.tls!, () => bound.listener.timeouts.idle_ms, handlers)
      : httpServer(front, handlers);
    this.#applySettings(bound);
    return bound;
  }

  /**
   * A request node:http's strict parser refused (smuggling attempts, malformed framing, oversized
   * heads) or that timed out: answered here, never forwarded, and the connection closed.
   */
  #clientError(bound: Bound, err: NodeJS.ErrnoException & { reason?: string }, socket: Socket): void {
    // A response already under way cannot take another head: the connection is cut instead, and
    // the request in flight counts itself when it sees the close.
    if (!socket.writable || err.code === 'ECONNRESET' || responseStarted(socket)) {
      socket.destroy();
      return;
    }
    socket.on('error', () => socket.destroy()); // the answer below may meet a reset
    const inFlight = hasRequestInFlight(socket);
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const status = timedOut ? 408 : 400;
    const id = requestId(undefined);
    // llhttp's reason names the fault ("Duplicate Content-Length", "Invalid character in chunk size" …).
    const reason = timedOut ? 'the request was not received in time' : `malformed request: ${err.reason ?? err.code ?? err.message}`;
    const body = `${status} ${timedOut ? 'Request Timeout' : 'Bad Request'}: ${reason} (request id ${id})\n`;
    socket.end(
      `HTTP/1.1 ${status} ${timedOut ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${id}\r\nconnection: close\r\n\r\n${body}`,
    );
    if (!inFlight) this.metrics.request(bound.metrics, 'none', 'none', status, 0);
  }

  #applySettings(bound: Bound): void {
    const t = bound.listener.timeouts;
    bound.handle.setConnectionLimit(bound.listener.connection_limit ?? Infinity);
    // node:http reads these from the server for each HTTP/1.x connection and request (the HTTPS
    // server's HTTP/1.1 side included).
    if (bound.handle.http) Object.assign(bound.handle.http, { requestTimeout: t.client_ms, headersTimeout: Math.min(t.client_ms, 60_000), keepAliveTimeout: t.idle_ms });
  }

  async probeBind(protocol: string, address: string, port: number): Promise<void> {
    if (protocol === 'UDP') {
      const probe = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4' });
      await new Promise<void>((resolve, reject) => {
        probe.once('error', reject);
        probe.bind({ address, port, exclusive: true }, () => resolve());
      });
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      return;
    }
    const probe = createNetServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host: address, port, exclusive: true }, () => resolve());
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }

  listenerStatus(listenerId: string): Status {
    const listener = this.#desired.get(listenerId);
    if (this.#bound.has(listenerId)) return { status: 'ACTIVE', message: null };
    const error = this.#errors.get(listenerId);
    if (error !== undefined) return { status: 'ERROR', message: error };
    if (listener && !listener.enabled) return { status: 'DISABLED', message: null };
    return { status: 'PENDING', message: null };
  }

  /** For `/ready`: every enabled listener of the applied revision is bound. */
  readiness(): { ready: boolean; bound: number; expected: number; failing: { listener_id: string; reason: string }[] } {
    const expected = [...this.#desired.values()].filter(servable).length;
    return {
      ready: this.#snapshot.revision >= 0 && this.#bound.size === expected,
      bound: this.#bound.size,
      expected,
      failing: [...this.#errors].map(([listener_id, reason]) => ({ listener_id, reason })),
    };
  }

  /** Graceful stop: stop accepting now, wait for in-flight requests until the deadline, then cut. */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopped = true;
    this.#drains.stop();
    this.#health.stop();
    clearInterval(this.#rampTimer);
    const bound = [...this.#bound.values()];
    this.#bound.clear();
    for (const b of bound) b.closing = true;
    const all = Promise.all([...bound.map((b) => b.handle.close()), ...this.#retiring.values()]);
    const every = [...bound, ...this.#retiring.keys()];
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const outcome = await Promise.race([all.then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      for (const b of every) b.handle.cut();
      // Relayed connections are the workers' to cut; the servers' close waits for them too.
      await this.#relayWorkers.stop(0);
      await all;
    } else await this.#relayWorkers.stop(0);
    await this.#upstreams.close();
  }
}
