/**
 * The HTTP/2 upstream (src/dataplane/http/h2-upstream.ts) against real node:http2 servers on
 * 127.0.0.1 port 0, in cleartext (h2c, prior knowledge) and over TLS with real certificates:
 * what a DispatchHandler sees for ordinary requests, trailers, bidirectional streams,
 * backpressure, every way a connection or stream can fail, GOAWAY, idle close, close and destroy.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2, { type Http2SecureServer, type Http2Server, type IncomingHttpHeaders as H2Headers, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import { H2Upstream, type H2UpstreamOptions } from '../../src/dataplane/http/h2-upstream.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
const MiB = 1024 * 1024;

/** Everything a dispatch handler is told, in order; `done` settles at the end or the error. */
class Recorder implements Dispatcher.DispatchHandler {
  readonly events: string[] = [];
  readonly heads: { status: number; headers: IncomingHttpHeaders; message: string | undefined }[] = [];
  readonly chunks: Buffer[] = [];
  bytes = 0;
  trailers: IncomingHttpHeaders | undefined;
  error: (Error & { code?: string }) | undefined;
  controller: Dispatcher.DispatchController | undefined;
  readonly done: Promise<void>;
  #settle!: () => void;
  /** Called with each chunk after it is recorded (tests pause, abort or answer from here). */
  onChunk: ((chunk: Buffer, controller: Dispatcher.DispatchController) => void) | undefined;
  onStart: ((controller: Dispatcher.DispatchController) => void) | undefined;
  /** Settles when the final head arrived. */
  readonly head: Promise<void>;
  #headArrived!: () => void;

  constructor() {
    this.done = new Promise((resolve) => (this.#settle = resolve));
    this.head = new Promise((resolve) => (this.#headArrived = resolve));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.events.push('start');
    this.controller = controller;
    this.onStart?.(controller);
  }

  onRequestSent(): void {
    this.events.push('sent');
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, message?: string): void {
    this.events.push(`head ${status}`);
    this.heads.push({ status, headers, message });
    if (status >= 200) this.#headArrived();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    assert.equal(controller.paused, false, 'no data while paused');
    if (this.events.at(-1) !== 'data') this.events.push('data');
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    this.onChunk?.(chunk, controller);
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.events.push('end');
    this.trailers = trailers;
    this.#settle();
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error): void {
    this.events.push(`error ${(err as { code?: string }).code}`);
    this.error = err;
    this.#settle();
  }

  get body(): string {
    return Buffer.concat(this.chunks).toString();
  }

  get final(): { status: number; headers: IncomingHttpHeaders; message: string | undefined } {
    return this.heads.at(-1)!;
  }

  /** How many of onResponseEnd / onResponseError it had: exactly one, always. */
  get endings(): number {
    return this.events.filter((e) => e === 'end' || e.startsWith('error')).length;
  }
}

type StreamHandler = (stream: ServerHttp2Stream, headers: H2Headers) => void;

interface TestServer {
  origin: string;
  port: number;
  /** Every session the server accepted, in order. */
  sessions: ServerHttp2Session[];
  /** Raw sockets, to cut a connection under a live stream. */
  sockets: Set<Socket>;
  close(): Promise<void>;
}

async function listen(server: Http2Server | Http2SecureServer, scheme: 'http' | 'https', handler: StreamHandler): Promise<TestServer> {
  const sessions: ServerHttp2Session[] = [];
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('session', (s: ServerHttp2Session) => {
    sessions.push(s);
    s.on('error', () => {});
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: H2Headers) => {
    stream.on('error', () => {}); // resets the tests cause on purpose
    handler(stream, headers);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    origin: `${scheme}://127.0.0.1:${port}`,
    port,
    sessions,
    sockets,
    async close() {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function h2c(handler: StreamHandler, settings?: http2.Settings): Promise<TestServer> {
  return listen(http2.createServer({ settings }), 'http', handler);
}

function h2s(pem: Pem, handler: StreamHandler): Promise<TestServer> {
  return listen(http2.createSecureServer({ key: pem.key, cert: pem.cert }), 'https', handler);
}

/** A TCP server that accepts and then says nothing: neither TLS nor HTTP/2 SETTINGS. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: one the kernel just gave and took back. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Reads a server stream's request body. */
async function readAll(stream: ServerHttp2Stream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString();
}

/** Answers with what the server saw: its request head, body and TLS facts. */
const echoHandler: StreamHandler = (stream, headers) => {
  void readAll(stream).then((body) => {
    const socket = stream.session!.socket as Socket & { servername?: string | false; alpnProtocol?: string | false };
    const seen: Record<string, unknown> = { headers: { ...headers }, body, alpn: stream.session!.alpnProtocol, servername: socket.servername ?? null };
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-dup': ['one', 'two'] });
    stream.end(JSON.stringify(seen));
  });
};

const upstreams: H2Upstream[] = [];
function upstream(options: Partial<H2UpstreamOptions> & { origin: string }): H2Upstream {
  const u = new H2Upstream({ connectTimeoutMs: 5_000, idleTimeoutMs: 60_000, ...options });
  upstreams.push(u);
  return u;
}

function get(u: H2Upstream, path = '/', headers: string[] = ['Host', 'backend.test']): Recorder {
  const r = new Recorder();
  u.dispatch({ path, method: 'GET', headers, body: null }, r);
  return r;
}

let certs: CertFactory;
let ca: Pem;
let leaf: Pem;

before(() => {
  certs = new CertFactory();
  ca = certs.ca();
  leaf = certs.leaf(['backend.test'], { ca });
});

after(async () => {
  await Promise.all(upstreams.map((u) => u.destroy()));
  certs?.remove();
});

describe('H2Upstream: requests and responses', () => {
  it('a GET over h2c: pseudo-fields from the request, connection fields dropped, hooks in order', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u, '/a?b=c', [
      'Host', 'example.test:8080', 'X-Multi', 'one', 'X-Multi', 'two', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5',
      'Proxy-Connection', 'keep-alive', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'TE', 'Trailers', 'Cookie', 'a=1', 'Cookie', 'b=2',
    ]);
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'end']);
    assert.equal(r.final.message, undefined, 'HTTP/2 has no reason phrase: the HTTP/1.1 side writes its own');
    assert.deepEqual(r.final.headers['x-dup'], ['one', 'two'], 'repeated response fields arrive as an array');
    assert.equal(r.final.headers[':status'], undefined, 'no pseudo-fields among the headers');
    assert.deepEqual({ ...r.trailers }, {});
    const seen = JSON.parse(r.body);
    const h = seen.headers;
    assert.equal(h[':method'], 'GET');
    assert.equal(h[':path'], '/a?b=c');
    assert.equal(h[':scheme'], 'http');
    assert.equal(h[':authority'], 'example.test:8080', ':authority comes from Host (RFC 9113 §8.3.1)');
    assert.equal(h.host, undefined);
    assert.equal(h['x-multi'], 'one, two');
    assert.equal(h.cookie, 'a=1; b=2');
    assert.equal(h.te, 'trailers');
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']) assert.equal(h[name], undefined, name);
    assert.equal(seen.alpn, 'h2c');
  });

  it('TE other than "trailers" is dropped; a request without Host gets the origin as :authority', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u, '/', ['TE', 'gzip']);
    await r.done;
    const h = JSON.parse(r.body).headers;
    assert.equal(h.te, undefined);
    assert.equal(h[':authority'], `127.0.0.1:${s.port}`);
  });

  it('a POST over h2c sends its body, then onRequestSent', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    const body = new PassThrough();
    u.dispatch({ path: '/upload', method: 'POST', headers: ['Host', 'backend.test', 'Content-Type', 'text/plain', 'Content-Length', '11'], body }, r);
    body.end('hello world');
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'end']);
    const seen = JSON.parse(r.body);
    assert.equal(seen.body, 'hello world');
    assert.equal(seen.headers[':method'], 'POST');
    assert.equal(seen.headers['content-length'], '11');
  });

  it('GET and POST over TLS: ALPN h2, verified against the given CA, SNI seen by the server', async (t) => {
    const s = await h2s(leaf, echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin, ca: ca.cert, servername: 'backend.test' });
    const g = get(u, '/tls');
    await g.done;
    assert.equal(g.final.status, 200, g.error?.message);
    const seen = JSON.parse(g.body);
    assert.equal(seen.alpn, 'h2');
    assert.equal(seen.servername, 'backend.test');
    assert.equal(seen.headers[':scheme'], 'https');

    const p = new Recorder();
    const body = new PassThrough();
    u.dispatch({ path: '/tls', method: 'POST', headers: ['Host', 'backend.test', 'Content-Length', '4'], body }, p);
    body.end('ping');
    await p.done;
    assert.equal(JSON.parse(p.body).body, 'ping');
    assert.equal(s.sessions.length, 1, 'both requests on one session');
  });

  it('delivers 1xx heads, then the final head, and the trailers (gRPC status) in onResponseEnd', async (t) => {
    const s = await h2c((stream) => {
      stream.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload' });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'all good' }));
      stream.end('payload');
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 103', 'head 200', 'data', 'end']);
    assert.equal(r.heads[0]!.headers.link, '</style.css>; rel=preload');
    assert.equal(r.body, 'payload');
    assert.deepEqual({ ...r.trailers }, { 'grpc-status': '0', 'grpc-message': 'all good' });
  });

  it('HEAD and 204: a head with no body ends cleanly, Content-Length notwithstanding', async (t) => {
    const s = await h2c((stream, headers) => {
      if (headers[':method'] === 'HEAD') stream.respond({ ':status': 200, 'content-length': '100' }, { endStream: true });
      else stream.respond({ ':status': 204 }, { endStream: true });
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const head = new Recorder();
    u.dispatch({ path: '/', method: 'HEAD', headers: [], body: null }, head);
    const empty = get(u);
    await Promise.all([head.done, empty.done]);
    assert.deepEqual(head.events, ['start', 'sent', 'head 200', 'end']);
    assert.equal(head.final.headers['content-length'], '100');
    assert.deepEqual(empty.events, ['start', 'sent', 'head 204', 'end']);
  });

  it('a bidirectional stream: each request chunk goes out only after the echo of the previous one came back', async (t) => {
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('data', (chunk: Buffer) => stream.write(chunk));
      stream.on('end', () => stream.end());
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    const body = new PassThrough();
    const messages = ['one', 'two', 'three', 'four', 'five'];
    let next = 0;
    let echoed = '';
    r.onChunk = (chunk) => {
      echoed += chunk.toString();
      // The response streams while the request body is still open: only now the next message goes.
      if (echoed !== messages.slice(0, next).join('')) return;
      if (next < messages.length) body.write(messages[next++]);
      else body.end();
    };
    u.dispatch({ path: '/chat', method: 'POST', headers: ['Host', 'backend.test', 'Content-Type', 'application/grpc'], body }, r);
    body.write(messages[next++]);
    await r.done;
    assert.equal(echoed, messages.join(''));
    assert.equal(r.events.indexOf('head 200') < r.events.indexOf('sent'), true, 'the response began before the request was sent');
    assert.deepEqual({ ...r.trailers }, { 'grpc-status': '0' });
    assert.equal(r.endings, 1);
  });

  it('backpressure: a 32 MiB response with the handler pausing after every chunk arrives byte for byte', async (t) => {
    const size = 32 * MiB;
    const block = Buffer.alloc(MiB);
    for (let i = 0; i < block.length; i++) block[i] = i % 251;
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200, 'content-length': String(size) });
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += block.length;
          if (!stream.write(block)) {
            stream.once('drain', pump);
            return;
          }
        }
        stream.end();
      };
      pump();
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    let pauses = 0;
    let offset = 0;
    let intact = true;
    r.onChunk = (chunk, controller) => {
      for (let i = 0; i < chunk.length; i += 4096) if (chunk[i] !== (offset + i) % MiB % 251) intact = false;
      offset += chunk.length;
      r.chunks.length = 0; // count, do not keep
      controller.pause();
      pauses++;
      setImmediate(() => controller.resume());
    };
    u.dispatch({ path: '/big', method: 'GET', headers: ['Host', 'backend.test'], body: null }, r);
    await r.done;
    assert.equal(r.error, undefined);
    assert.equal(r.bytes, size);
    assert.equal(intact, true, 'the bytes arrive in order');
    assert.equal(pauses > 1, true);
  });

  it('200 concurrent streams on one session all complete, beyond the server\'s stream limit of 20', async (t) => {
    let open = 0;
    let peak = 0;
    const s = await h2c((stream, headers) => {
      peak = Math.max(peak, ++open);
      stream.on('close', () => open--);
      setImmediate(() => {
        stream.respond({ ':status': 200 });
        stream.end(String(headers[':path']));
      });
    }, { maxConcurrentStreams: 20 });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const all = Array.from({ length: 200 }, (_, i) => get(u, `/n/${i}`));
    await Promise.all(all.map((r) => r.done));
    all.forEach((r, i) => {
      assert.equal(r.error, undefined, r.error?.message);
      assert.equal(r.body, `/n/${i}`);
    });
    assert.equal(s.sessions.length, 1);
    assert.equal(peak <= 20, true, `the server's limit held (peak ${peak})`);
  });
});

describe('H2Upstream: failures', () => {
  it('a refused connection reaches every queued request as onResponseError ECONNREFUSED', async () => {
    const u = upstream({ origin: `http://127.0.0.1:${await closedPort()}` });
    const all = [get(u), get(u), get(u)];
    await Promise.all(all.map((r) => r.done));
    for (const r of all) {
      assert.deepEqual(r.events, ['start', 'error ECONNREFUSED']);
    }
  });

  it('a refused TLS connection is ECONNREFUSED too', async () => {
    const u = upstream({ origin: `https://127.0.0.1:${await closedPort()}`, ca: ca.cert });
    const r = get(u);
    await r.done;
    assert.equal(r.error?.code, 'ECONNREFUSED');
  });

  it('connect timeout: a server that accepts TCP but never speaks TLS', async (t) => {
    const s = await silentServer();
    t.after(() => s.close());
    const u = upstream({ origin: `https://127.0.0.1:${s.port}`, ca: ca.cert, connectTimeoutMs: 100 });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'error UND_ERR_CONNECT_TIMEOUT']);
  });

  it('connect timeout: an h2c server that accepts TCP but never sends its SETTINGS (the timeout covers the HTTP/2 handshake)', async (t) => {
    const s = await silentServer();
    t.after(() => s.close());
    const u = upstream({ origin: `http://127.0.0.1:${s.port}`, connectTimeoutMs: 100 });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'error UND_ERR_CONNECT_TIMEOUT']);
  });

  it('a certificate from another CA fails verification: an error, not a crash', async (t) => {
    const s = await h2s(leaf, echoHandler);
    t.after(() => s.close());
    const other = certs.ca('Some Other CA');
    const u = upstream({ origin: s.origin, ca: other.cert, servername: 'backend.test' });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'error UNABLE_TO_VERIFY_LEAF_SIGNATURE']);
    assert.equal(s.sessions.length, 0);
  });

  it('a certificate for another name fails verification', async (t) => {
    const s = await h2s(leaf, echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin, ca: ca.cert, servername: 'other.test' });
    const r = get(u);
    await r.done;
    assert.equal(r.error?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('a TLS backend that does not agree to h2 in ALPN fails clearly', async (t) => {
    const server = createTlsServer({ key: leaf.key, cert: leaf.cert }, (s) => s.on('error', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const u = upstream({ origin: `https://127.0.0.1:${(server.address() as { port: number }).port}`, ca: ca.cert, servername: 'backend.test' });
    const r = get(u);
    await r.done;
    assert.equal(r.error?.code, 'FULCRUM_H2_ALPN');
    assert.match(r.error!.message, /chose no protocol/);
  });

  it('an h2c origin that is an HTTP/1.1 server fails the handshake, before any stream', async (t) => {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.end('http/1.1'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const u = upstream({ origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
    const r = get(u);
    await r.done;
    assert.equal(r.events.length, 2);
    assert.match(String(r.error?.code), /^(FULCRUM_H2_HANDSHAKE|ECONNRESET)$/);
  });

  it('a head HTTP/2 cannot carry (a repeated single-value field) is UND_ERR_INVALID_ARG, before any byte is sent', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const bad = get(u, '/', ['Content-Type', 'text/plain', 'Content-Type', 'text/html']);
    await bad.done;
    assert.deepEqual(bad.events, ['start', 'error UND_ERR_INVALID_ARG']);
    const good = get(u);
    await good.done;
    assert.equal(good.final.status, 200, 'the session is unharmed');
  });

  it('a server RST_STREAM mid-response: onResponseError once with the HTTP/2 code, nothing after', async (t) => {
    let n = 0;
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 });
      if (++n === 1) stream.write('partial', () => stream.destroy(new Error('backend failed'))); // RST_STREAM(INTERNAL_ERROR)
      else stream.end('fine');
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'error NGHTTP2_INTERNAL_ERROR']);
    // The session lives on: another request on it works, and the first handler heard nothing more.
    const again = get(u);
    await again.done;
    assert.equal(again.body, 'fine');
    assert.equal(s.sessions.length, 1);
    assert.equal(r.endings, 1);
    assert.equal(r.events.length, 5);
  });

  it('a response cut short of its Content-Length by RST_STREAM(NO_ERROR) is an error, not a clean end', async (t) => {
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200, 'content-length': '100' });
      stream.write('only this', () => stream.destroy()); // RST_STREAM(NO_ERROR) before END_STREAM
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await r.done;
    assert.equal(r.error?.code, 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH');
    assert.equal(r.endings, 1);
  });

  it('the connection dying mid-response is UND_ERR_SOCKET, once', async (t) => {
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('partial', () => {
        for (const socket of s.sockets) socket.destroy();
      });
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'error UND_ERR_SOCKET']);
    const again = get(u, '/after'); // a new session
    await again.done;
    assert.equal(again.final.status, 200);
    assert.equal(s.sessions.length, 2);
  });

  it('abort from the handler cancels the stream on the server (RST_STREAM CANCEL) and reports the reason once', async (t) => {
    const serverClosed = Promise.withResolvers<{ rstCode: number; aborted: boolean }>();
    const s = await h2c((stream) => {
      stream.on('close', () => serverClosed.resolve({ rstCode: stream.rstCode, aborted: stream.aborted }));
      stream.respond({ ':status': 200 });
      stream.write('first'); // and nothing more: only the client's cancel ends this stream
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    const reason = new Error('client went away');
    r.onChunk = (_chunk, controller) => controller.abort(reason);
    u.dispatch({ path: '/', method: 'GET', headers: [], body: null }, r);
    await r.done;
    assert.equal(r.error, reason);
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'error undefined']);
    assert.equal(r.controller!.aborted, true);
    assert.equal(r.controller!.reason, reason);
    assert.deepEqual(await serverClosed.promise, { rstCode: NGHTTP2_CANCEL, aborted: true });
  });

  it('abort during onRequestStart (as the proxy does for a client already gone): one error, no stream', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    r.onStart = (controller) => controller.abort(new Error('client went away'));
    u.dispatch({ path: '/', method: 'GET', headers: [], body: null }, r);
    await r.done;
    assert.deepEqual(r.events, ['start', 'error undefined']);
    assert.equal(s.sessions.length, 0);
  });

  it('a request body that errors cancels the stream and is reported', async (t) => {
    const serverClosed = Promise.withResolvers<number>();
    const s = await h2c((stream) => {
      stream.on('close', () => serverClosed.resolve(stream.rstCode));
      stream.respond({ ':status': 200 });
      stream.resume();
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = new Recorder();
    const body = new PassThrough();
    u.dispatch({ path: '/', method: 'POST', headers: [], body }, r);
    body.write('some');
    await r.head;
    const failure = Object.assign(new Error('client reset'), { code: 'ECONNRESET' });
    body.destroy(failure);
    await r.done;
    assert.equal(r.error, failure);
    assert.equal(r.endings, 1);
    assert.equal(await serverClosed.promise, NGHTTP2_CANCEL);
  });
});

describe('H2Upstream: session life', () => {
  it('after the server sends GOAWAY the next request opens a new session and succeeds', async (t) => {
    let first = true;
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
      if (first) {
        first = false;
        stream.session!.close(); // GOAWAY(NO_ERROR): this stream finishes, no new ones
      }
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const a = get(u);
    await a.done;
    assert.equal(a.body, 'ok');
    await once(s.sessions[0]!, 'close');
    const b = get(u);
    await b.done;
    assert.equal(b.body, 'ok');
    assert.equal(s.sessions.length, 2);
  });

  it('a stream beyond a GOAWAY\'s last stream id is refused and sent again on a new session; the earlier one finishes on the old', async (t) => {
    const slowArrived = Promise.withResolvers<ServerHttp2Stream>();
    const s = await h2c((stream, headers) => {
      if (headers[':path'] === '/slow') {
        slowArrived.resolve(stream);
        return;
      }
      if (s.sessions.length === 1) {
        // GOAWAY(NO_ERROR, last stream id 1): stream 3 (this one) was not processed (RFC 9113 §6.8).
        stream.session!.goaway(NGHTTP2_NO_ERROR, 1);
        void slowArrived.promise.then((slow) => {
          slow.respond({ ':status': 200 });
          slow.end('slow, on the first session');
        });
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('late, on the second session');
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const slow = get(u, '/slow');
    await slowArrived.promise;
    const late = get(u, '/late');
    await Promise.all([slow.done, late.done]);
    assert.equal(slow.body, 'slow, on the first session');
    assert.deepEqual(late.events, ['start', 'sent', 'head 200', 'data', 'end'], 'the refusal was not reported: the request went again');
    assert.equal(late.body, 'late, on the second session');
    assert.equal(s.sessions.length, 2);
  });

  it('a request the server refuses with RST_STREAM(REFUSED_STREAM) is sent again, once', async (t) => {
    let attempts = 0;
    const s = await h2c((stream, headers) => {
      attempts++;
      if (headers[':path'] === '/always' || attempts === 1) {
        stream.close(NGHTTP2_REFUSED_STREAM); // RFC 9113 §8.7: not processed, safe to retry
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('second try');
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await r.done;
    assert.equal(r.body, 'second try');
    assert.equal(attempts, 2);
    const always = get(u, '/always');
    await always.done;
    assert.deepEqual(always.events, ['start', 'sent', 'error NGHTTP2_REFUSED_STREAM'], 'a second refusal is reported');
    assert.equal(attempts, 4);
  });

  it('a session with no open stream for idleTimeoutMs closes; the next request opens another', async (t) => {
    const s = await h2c(echoHandler);
    t.after(() => s.close());
    const u = upstream({ origin: s.origin, idleTimeoutMs: 50 });
    const a = get(u);
    await a.done;
    await once(s.sessions[0]!, 'close');
    const b = get(u);
    await b.done;
    assert.equal(b.final.status, 200);
    assert.equal(s.sessions.length, 2);
  });

  it('close(): the open stream finishes, new requests are refused, then it resolves', async (t) => {
    const release = Promise.withResolvers<void>();
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('begun');
      void release.promise.then(() => stream.end(' and done'));
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await new Promise<void>((resolve) => (r.onChunk = () => resolve()));
    const closed = u.close();
    const late = new Recorder();
    assert.equal(u.dispatch({ path: '/', method: 'GET', headers: [], body: null }, late), false);
    assert.deepEqual(late.events, ['start', 'error UND_ERR_CLOSED']);
    release.resolve();
    await r.done;
    assert.equal(r.body, 'begun and done');
    await closed;
  });

  it('destroy(): open streams fail at once with UND_ERR_DESTROYED', async (t) => {
    const s = await h2c((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('begun');
    });
    t.after(() => s.close());
    const u = upstream({ origin: s.origin });
    const r = get(u);
    await new Promise<void>((resolve) => (r.onChunk = () => resolve()));
    await u.destroy();
    await r.done;
    assert.deepEqual(r.events, ['start', 'sent', 'head 200', 'data', 'error UND_ERR_DESTROYED']);
  });
});
