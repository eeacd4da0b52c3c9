/**
 * UDP listeners. UDP has no connections, so the listener makes its own: a **session** per client
 * address and port, opened by the first datagram from that pair, and ended after `idle_ms` without
 * a datagram either way (DESIGN.md §3: "a session table keyed by client address with idle expiry").
 *
 * Opening a session: the accept-time policy (access list, throttle) decides on the client's address,
 * then the pool's balancer picks a backend, exactly as for a TCP connection. A refused datagram is
 * dropped and counted; the pair is asked again on its next datagram. The session then lives with
 * that backend to its end, whatever later revisions say: a new revision only shapes new sessions.
 *
 * Why a socket per session: every datagram from the client goes to the backend from the session's
 * own socket, connected to the backend, and every datagram that socket receives goes back to the
 * client from the listener's socket. So a reply maps to its client by the socket it arrives on
 * (no guessing from payloads, and the kernel drops datagrams from anyone but that backend), and
 * an ICMP port unreachable reaches us: Linux reports it only on a connected socket, as
 * ECONNREFUSED, which ends the session and counts against the backend (passive health); the
 * client's next datagram opens a new session with a new pick.
 *
 * Like a TCP connection, a session holds a slot on its backend (`record.connections`) until it
 * ends, so least-connections balancing, `max_connections`, drains and removals see it: a drain
 * that times out, a removed backend or one marked down ends its sessions (`terminate`).
 *
 * Costs and bounds:
 * - A session costs a socket: a file descriptor and an ephemeral port. The table holds at most
 *   `connection_limit` sessions, and never more than MAX_SESSIONS; a new pair beyond that is
 *   dropped (`table_full`). The OS may bound it earlier (ports in `ip_local_port_range`, the
 *   descriptor limit): a session whose socket cannot be bound ends at once, also as `table_full`.
 * - Per datagram: one map lookup by address and port, one send; no timer. Expiry is one sweep
 *   per listener, every min(idle_ms, 1 s) while it has sessions, O(sessions) each time; a session
 *   ends between `idle_ms` and `idle_ms` plus one sweep after its last datagram. The sweep reads the
 *   listener's `idle_ms` as it stands, so shortening it also expires sessions already open (the
 *   table is the listener's, and that is how an operator frees a full one).
 * - UDP has no backpressure: a datagram the kernel will not take at once waits in the socket's
 *   send queue; past MAX_SEND_QUEUE waiting there (or MAX_PENDING while a session's socket is
 *   still connecting) more are dropped and counted, as a router would.
 *
 * `close()` has no graceful part: UDP has no way to tell a peer that a session is over, and a
 * client's next datagram would open a session anyway. It stops receiving and ends every session
 * at once (`closed`); `cut()` is the same.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { countsAsPassiveFailure, passiveOutcome } from '../../health/passive.ts';
import type { Metrics, ListenerMetrics, UdpDatagramCounters } from '../../observability/metrics.ts';
import type { BackendTarget, ListenerRuntime, PoolRuntime } from '../../snapshot/snapshot.ts';
import type { Admission, Refusal } from '../accept.ts';
import { clientAddress } from '../http/headers.ts';
import { pickTarget } from '../http/pick.ts';
import type { ListenerServer } from '../servers.ts';

export interface UdpDeps {
  metrics: Metrics;
  now(): number;
  loadChanged(pool: PoolRuntime, index: number): void;
}

/** The listener as it stands (read per datagram: a new revision applies to new sessions). */
export interface UdpView {
  readonly runtime: ListenerRuntime;
  readonly metrics: ListenerMetrics;
}

/** Accept-time policy for a new session (a client address and port not seen yet). */
export interface UdpFront {
  admit(clientIp: string): Admission;
  refused(reason: Refusal): void;
  /** A session ended (for connection logging). */
  ended?(session: EndedSession): void;
}

/** What connection logging says of a UDP session. */
export interface EndedSession {
  clientIp: string;
  clientPort: number;
  backend: string;
  /** ms since epoch */
  startedAt: number;
  bytesIn: number;
  bytesOut: number;
  end: string;
}

/** Sessions one listener holds at most, whatever its connection_limit (each holds a port and a descriptor). */
export const MAX_SESSIONS = 65_536;
/** The idle sweep runs at least this often (every idle_ms when that is shorter). */
const SWEEP_MAX_MS = 1_000;
/** Datagrams a session keeps while its socket connects (a lookup, for a backend given by name). */
const MAX_PENDING = 64;
/** Datagrams waiting in a socket's send queue before more toward that peer are dropped. */
const MAX_SEND_QUEUE = 256;

/**
 * The listener socket's receive buffer: every client's datagrams wait there while the event loop is
 * busy, and the default (~208 KiB, about 250 small datagrams) overflows on a burst. The kernel caps
 * it at net.core.rmem_max.
 */
const LISTENER_RECV_BUFFER = 4 * 1024 * 1024;

/** Layer 4 has no request to hash but the client's address. */
const NO_HEADERS = { headers: {} };

/** How a session ended, or why none was opened: the `result` of fulcrum_udp_sessions_total. */
type SessionEnd = 'ended_idle' | 'backend_error' | 'terminated' | 'closed' | 'table_full';

/** One client address and port, joined to one backend for its whole life. */
interface Session {
  readonly key: string;
  /** Where replies go: the client's address as received (IPv4-mapped on a dual-stack socket) and port. */
  readonly address: string;
  readonly port: number;
  readonly pool: PoolRuntime;
  readonly index: number;
  readonly target: BackendTarget;
  readonly socket: Socket;
  readonly release: () => void;
  /** Held in the backend's `connections`: ends the session (drain timed out, backend removed). */
  readonly terminate: () => void;
  /** The socket's send callback (one per session, not one per datagram). */
  readonly sent: (err: Error | null) => void;
  /** performance.now() of its first datagram, and of the latest either way. */
  readonly started: number;
  lastSeen: number;
  /** Datagrams from the client while the socket connects; null once connected. */
  pending: Buffer[] | null;
  answered: boolean;
  ended: boolean;
  /** Bytes from and to the client, and when it began (ms since epoch), for its log line. */
  bytesIn: number;
  bytesOut: number;
  readonly startedAt: number;
}

class UdpListener implements ListenerServer {
  readonly #deps: UdpDeps;
  readonly #view: UdpView;
  readonly #front: UdpFront;
  readonly #counters: UdpDatagramCounters;
  /** `address|port` of the client → its session. */
  readonly #sessions = new Map<string, Session>();
  #socket: Socket | undefined;
  #limit = MAX_SESSIONS;
  #sweep: NodeJS.Timeout | undefined;
  #sweepMs = 0;
  #closing: Promise<void> | undefined;

  constructor(deps: UdpDeps, view: UdpView, front: UdpFront) {
    this.#deps = deps;
    this.#view = view;
    this.#front = front;
    this.#counters = deps.metrics.udpDatagrams(view.metrics);
  }

  listen(host: string, port: number): Promise<void> {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: LISTENER_RECV_BUFFER });
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        socket.close();
        reject(err);
      };
      socket.once('error', onError);
      socket.bind({ address: host, port, exclusive: true }, () => {
        socket.off('error', onError);
        // After binding, an error here is one datagram's (a reply that could not be sent): never fatal.
        socket.on('error', () => {});
        socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#receive(msg, rinfo));
        this.#socket = socket;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  cut(): void {
    // close() already ends everything at once; there is nothing slower to cut short.
    void this.close();
  }

  setConnectionLimit(limit: number): void {
    // Sessions already open beyond a lowered limit stay until they end, as connections do on TCP.
    this.#limit = Math.min(limit, MAX_SESSIONS);
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    for (const s of this.#sessions.values()) this.#end(s, 'closed');
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  /** A datagram from a client: to its session's backend, opening the session first if need be. */
  #receive(msg: Buffer, rinfo: RemoteInfo): void {
    this.#counters.in.inc();
    this.#view.metrics.bytesIn.inc(msg.length);
    const key = `${rinfo.address}|${rinfo.port}`;
    const session = this.#sessions.get(key) ?? this.#open(key, rinfo);
    if (session === undefined) return;
    session.lastSeen = performance.now();
    session.bytesIn += msg.length;
    if (session.pending !== null) {
      if (session.pending.length < MAX_PENDING) session.pending.push(msg);
      else this.#counters.droppedIn.inc();
      return;
    }
    if (session.socket.getSendQueueCount() >= MAX_SEND_QUEUE) {
      this.#counters.droppedIn.inc();
      return;
    }
    session.socket.send(msg, session.sent);
  }

  /** A new client address and port: a session, or undefined when the datagram is dropped (counted). */
  #open(key: string, rinfo: RemoteInfo): Session | undefined {
    const pool = this.#view.runtime.pool;
    // The bound first: a full table refuses without spending the client's throttle allowance.
    if (this.#sessions.size >= this.#limit) {
      this.#deps.metrics.udpSession(this.#view.metrics, pool?.pool.pool_id ?? 'none', 'none', 'table_full');
      return undefined;
    }
    const clientIp = clientAddress(rinfo.address);
    const admission = this.#front.admit(clientIp);
    if (!admission.ok) {
      this.#front.refused(admission.reason);
      return undefined;
    }
    const index = pool === null ? -1 : pickTarget(pool, NO_HEADERS, clientIp);
    if (pool === null || index < 0) {
      admission.release();
      this.#deps.metrics.udpSession(this.#view.metrics, pool?.pool.pool_id ?? 'none', 'none', 'no_backend');
      return undefined;
    }
    const target = pool.targets[index]!;
    const { host, port } = target.upstream;
    // A backend given by name is looked up as IPv4 (a udp4 socket resolves A records).
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    const now = performance.now();
    const session: Session = {
      key,
      address: rinfo.address,
      port: rinfo.port,
      pool,
      index,
      target,
      socket,
      release: admission.release,
      terminate: () => this.#end(session, 'terminated'),
      sent: (err) => {
        if (err) this.#failed(session, err as NodeJS.ErrnoException);
      },
      started: now,
      lastSeen: now,
      pending: [],
      answered: false,
      bytesIn: 0,
      bytesOut: 0,
      startedAt: this.#deps.now(),
      ended: false,
    };
    this.#sessions.set(key, session);
    target.record.connections.add(session.terminate);
    this.#deps.loadChanged(pool, index);
    this.#view.metrics.connections.inc();
    socket.on('message', (reply: Buffer) => this.#reply(session, reply));
    // ECONNREFUSED (ICMP port unreachable) arrives here from a receive; a failed implicit bind too.
    socket.on('error', (err: NodeJS.ErrnoException) => this.#failed(session, err));
    socket.connect(port, host, (err?: Error) => {
      if (err) return this.#failed(session, err as NodeJS.ErrnoException);
      if (session.ended) return;
      const pending = session.pending!;
      session.pending = null;
      for (const msg of pending) socket.send(msg, session.sent);
    });
    this.#watchIdle();
    return session;
  }

  /** A datagram from a session's backend: back to its client, from the listener's own address. */
  #reply(session: Session, msg: Buffer): void {
    const listener = this.#socket;
    if (session.ended || listener === undefined) return;
    const now = performance.now();
    session.lastSeen = now;
    if (!session.answered) {
      session.answered = true;
      const { record } = session.target;
      // The first answer is what a handshake is to TCP: the backend is alive, and how long it took
      // is what LEAST_RESPONSE_TIME sees (for request/response protocols such as DNS, a response time).
      record.observe(this.#deps.now(), now - session.started, false);
      if (session.pool.passive) passiveOutcome(record, false, '', this.#deps.now());
    }
    if (listener.getSendQueueCount() >= MAX_SEND_QUEUE) {
      this.#counters.droppedOut.inc();
      return;
    }
    listener.send(msg, session.port, session.address);
    session.bytesOut += msg.length;
    this.#counters.out.inc();
    this.#view.metrics.bytesOut.inc(msg.length);
  }

  /**
   * The session's socket failed. Its own bind (no free port or descriptor) is a full table; anything
   * else is the backend's (ECONNREFUSED: nothing listens on its port), counted by passive health.
   */
  #failed(session: Session, err: NodeJS.ErrnoException): void {
    if (session.ended) return;
    if (err.syscall === 'bind') {
      this.#end(session, 'table_full');
      return;
    }
    const code = err.code ?? err.message;
    const { pool, index, target } = session;
    // Ended first, so a backend this failure marks down is not told to cut it again.
    this.#end(session, 'backend_error');
    target.record.observe(this.#deps.now(), performance.now() - session.started, true);
    if (pool.passive && countsAsPassiveFailure(code) && passiveOutcome(target.record, true, code, this.#deps.now())) this.#deps.loadChanged(pool, index);
  }

  /** Ends a session once: its slot, its admission and its socket are given back, and it is counted. */
  #end(session: Session, result: SessionEnd): void {
    if (session.ended) return;
    session.ended = true;
    session.pending = null;
    if (this.#sessions.get(session.key) === session) this.#sessions.delete(session.key);
    if (session.target.record.connections.delete(session.terminate)) this.#deps.loadChanged(session.pool, session.index);
    session.socket.close();
    session.release();
    this.#view.metrics.connections.dec();
    this.#deps.metrics.udpSession(this.#view.metrics, session.pool.pool.pool_id, session.target.id, result);
    this.#front.ended?.({
      clientIp: clientAddress(session.address),
      clientPort: session.port,
      backend: session.target.id,
      startedAt: session.startedAt,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      end: result,
    });
  }

  /** Keeps one sweep running while there are sessions, at the period the current idle_ms asks for. */
  #watchIdle(): void {
    const every = Math.min(this.#view.runtime.listener.timeouts.idle_ms, SWEEP_MAX_MS);
    if (this.#sweep !== undefined && this.#sweepMs === every) return;
    clearInterval(this.#sweep);
    this.#sweepMs = every;
    this.#sweep = setInterval(() => this.#expire(), every);
    // Sessions never keep the process alive: stopping closes them.
    this.#sweep.unref();
  }

  #expire(): void {
    const cutoff = performance.now() - this.#view.runtime.listener.timeouts.idle_ms;
    for (const s of this.#sessions.values()) if (s.lastSeen <= cutoff) this.#end(s, 'ended_idle');
    if (this.#sessions.size > 0) {
      this.#watchIdle();
      return;
    }
    clearInterval(this.#sweep);
    this.#sweep = undefined;
  }
}

export function udpServer(deps: UdpDeps, view: UdpView, front: UdpFront): ListenerServer {
  return new UdpListener(deps, view, front);
}
