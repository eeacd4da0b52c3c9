/**
 * What happens to every TCP connection a listener accepts, before any protocol reads a byte of it:
 *
 * 1. PROXY protocol (when the listener accepts it): only peers in `trusted_cidrs` may connect, and
 *    they must send a header within `client_ms`; the address it carries becomes the client's.
 * 2. Admission: the access list and the connection throttle decide on the client's address. A
 *    refused connection is closed (or, on HTTP listeners over the throttle, answered 503).
 * 3. Hand-off to the protocol (HTTP, HTTPS, a TCP relay, TLS passthrough).
 *
 * The client's address and the connection's log record are kept against the raw socket, and read
 * through a TLS socket via its `_parent` (node's TLS socket over an accepted connection).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { clientAddress } from './http/headers.ts';
import { parseProxyHeader, proxyHeaderV1, proxyHeaderV2 } from './proxy-protocol.ts';

/** Why a connection was not let in. */
export type Refusal = 'access_list' | 'max_connections' | 'max_connection_rate' | 'proxy_untrusted' | 'proxy_invalid' | 'proxy_timeout';

export type Admission = { ok: true; release(): void } | { ok: false; reason: Refusal };

/** The listener's accept-time policy as it stands (read once per connection). */
export interface AcceptPolicy {
  /** PROXY protocol from clients: the trusted peers; null when the listener does not accept it. */
  proxyFrom: { contains(ip: string): boolean } | null;
  /** How long a PROXY header may take. */
  clientMs: number;
  admit(clientIp: string): Admission;
}

/** Facts of one client connection, for its log line and for everything that needs its client. */
export interface ConnectionFacts {
  readonly startedAt: number;
  /** The client's address and port: the socket's peer, or what a PROXY header carried. */
  clientIp: string;
  clientPort: number;
  /** Backends the connection was forwarded to (a keep-alive HTTP connection may use several). */
  backends: string[];
  /** How it ended, when something decided that (the first reason given wins). */
  end: string | undefined;
  /** Why it was not admitted; set on HTTPS connections that are let in only to be answered 503. */
  refused: Refusal | undefined;
  /** Moved to another process: its close here is not its end (see `detach`). */
  detached?: { bytesIn: number; bytesOut: number; ended: boolean };
}

const facts = new WeakMap<Socket, ConnectionFacts>();

/** The raw accepted socket under a TLS socket (or the socket itself). */
function rawOf(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket | null })._parent ?? socket;
}

/** The facts of the connection a socket (raw, TLS, or an HTTP/2 session's view of it) belongs to. */
export function connectionFacts(socket: Socket | null | undefined): ConnectionFacts | undefined {
  if (!socket) return undefined;
  return facts.get(socket) ?? facts.get(rawOf(socket));
}

/** The client's address as Fulcrum uses it everywhere: a PROXY header's source, else the peer's (IPv4-mapped IPv6 as IPv4). */
export function peerAddress(socket: Socket | null | undefined): string {
  return connectionFacts(socket)?.clientIp ?? clientAddress(socket?.remoteAddress);
}

/**
 * The PROXY protocol header (RFC-less, HAProxy's spec) a backend connection opened for `client`
 * starts with: the client as Fulcrum sees it (a carried address included), and the address it
 * connected to. Null for NONE.
 */
export function proxyPreamble(version: 'NONE' | 'V1' | 'V2', client: Socket): Buffer | null {
  if (version === 'NONE') return null;
  const f = connectionFacts(client);
  const from = { address: f?.clientIp ?? clientAddress(client.remoteAddress), port: f?.clientPort ?? client.remotePort ?? 0 };
  const to = { address: clientAddress(client.localAddress), port: client.localPort ?? 0 };
  return version === 'V1' ? proxyHeaderV1(from, to) : proxyHeaderV2(from, to);
}

/**
 * The connection goes on in another process (a relay worker): this socket is handed over and will
 * not close here (node takes its handle away without a 'close'). Returns what to call when the
 * connection really ends, with the bytes moved there; the admission is released and the close
 * hooks run then, with both processes' bytes counted.
 */
export function detach(socket: Socket): (bytesIn: number, bytesOut: number, end: string) => void {
  const f = facts.get(socket);
  if (!f) return () => {};
  const d = { bytesIn: 0, bytesOut: 0, ended: false };
  f.detached = d;
  const here = { read: socket.bytesRead, written: socket.bytesWritten };
  return (bytesIn, bytesOut, end) => {
    d.bytesIn = here.read + bytesIn;
    d.bytesOut = here.written + bytesOut;
    noteEnd(socket, end);
    d.ended = true;
    finishers.get(socket)?.();
  };
}

/** Each accepted connection's close work (run once), by its raw socket. */
const finishers = new WeakMap<Socket, () => void>();

/** Bytes a connection moved, wherever it was relayed. */
export function connectionBytes(socket: Socket, f: ConnectionFacts): { bytesIn: number; bytesOut: number } {
  return f.detached ? { bytesIn: f.detached.bytesIn, bytesOut: f.detached.bytesOut } : { bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten };
}

/** Notes that a connection was forwarded to `backend` (for its log line). */
export function noteBackend(socket: Socket | null | undefined, backend: string): void {
  const f = connectionFacts(socket);
  if (f && f.backends.at(-1) !== backend) f.backends.push(backend);
}

/** Notes how a connection is ending, unless a reason was given already. */
export function noteEnd(socket: Socket | null | undefined, end: string): void {
  const f = connectionFacts(socket);
  if (f && f.end === undefined) f.end = end;
}

/** Longest PROXY v1 line is 107 bytes; a v2 header Fulcrum accepts is at most 16 + 2048. */
const PROXY_MAX_BYTES = 16 + 2048;

export interface AcceptHooks {
  policy(): AcceptPolicy;
  /** connection_limit: connections open at once, those relayed in workers included. */
  limit(): number;
  /** The connection is in: hand it to the protocol. */
  handoff(socket: Socket): void;
  /** The connection is refused: close it, or answer it as the protocol does. */
  refuse(socket: Socket, reason: Refusal): void;
  /** Every accepted connection, as it is accepted and once when it closes (logging, metrics). */
  opened?(socket: Socket): void;
  closed?(socket: Socket, facts: ConnectionFacts): void;
  now(): number;
}

export interface AcceptServer {
  readonly server: Server;
  /**
   * Resolves once no connection of this server is open any more — in this process or relayed in a
   * worker (net.Server's own count cannot see those once their sockets moved).
   */
  idle(): Promise<void>;
}

/** A TCP server whose accepted connections pass the listener's accept-time policy first. */
export function acceptServer(hooks: AcceptHooks, options: { allowHalfOpen?: boolean } = {}): AcceptServer {
  const server = createServer({ noDelay: true, keepAlive: true, allowHalfOpen: options.allowHalfOpen ?? false, pauseOnConnect: true });
  let live = 0;
  let whenIdle: (() => void) | undefined;
  server.on('connection', (socket: Socket) => {
    // The listener's connection_limit, over every connection it has open — some live on in relay
    // workers after this process let go of their sockets, so the server's own count would not do.
    if (live >= hooks.limit()) {
      socket.destroy();
      return;
    }
    live++;
    const f: ConnectionFacts = {
      startedAt: hooks.now(),
      clientIp: clientAddress(socket.remoteAddress),
      clientPort: socket.remotePort ?? 0,
      backends: [],
      end: undefined,
      refused: undefined,
    };
    facts.set(socket, f);
    hooks.opened?.(socket);
    socket.on('error', () => socket.destroy());
    let release: (() => void) | undefined;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (--live === 0) whenIdle?.();
      release?.();
      hooks.closed?.(socket, f);
    };
    finishers.set(socket, finish);
    // A connection relayed elsewhere ends when that process says so (see `detach`).
    socket.once('close', () => {
      if (!f.detached || f.detached.ended) finish();
    });
    const policy = hooks.policy();
    const admit = () => {
      const admission = policy.admit(f.clientIp);
      if (!admission.ok) {
        f.refused = admission.reason;
        noteEnd(socket, `refused_${admission.reason}`);
        hooks.refuse(socket, admission.reason);
        return;
      }
      release = admission.release;
      // Still paused: each protocol starts reading in its own way (a TLS server must take over
      // the socket's handle before anything is read from it).
      hooks.handoff(socket);
    };
    if (policy.proxyFrom === null) {
      admit();
      return;
    }
    if (!policy.proxyFrom.contains(f.clientIp)) {
      f.refused = 'proxy_untrusted';
      noteEnd(socket, 'refused_proxy_untrusted');
      hooks.refuse(socket, 'proxy_untrusted');
      return;
    }
    readProxyHeader(socket, policy.clientMs, (header) => {
      if (typeof header === 'string') {
        f.refused = header === 'timeout' ? 'proxy_timeout' : 'proxy_invalid';
        noteEnd(socket, `refused_${f.refused}`);
        hooks.refuse(socket, f.refused);
        return;
      }
      if (header !== null) {
        f.clientIp = clientAddress(header.address);
        f.clientPort = header.port;
      }
      admit();
    });
  });
  return {
    server,
    idle: () => (live === 0 ? Promise.resolve() : new Promise<void>((resolve) => (whenIdle = resolve))),
  };
}

/**
 * Reads a PROXY header off the start of a paused socket, then puts back what followed it and
 * pauses again. `done` gets the carried source (null for LOCAL: use the peer), or why it failed.
 */
function readProxyHeader(socket: Socket, timeoutMs: number, done: (r: { address: string; port: number } | null | 'timeout' | 'invalid') => void): void {
  let data: Buffer = Buffer.alloc(0);
  let finished = false;
  /** Stops reading first: an unshift on a flowing socket would emit the bytes again at once. */
  const finish = (r: { address: string; port: number } | null | 'timeout' | 'invalid', rest?: Buffer) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    done(r);
  };
  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  const onData = (chunk: Buffer) => {
    data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
    const h = parseProxyHeader(data);
    if (h.kind === 'need-more') {
      if (data.length > PROXY_MAX_BYTES) finish('invalid');
      return;
    }
    if (h.kind === 'invalid') return finish('invalid');
    const a = h.addresses;
    finish(a.kind === 'LOCAL' || a.sourceAddress === undefined ? null : { address: a.sourceAddress, port: a.sourcePort ?? 0 }, data.subarray(h.length));
  };
  socket.once('close', () => finish('invalid'));
  socket.on('data', onData);
  socket.resume();
}
