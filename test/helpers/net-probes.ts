/**
 * Socket-level probes for data plane tests of what happens when a connection is accepted: clients
 * that report whether a listener answered or cut them, echo and PROXY-protocol-reading backends,
 * metric lines read from `GET /metrics`, and lines awaited in a log file.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import { type ProxiedAddresses, parseProxyHeader } from '../../src/dataplane/proxy-protocol.ts';
import type { ApiClient } from './fulcrum.ts';
import { parseResponse, type RawResponse } from './raw-http.ts';

/** How long a probe waits for something that must happen before it fails the test. */
export const PROBE_DEADLINE_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Metrics

/** Parses Prometheus text: one entry per series line. */
export function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the series `name` with exactly these labels (0 when there is none yet). */
export async function metric(api: ApiClient, name: string, labels: Record<string, string>): Promise<number> {
  const res = await api.get<string>('/metrics');
  assert.equal(res.status, 200, `GET /metrics: ${String(res.body).slice(0, 200)}`);
  const want = Object.entries(labels);
  const hit = parseMetrics(String(res.body)).find(
    (s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v),
  );
  return hit?.value ?? 0;
}

/** `fulcrum_connections_refused_total{listener, reason}`. */
export function refusedCount(api: ApiClient, listener: string, reason: string): Promise<number> {
  return metric(api, 'fulcrum_connections_refused_total', { listener, reason });
}

/**
 * Polls a metric until `ok` holds (bounded): only for facts nothing else signals, such as the
 * listener noticing that a client's connection closed.
 */
export async function waitForMetric(api: ApiClient, name: string, labels: Record<string, string>, ok: (v: number) => boolean, what: string): Promise<number> {
  const deadline = Date.now() + PROBE_DEADLINE_MS;
  for (;;) {
    const v = await metric(api, name, labels);
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: ${name}${JSON.stringify(labels)} is still ${v} after ${PROBE_DEADLINE_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

/** Connects (TCP) and resolves once connected; errors after that are swallowed (probes look at bytes and closes). */
export function connectTcp(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

export interface CutOutcome {
  /** Every byte the listener sent before the connection closed. */
  received: Buffer;
  /** ms from connect to close. */
  elapsedMs: number;
}

/**
 * Connects, writes `payload` (if any), and waits for the listener to close the connection,
 * collecting whatever it sent. Fails the test if the connection is still open after the deadline.
 */
export async function expectCut(port: number, payload?: Buffer | string, host = '127.0.0.1'): Promise<CutOutcome> {
  const started = Date.now();
  const socket = await connectTcp(port, host);
  return waitCut(socket, started, payload);
}

/** As {@link expectCut}, on a socket already connected (a PROXY header or part of one may have been written). */
export function waitCut(socket: Socket, started = Date.now(), payload?: Buffer | string): Promise<CutOutcome> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the listener did not close the connection within ${PROBE_DEADLINE_MS} ms; it sent ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 200))}`));
    }, PROBE_DEADLINE_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), elapsedMs: Date.now() - started });
    });
    if (payload !== undefined && !socket.destroyed) socket.write(payload, () => {});
  });
}

/** Writes `data` and resolves with exactly `data.length` bytes read back (an echo round trip). */
export function roundTrip(socket: Duplex, data: Buffer | string): Promise<Buffer> {
  const want = typeof data === 'string' ? Buffer.from(data) : data;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= want.length) {
        cleanup();
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`connection closed after ${got} of ${want.length} echoed bytes`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no echo of ${want.length} bytes within ${PROBE_DEADLINE_MS} ms (got ${got})`));
    }, PROBE_DEADLINE_MS);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(want);
  });
}

/** Reads one HTTP response off any byte stream (a TLS socket, say), leaving the stream open. */
export function readResponse(socket: Duplex): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let eof = false;
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    const attempt = () => {
      try {
        const parsed = parseResponse(buf, { eof });
        if (parsed !== null) {
          cleanup();
          resolve(parsed.res);
        } else if (eof) {
          cleanup();
          reject(new Error(`connection closed before a whole response: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`));
        }
      } catch (err) {
        cleanup();
        reject(err as Error);
      }
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      attempt();
    };
    const onEnd = () => {
      eof = true;
      attempt();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no whole response within ${PROBE_DEADLINE_MS} ms: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`));
    }, PROBE_DEADLINE_MS);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/**
 * The exact bytes of a TLS ClientHello for `servername`, captured from node:tls against a server
 * that never answers: what a TLS client's first write looks like, for probes that must see every
 * byte the listener answers.
 */
export async function captureClientHello(servername: string): Promise<Buffer> {
  let resolveHello: (b: Buffer) => void = () => {};
  const hello = new Promise<Buffer>((resolve) => (resolveHello = resolve));
  const server = createServer((s) => {
    s.once('data', (b: Buffer) => {
      resolveHello(b);
      s.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const client = connectTls({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, rejectUnauthorized: false });
  client.on('error', () => {});
  const bytes = await hello;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Backends

export interface CountingServer {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Bytes received, per connection. */
  received: Buffer[];
  close(): Promise<void>;
}

/** Tracks a server's sockets so close() can end them all. */
function closer(server: Server, sockets: Set<Socket>): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

/**
 * A node:net echo server on 127.0.0.1: every byte comes back, a half-close is answered with one.
 * `onConnection` may take over a connection instead (return true).
 */
export async function startEchoServer(onConnection?: (socket: Socket) => boolean): Promise<CountingServer> {
  const sockets = new Set<Socket>();
  const state: CountingServer = { port: 0, connections: 0, received: [], close: async () => {} };
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const i = state.received.push(Buffer.alloc(0)) - 1;
    state.connections++;
    socket.on('data', (c: Buffer) => (state.received[i] = Buffer.concat([state.received[i]!, c])));
    if (onConnection?.(socket)) return;
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  state.port = (server.address() as AddressInfo).port;
  state.close = closer(server, sockets);
  return state;
}

/** One connection a PROXY-protocol-reading backend accepted. */
export interface ProxiedConnection {
  version?: 1 | 2;
  addresses?: ProxiedAddresses;
  /** Set when the first bytes were not a valid header. */
  invalid?: string;
  /** Bytes after the header. */
  data: Buffer;
  socket: Socket;
}

export interface ProxyBackend {
  port: number;
  connections: ProxiedConnection[];
  close(): Promise<void>;
}

/**
 * A backend that expects a PROXY protocol header first on every connection and parses it with
 * Fulcrum's codec. Then, by `mode`: `echo` sends every later byte back; `http` hands the connection
 * to a node:http server (the bytes after the header put back first) whose handler gets the
 * connection's parsed header.
 */
export async function startProxyBackend(
  mode: 'echo' | { http: (req: IncomingMessage, res: ServerResponse, conn: ProxiedConnection) => void },
): Promise<ProxyBackend> {
  const sockets = new Set<Socket>();
  const connections: ProxiedConnection[] = [];
  const bySocket = new WeakMap<Socket, ProxiedConnection>();
  const http =
    mode === 'echo'
      ? null
      : createHttpServer({ keepAliveTimeout: 30_000 }, (req, res) => mode.http(req, res, bySocket.get(req.socket as Socket)!));
  const server = createServer({ allowHalfOpen: mode === 'echo' }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const conn: ProxiedConnection = { data: Buffer.alloc(0), socket };
    connections.push(conn);
    bySocket.set(socket, conn);
    let head = Buffer.alloc(0);
    const onHead = (c: Buffer) => {
      head = Buffer.concat([head, c]);
      const h = parseProxyHeader(head);
      if (h.kind === 'need-more') return;
      socket.off('data', onHead);
      if (h.kind === 'invalid') {
        conn.invalid = h.reason;
        socket.destroy();
        return;
      }
      conn.version = h.version;
      conn.addresses = h.addresses;
      const rest = head.subarray(h.length);
      if (http === null) {
        socket.on('data', (d: Buffer) => {
          conn.data = Buffer.concat([conn.data, d]);
          socket.write(d);
        });
        socket.on('end', () => socket.end());
        if (rest.length > 0) {
          conn.data = Buffer.from(rest);
          socket.write(rest);
        }
        return;
      }
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      http.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onHead);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: closer(server, sockets),
  };
}

// ---------------------------------------------------------------------------------------------
// Files

/** Polls a file (bounded) until it has at least `n` non-empty lines; returns them all. */
export async function waitForLines(path: string, n: number): Promise<string[]> {
  const deadline = Date.now() + PROBE_DEADLINE_MS;
  for (;;) {
    let lines: string[] = [];
    try {
      lines = (await readFile(path, 'utf8')).split('\n').filter((l) => l !== '');
    } catch {
      // not written yet
    }
    if (lines.length >= n) return lines;
    if (Date.now() > deadline) assert.fail(`${path} has ${lines.length} lines after ${PROBE_DEADLINE_MS} ms, ${n} expected: ${JSON.stringify(lines)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
