/**
 * The sockets a listener accepts on, one kind per protocol family, behind one small interface so
 * the manager can bind, retire and stop any of them alike:
 *
 * - `HTTP`: node:http.
 * - `HTTPS`: node:http2's secure server with HTTP/1.1 allowed: ALPN picks h2 or http/1.1 per
 *   connection, both arrive as 'request' events through one code path (the proxy). SNI, ALPN and
 *   client-certificate settings are read from the listener's current TLS runtime at each handshake,
 *   so a configuration change applies to new connections without rebinding, and connections
 *   already open keep what they negotiated.
 * - `TLS_PASSTHROUGH`: a plain TCP server; the bytes are the passthrough relay's.
 */
import { createServer as createHttpServer, type IncomingMessage, Server as HttpServer, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ListenerTlsRuntime } from './tls/listener-tls.ts';

/** HTTP/2 streams one client connection may have open at once (RFC 9113 §6.5.2). */
const MAX_CONCURRENT_STREAMS = 256;

export interface ListenerServer {
  readonly server: Server;
  /** Stops accepting; resolves once every connection has ended. Idle keep-alive connections close now, HTTP/2 sessions get GOAWAY. */
  close(): Promise<void>;
  /** Cuts every connection now (the shutdown deadline passed). */
  cut(): void;
}

export interface HttpHandlers {
  request(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /** A CONNECT over HTTP/1.1 hands over the socket: it is answered and closed. */
  connect(socket: Socket): void;
  clientError(err: NodeJS.ErrnoException, socket: Socket): void;
  connection(socket: Socket): void;
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

function closed(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function wireHttp(server: Server, h: HttpHandlers): void {
  server.on('request', h.request);
  server.on('upgrade', h.upgrade);
  server.on('clientError', h.clientError);
  server.on('connection', h.connection);
}

export function httpServer(h: HttpHandlers): ListenerServer {
  const server = createHttpServer(HTTP1_OPTIONS);
  wireHttp(server, h);
  server.on('connect', (_req: IncomingMessage, socket: Socket) => h.connect(socket));
  const sockets = track(server);
  return {
    server,
    close: () => {
      const done = closed(server);
      server.closeIdleConnections();
      return done;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  };
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
export function httpsServer(initial: ListenerTlsRuntime, tls: () => ListenerTlsRuntime, idleMs: () => number, h: TlsHandlers): ListenerServer & { applyTls(next: ListenerTlsRuntime, previous: ListenerTlsRuntime): void } {
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
  const sockets = track(raw);
  return {
    server: raw,
    applyTls(next, previous) {
      // The default context (clients without SNI) is rebuilt only when the first certificate changed.
      if (next.defaultsKey !== previous.defaultsKey) server.setSecureContext(next.defaults());
      // Read by node for each new connection.
      Object.assign(server, { requestCert: next.requestCert, rejectUnauthorized: next.rejectUnauthorized });
    },
    close: () => {
      closing = true;
      const done = closed(raw);
      // The HTTP/1.1 side's idle keep-alive connections: node:http's own bookkeeping, on this server.
      HttpServer.prototype.closeIdleConnections.call(server as unknown as HttpServer);
      for (const s of sessions) s.close();
      return done;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

/** A layer 4 listener: every accepted socket goes to `connection`. Half-close is passed through. */
export function tcpServer(connection: (socket: Socket) => void): ListenerServer {
  const server = createNetServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false });
  server.on('connection', connection);
  const sockets = track(server);
  return {
    server,
    close: () => closed(server),
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  };
}
