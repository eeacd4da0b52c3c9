/**
 * Prometheus metrics counted from real traffic. Label children are looked up once per label set
 * and cached, so counting a request costs a few map reads, not prom-client's label hashing.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface MetricsSources {
  /** Current active connections per backend, read at scrape time. */
  backendConnections(): Iterable<{ pool: string; backend: string; active: number }>;
  /** The configuration revision the data plane runs. */
  configVersion(): number;
  /** Each enabled circuit breaker's state. */
  breakers(): Iterable<{ pool: string; state: 'CLOSED' | 'OPEN' | 'HALF_OPEN' }>;
}

const BREAKER_VALUE = { CLOSED: 0, HALF_OPEN: 1, OPEN: 2 } as const;

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;
type GaugeChild = ReturnType<Gauge<string>['labels']>;

/** Per listener: the children every request of that listener touches. */
export interface ListenerMetrics {
  readonly listenerId: string;
  readonly duration: HistogramChild;
  readonly connections: GaugeChild;
  readonly bytesIn: CounterChild;
  readonly bytesOut: CounterChild;
  /** `pool|backend|code` → requests counter child. */
  readonly requests: Map<string, CounterChild>;
  /** TLS version → handshakes counter child. */
  readonly handshakes: Map<string, CounterChild>;
  readonly handshakeErrors: CounterChild;
  /** `pool|backend|result` → layer 4 connections counter child. */
  readonly tcp: Map<string, CounterChild>;
}

/** The counters a UDP listener touches per datagram. */
export interface UdpDatagramCounters {
  readonly in: CounterChild;
  readonly out: CounterChild;
  readonly droppedIn: CounterChild;
  readonly droppedOut: CounterChild;
}

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #connections: Gauge<string>;
  readonly #bytesIn: Counter<string>;
  readonly #bytesOut: Counter<string>;
  readonly #handshakes: Counter<string>;
  readonly #handshakeErrors: Counter<string>;
  readonly #tcp: Counter<string>;
  readonly #refused: Counter<string>;
  readonly #listeners = new Map<string, ListenerMetrics>();
  readonly #udpSessions: Counter<string>;
  readonly #udpDatagrams: Counter<string>;
  readonly #udpDropped: Counter<string>;
  /** `listener|pool|backend|result` → UDP sessions counter child (sessions end far less often than datagrams pass). */
  readonly #udpSessionChildren = new Map<string, CounterChild>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'fulcrum_requests_total',
      help: 'HTTP requests answered, by listener, pool, backend (none when Fulcrum answered itself) and status code',
      labelNames: ['listener', 'pool', 'backend', 'code'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'fulcrum_request_duration_seconds',
      help: 'Time from a request arriving to its response ending',
      labelNames: ['listener'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#connections = new Gauge({
      name: 'fulcrum_connections_active',
      help: 'Client connections open on a listener',
      labelNames: ['listener'],
      registers,
    });
    this.#bytesIn = new Counter({ name: 'fulcrum_bytes_in_total', help: 'Bytes received from clients', labelNames: ['listener'], registers });
    this.#bytesOut = new Counter({ name: 'fulcrum_bytes_out_total', help: 'Bytes sent to clients', labelNames: ['listener'], registers });
    this.#handshakes = new Counter({
      name: 'fulcrum_tls_handshakes_total',
      help: 'TLS handshakes completed by a listener, by protocol version',
      labelNames: ['listener', 'version'],
      registers,
    });
    this.#handshakeErrors = new Counter({
      name: 'fulcrum_tls_handshake_errors_total',
      help: 'TLS handshakes a listener refused or that failed (bad client certificate, no common protocol or cipher, not TLS)',
      labelNames: ['listener'],
      registers,
    });
    this.#tcp = new Counter({
      name: 'fulcrum_tcp_connections_total',
      help: 'Connections a layer 4 listener (TLS passthrough) handled, by pool, backend and result',
      labelNames: ['listener', 'pool', 'backend', 'result'],
      registers,
    });
    this.#refused = new Counter({
      name: 'fulcrum_connections_refused_total',
      help: 'Connections a listener refused when accepting them, by reason (access_list, max_connections, max_connection_rate, proxy_untrusted, proxy_invalid, proxy_timeout)',
      labelNames: ['listener', 'reason'],
      registers,
    });
    this.#udpSessions = new Counter({
      name: 'fulcrum_udp_sessions_total',
      help: 'UDP sessions a listener ended (ended_idle, backend_error, terminated, closed) or could not open (no_backend, table_full), by pool and backend (none when not opened)',
      labelNames: ['listener', 'pool', 'backend', 'result'],
      registers,
    });
    this.#udpDatagrams = new Counter({
      name: 'fulcrum_udp_datagrams_total',
      help: 'Datagrams a UDP listener received from clients (in) and sent back to them (out)',
      labelNames: ['listener', 'direction'],
      registers,
    });
    this.#udpDropped = new Counter({
      name: 'fulcrum_udp_datagrams_dropped_total',
      help: 'Datagrams of open UDP sessions dropped because the socket toward their destination had too many queued: to backends (in) or to clients (out)',
      labelNames: ['listener', 'direction'],
      registers,
    });
    new Gauge({
      name: 'fulcrum_backend_active_connections',
      help: 'Requests in flight and tunnels open to a backend',
      labelNames: ['pool', 'backend'],
      registers,
      collect() {
        this.reset();
        for (const b of sources.backendConnections()) this.set({ pool: b.pool, backend: b.backend }, b.active);
      },
    });
    new Gauge({
      name: 'fulcrum_circuit_breaker_state',
      help: 'Circuit breaker state per pool: 0 closed, 1 half-open, 2 open',
      labelNames: ['pool'],
      registers,
      collect() {
        this.reset();
        for (const b of sources.breakers()) this.set({ pool: b.pool }, BREAKER_VALUE[b.state]);
      },
    });
    new Gauge({
      name: 'fulcrum_config_version',
      help: 'Configuration revision the data plane runs',
      registers,
      collect() {
        this.set(sources.configVersion());
      },
    });
  }

  listener(listenerId: string): ListenerMetrics {
    let m = this.#listeners.get(listenerId);
    if (!m) {
      m = {
        listenerId,
        duration: this.#duration.labels(listenerId),
        connections: this.#connections.labels(listenerId),
        bytesIn: this.#bytesIn.labels(listenerId),
        bytesOut: this.#bytesOut.labels(listenerId),
        requests: new Map(),
        handshakes: new Map(),
        handshakeErrors: this.#handshakeErrors.labels(listenerId),
        tcp: new Map(),
      };
      this.#listeners.set(listenerId, m);
    }
    return m;
  }

  request(m: ListenerMetrics, pool: string, backend: string, code: number, seconds: number): void {
    const key = `${pool}|${backend}|${code}`;
    let child = m.requests.get(key);
    if (!child) {
      child = this.#requests.labels(m.listenerId, pool, backend, String(code));
      m.requests.set(key, child);
    }
    child.inc();
    m.duration.observe(seconds);
  }

  handshake(m: ListenerMetrics, version: string): void {
    let child = m.handshakes.get(version);
    if (!child) {
      child = this.#handshakes.labels(m.listenerId, version);
      m.handshakes.set(version, child);
    }
    child.inc();
  }

  refused(m: ListenerMetrics, reason: string): void {
    this.#refused.labels(m.listenerId, reason).inc();
  }

  /** One layer 4 connection's end: `result` is forwarded, or why it was not. */
  tcpConnection(m: ListenerMetrics, pool: string, backend: string, result: string): void {
    const key = `${pool}|${backend}|${result}`;
    let child = m.tcp.get(key);
    if (!child) {
      child = this.#tcp.labels(m.listenerId, pool, backend, result);
      m.tcp.set(key, child);
    }
    child.inc();
  }

  /** One UDP session's end, or a session not opened (`backend` none): `result` says which. */
  udpSession(m: ListenerMetrics, pool: string, backend: string, result: string): void {
    const key = `${m.listenerId}|${pool}|${backend}|${result}`;
    let child = this.#udpSessionChildren.get(key);
    if (!child) {
      child = this.#udpSessions.labels(m.listenerId, pool, backend, result);
      this.#udpSessionChildren.set(key, child);
    }
    child.inc();
  }

  /** A UDP listener's per-datagram counters, looked up once when its server is made. */
  udpDatagrams(m: ListenerMetrics): UdpDatagramCounters {
    return {
      in: this.#udpDatagrams.labels(m.listenerId, 'in'),
      out: this.#udpDatagrams.labels(m.listenerId, 'out'),
      droppedIn: this.#udpDropped.labels(m.listenerId, 'in'),
      droppedOut: this.#udpDropped.labels(m.listenerId, 'out'),
    };
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
