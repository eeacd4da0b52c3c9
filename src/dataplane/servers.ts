/**
 * The sockets a listener accepts on, one kind per protocol family, behind one small interface so
 * the manager can bind, retire and stop any of them alike. Every TCP-based kind listens through
 * the accept front (accept.ts: PROXY protocol, access list, throttle) and then hands the socket to:
 *
 * - `HTTP`: node:http.
 * - `HTTPS`: node:http2's secure server with HTTP/1.1 allowed: ALPN picks h2 or http/1.1 per
 *   connection, both arrive as 'request' events through one code path (the proxy). SNI, ALPN and
 *   client-certificate settings are read from the listener's current TLS runtime at each handshake,
 *   so a configuration change applies to new connections without rebinding, and connections
 *   already open keep what they negotiated.
 * - `TCP`, `TLS_PASSTHROUGH`: the layer 4 relay (directly, or after reading the ClientHello).
 *
 * The protocol servers never listen themselves: the front owns the port. node:http's connection
 * bookkeeping (request timeouts, idle keep-alive closing) starts on a server's 'listening' event,
 * so each is told once that it listens.
 */
import { createServer as createHttpServer, type IncomingMessage, Server as HttpServer, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { Server, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type AcceptHooks, acceptServer, type Refusal } from './accept.ts';
import { answerRaw } from './http/tunnel.ts';
import { requestId } from '../observability/request-id.ts';
import type { ListenerTlsRuntime } from './tls/listener-tls.ts';

/** HTTP/2 streams one client connection may have open at once (RFC 9113 §6.5.2). */
const MAX_CONCURRENT_STREAMS = 256;

export interface ListenerServer {
  /** Binds; rejects with the OS's error. */
  listen(host: string, port: number): Promise<void>;
  /** Stops accepting; resolves once every connection has ended. Idle keep-alive connections close now, HTTP/2 sessions get GOAWAY. */
  close(): Promise<void>;
  /** Cuts every connection now (the shutdown deadline passed). */
  cut(): void;
  /** connection_limit: simultaneous client connections (Infinity for none). */
  setConnectionLimit(limit: number): void;
  /** HTTP/1.x settings node reads per connection and request; absent on layer 4 servers. */
  http?: Server;
}

export interface HttpHandlers {
  request(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /** A CONNECT over HTTP/1.1 hands over the socket: it is answered and closed. */
  connect(socket: Socket): void;
  clientError(err: NodeJS.ErrnoException, socket: Socket): void;
}

/** HTTP/1.x connection settings node reads from the server at each connection and request. */
const HTTP1_OPTIONS = {
  keepAlive: true,
  noDelay: true,
  // Bigger writes per syscall when streaming large bodies; backpressure still applies.
  highWaterMark: 256 * 1024,
  // Checked in forward(), so the 400 carries a request id and a reason like every other.
  requireHostHeader: false,
  // How often client_ms is enforced (node's default, 30 s, would let a 2 s limit run 30 s).
  connectionsCheckingInterval: 1_000,
};

/** Every raw connection of a server, so a deadline can cut them (tunnels included). */
function track(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** A front, its tracked sockets, and the ListenerServer methods every TCP kind shares. */
function fronted(hooks: Omit<AcceptHooks, 'limit'>, extra: { close?: () => void; http?: Server; allowHalfOpen?: boolean } = {}): ListenerServer {
  let limit = Infinity;
  const accept = acceptServer({ ...hooks, limit: () => limit }, { allowHalfOpen: extra.allowHalfOpen });
  const front = accept.server;
  const sockets = track(front);
  return {
    listen: (host, port) => listenOn(front, host, port),
    close: () => {
      // Stops accepting now; done when the last connection has ended, wherever it was relayed.
      front.close(() => {});
      extra.close?.();
      return accept.idle();
    },
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    setConnectionLimit: (n) => {
      limit = n;
    },
    ...(extra.http ? { http: extra.http } : {}),
  };
}

function wireHttp(server: Server, h: HttpHandlers): void {
  server.on('request', h.request);
  server.on('upgrade', h.upgrade);
  server.on('clientError', h.clientError);
}

/** `front`: the listener's accept hooks, minus what each kind does itself (hand-off, refusal). */
export type FrontHooks = Omit<AcceptHooks, 'handoff' | 'refuse' | 'limit'> & {
  /** A connection was refused (counted); the kind then closes or answers it. */
  refused(socket: Socket, reason: Refusal): void;
};

/** Refusals by the throttle, which HTTP clients are answered (503) rather than cut. */
function throttled(reason: Refusal): boolean {
  return reason === 'max_connections' || reason === 'max_connection_rate';
}

/** Closes a refused connection (layer 4, and every refusal but the throttle's on HTTP). */
function cutRefused(front: FrontHooks): AcceptHooks['refuse'] {
  return (socket, reason) => {
    front.refused(socket, reason);
    socket.destroy();
  };
}

export function httpServer(front: FrontHooks, h: HttpHandlers): ListenerServer {
  const server = createHttpServer(HTTP1_OPTIONS);
  wireHttp(server, h);
  server.on('connect', (_req: IncomingMessage, socket: Socket) => h.connect(socket));
  server.emit('listening');
  return fronted(
    {
      ...front,
      handoff: (socket) => {
        server.emit('connection', socket);
        socket.resume();
      },
      refuse: (socket, reason) => {
        if (!throttled(reason)) return cutRefused(front)(socket, reason);
        front.refused(socket, reason);
        answerRaw(socket, 503, requestId(undefined), 'too many connections from your address');
      },
    },
    {
      http: server,
      close: () => {
        server.closeIdleConnections();
        // Not listening itself: this only stops its connection bookkeeping timer.
        server.close(() => {});
      },
    },
  );
}

export interface TlsHandlers extends HttpHandlers {
  /** A handshake completed (TLS version), or failed. */
  handshake(socket: TLSSocket): void;
  handshakeError(err: Error, socket: Socket): void;
}

/**
 * An HTTPS listener. `tls()` is the listener's TLS runtime at the moment of each handshake;
 * `idleMs()` how long an HTTP/2 connection with no open stream stays.
 */
export function httpsServer(
  front: FrontHooks,
  initial: ListenerTlsRuntime,
  tls: () => ListenerTlsRuntime,
  idleMs: () => number,
  h: TlsHandlers,
): ListenerServer & { applyTls(next: ListenerTlsRuntime, previous: ListenerTlsRuntime): void } {
  const server: Http2SecureServer = createSecureServer({
    allowHTTP1: true,
    ...initial.defaults(),
    requestCert: initial.requestCert,
    rejectUnauthorized: initial.rejectUnauthorized,
    SNICallback: (servername, done) => done(null, tls().pick(servername)),
    // RFC 7301 §3.2: the server picks, in its own order of preference, among what the client offers.
    ALPNCallback: ({ protocols }) => tls().alpn.find((p) => protocols.includes(p)),
    settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
  });
  // HTTP/1.1 connections on this server read the same settings node:http does (see HTTP1_OPTIONS).
  Object.assign(server, { connectionsCheckingInterval: HTTP1_OPTIONS.connectionsCheckingInterval });
  const raw = server as unknown as Server;
  wireHttp(raw, h);
  // CONNECT: over HTTP/1.1 the socket is handed over; over HTTP/2 it is a stream the proxy refuses.
  server.on('connect', (req: IncomingMessage | Http2ServerRequest, second: Socket | Http2ServerResponse) => {
    if (req.httpVersionMajor === 2) h.request(req, second as Http2ServerResponse);
    else h.connect(second as Socket);
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    // A client that offered no ALPN speaks HTTP/1.1; refused when the listener offers only h2.
    if (socket.alpnProtocol === false && !tls().alpn.includes('http/1.1')) {
      h.handshakeError(new Error('no ALPN, and the listener offers only h2'), socket);
      socket.destroy();
      return;
    }
    h.handshake(socket);
  });
  server.on('tlsClientError', (err: Error, socket: Socket) => {
    h.handshakeError(err, socket);
    socket.destroy();
  });
  const sessions = new Set<ServerHttp2Session>();
  let closing = false;
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (closing) {
      session.close();
      return;
    }
    // A connection with no open stream closes after the listener's idle_ms (RFC 9113 §6.8 GOAWAY).
    let open = 0;
    session.on('stream', (stream) => {
      open++;
      stream.once('close', () => open--);
    });
    session.setTimeout(idleMs(), () => {
      if (open === 0) session.close();
    });
  });
  // Errors of one client's session are that client's: logged by the stream's own handling, never fatal.
  server.on('sessionError', () => {});
  server.emit('listening');
  const base = fronted(
    {
      ...front,
      // No resume: the TLS socket takes over the paused socket's handle and reads from it itself.
      handoff: (socket) => server.emit('connection', socket),
      // Over the throttle: let in, so its requests can be answered 503 inside TLS (the proxy reads
      // the refusal from the connection's facts); every other refusal is cut at once.
      refuse: (socket, reason) => {
        if (!throttled(reason)) return cutRefused(front)(socket, reason);
        front.refused(socket, reason);
        server.emit('connection', socket);
      },
    },
    {
      http: raw,
      close: () => {
        closing = true;
        // The HTTP/1.1 side's idle keep-alive connections: node:http's own bookkeeping, on this server.
        HttpServer.prototype.closeIdleConnections.call(server as unknown as HttpServer);
        for (const s of sessions) s.close();
        server.close(() => {});
      },
    },
  );
  return {
    ...base,
    applyTls(next, previous) {
      // The default context (clients without SNI) is rebuilt only when the first certificate changed.
      if (next.defaultsKey !== previous.defaultsKey) server.setSecureContext(next.defaults());
      // Read by node for each new connection.
      Object.assign(server, { requestCert: next.requestCert, rejectUnauthorized: next.rejectUnauthorized });
    },
  };
}

/** A layer 4 listener: every admitted socket goes to `connection`. Half-close is passed through. */
export function tcpServer(front: FrontHooks, connection: (socket: Socket) => void): ListenerServer {
  return fronted({ ...front, handoff: connection, refuse: cutRefused(front) }, { allowHalfOpen: true });
}
