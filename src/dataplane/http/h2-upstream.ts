/**
 * An HTTP/2 upstream: requests to one backend as streams of one multiplexed `node:http2` session,
 * behind the same `dispatch(options, handler)` surface as undici's Pool, so the forwarding path
 * (proxy.ts, `Exchange`) drives an HTTP/2 backend exactly as it drives an HTTP/1.1 one.
 *
 * Why our own client and not undici's HTTP/2: a pool that asks for HTTP/2 (gRPC) must get HTTP/2
 * or a clear error. undici's h2 is a mode of its Client, chosen per connection by ALPN from a
 * list that also offers http/1.1 (`allowH2`), so a backend could silently answer gRPC in HTTP/1.1.
 * Here ALPN offers h2 alone, cleartext means h2 with prior knowledge (h2c, RFC 9113 §3.3), and
 * the session's whole life is ours to decide and test: the connect timeout covers TCP, TLS and
 * the server's SETTINGS; GOAWAY moves new streams to a fresh session while open ones finish
 * there; an idle session closes; trailers (gRPC's `grpc-status`) reach the handler; request and
 * response bodies stream at the same time (bidirectional gRPC).
 *
 * Costs: one session (socket) per upstream, shared by all its requests; a request costs one
 * `Call` (it is also the handler's controller) and one h2 stream, whose listeners are shared
 * module functions, not closures. Flow control bounds what one paused response buffers to
 * STREAM_WINDOW. The TLS context (CA bundle) is built once per upstream, not per connection.
 */
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { finished } from 'node:stream';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';

export interface H2UpstreamOptions {
  /** 'https://host:port' (TLS, ALPN h2) or 'http://host:port' (cleartext h2 with prior knowledge, h2c). */
  origin: string;
  /** Limit for TCP connect, TLS handshake and the server's first SETTINGS frame together. */
  connectTimeoutMs: number;
  /** TLS only: the SNI name, also the name the certificate must match; omit for no SNI (the host is matched). */
  servername?: string;
  /** TLS only: verify the backend's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** TLS only: PEM bundle to verify against (default: Node's roots). */
  ca?: string;
  /** Close the session after this long with no open stream. */
  idleTimeoutMs: number;
}

/** The fields of undici's DispatchOptions this upstream uses; others (timeouts, idempotent) are ignored. */
export interface H2DispatchOptions {
  /** The request target in origin-form. */
  path: string;
  method: string;
  /** Flat [name, value, …] list, as `upstreamRequestHeaders` makes it. */
  headers: string[];
  body: NodeJS.ReadableStream | null;
}

/** Errors this upstream raises itself, with stable codes (undici's where one fits). */
export class H2UpstreamError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'H2UpstreamError';
    this.code = code;
  }
}

/** What one stream may hold unread while its reader is paused (SETTINGS_INITIAL_WINDOW_SIZE). */
const STREAM_WINDOW = 256 * 1024; // 256 KiB
/**
 * The session's receive window. node:http2 gives connection-level window back as data arrives
 * (only the stream window waits for the reader), so a large one costs no memory and keeps many
 * streams moving on a long round trip; the default (64 KiB) would cap the whole session.
 */
const SESSION_WINDOW = 16 * 1024 * 1024; // 16 MiB

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** RFC 9113 §7 error codes by value, named as nghttp2 names them. */
const H2_ERROR_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR',
  'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
];

function h2ErrorName(code: number): string {
  return `NGHTTP2_${H2_ERROR_NAMES[code] ?? `UNKNOWN_${code}`}`;
}

/** Header fields node:http2 reports itself when the request carries a bad field. */
const INVALID_HEADER_CODES = new Set([
  'ERR_INVALID_HTTP_TOKEN', 'ERR_INVALID_CHAR', 'ERR_HTTP2_INVALID_CONNECTION_HEADERS', 'ERR_HTTP2_HEADER_SINGLE_VALUE',
  'ERR_HTTP2_INVALID_HEADER_VALUE', 'ERR_HTTP2_INVALID_PSEUDOHEADER',
]);

/**
 * The request's fields as node:http2's flat raw list (it takes one, and keeps repeated fields as
 * repeated fields: no arrays to build). RFC 9113 §8.3.1: an intermediary makes :authority from
 * Host and drops Host. §8.2.2: connection-specific fields are dropped, and TE is kept only as
 * "trailers". Names are lower-cased (§8.2.1).
 */
function requestHeaders(options: H2DispatchOptions, scheme: string, defaultAuthority: string): string[] {
  const out = [':method', options.method, ':scheme', scheme, ':path', options.path];
  let authority: string | undefined;
  const raw = options.headers;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    switch (name) {
      case 'host':
        authority ??= value;
        continue;
      case 'connection':
      case 'keep-alive':
      case 'proxy-connection':
      case 'transfer-encoding':
      case 'upgrade':
      case 'http2-settings':
        continue;
      case 'te':
        if (value.trim().toLowerCase() !== 'trailers') continue;
        out.push(name, 'trailers');
        continue;
    }
    if (name.charCodeAt(0) === 58 /* ':' */) continue; // pseudo-fields are ours to set
    out.push(name, value);
  }
  out.push(':authority', authority ?? defaultAuthority);
  return out;
}

/** A received header block as undici's handlers see it: pseudo-fields left out, repeats as arrays. */
function headerObject(raw: readonly string[]): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (typeof prev === 'string') out[name] = [prev, value];
    else prev.push(value);
  }
  return out;
}

const NO_TRAILERS: IncomingHttpHeaders = Object.freeze(Object.create(null));

/** Where a stream keeps the call it carries, so its listeners can be shared functions. */
const kCall = Symbol('fulcrum.h2.call');
type CallStream = ClientHttp2Stream & { [kCall]: Call };

function onStreamResponse(this: CallStream, headers: { ':status'?: number }, _flags: number, raw: string[]): void {
  this[kCall].response(headers[':status'] ?? 0, raw);
}
function onStreamHeaders(this: CallStream, headers: { ':status'?: number }, _flags: number, raw: string[]): void {
  this[kCall].informational(headers[':status'] ?? 0, raw);
}
function onStreamTrailers(this: CallStream, _headers: unknown, _flags: number, raw: string[]): void {
  this[kCall].trailers(raw);
}
function onStreamData(this: CallStream, chunk: Buffer): void {
  this[kCall].data(chunk);
}
function onStreamEnd(this: CallStream): void {
  this[kCall].end();
}
function onStreamFinish(this: CallStream): void {
  this[kCall].requestSent();
}
function onStreamAborted(this: CallStream): void {
  this[kCall].writableClosedByPeer();
}
function onStreamError(this: CallStream, err: Error): void {
  this[kCall].streamError(err);
}
function onStreamClose(this: CallStream): void {
  this[kCall].closed();
}

const PENDING = 0; // waiting for a session
const OPEN = 1; // a stream carries it
const DONE = 2; // the handler has had onResponseEnd or onResponseError

/**
 * One request: its stream's events become the handler's hooks, exactly once to an end. It is the
 * handler's DispatchController too (aborted / paused / reason as undici's RequestController).
 */
class Call implements Dispatcher.DispatchController {
  readonly #pool: SessionPool;
  readonly #handler: Dispatcher.DispatchHandler;
  readonly #headers: string[];
  readonly #method: string;
  readonly #body: NodeJS.ReadableStream | null;
  #state = PENDING;
  #stream: CallStream | undefined;
  #connection: Connection | undefined;
  #aborted = false;
  #paused = false;
  #reason: Error | null = null;
  /** The final status once its head arrived, 0 before. */
  #status = 0;
  #trailers: IncomingHttpHeaders = NO_TRAILERS;
  /** Content-Length of the response, -1 when it has none. */
  #expected = -1;
  #received = 0;
  #sent = false;
  #retried = false;
  /** The first error the stream emitted: what an unfinished stream's close is explained by. */
  #error: Error | undefined;
  #unwatchBody: (() => void) | undefined;

  constructor(pool: SessionPool, options: H2DispatchOptions, handler: Dispatcher.DispatchHandler) {
    this.#pool = pool;
    this.#handler = handler;
    this.#method = options.method;
    this.#body = options.body;
    this.#headers = requestHeaders(options, pool.scheme, pool.authority);
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  pause(): void {
    this.#paused = true;
    this.#stream?.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#stream?.resume();
  }

  /** Cancels the stream (RST_STREAM CANCEL, RFC 9113 §8.7) and reports `reason` unless the response ended. */
  abort(reason: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    if (this.#state === DONE) return;
    this.#cancel();
    this.#fail(reason);
  }

  /** onRequestStart, first of all hooks; false when the handler aborted in it. */
  start(): boolean {
    try {
      this.#handler.onRequestStart?.(this, {});
    } catch (err) {
      this.abort(err as Error);
    }
    return this.#state !== DONE;
  }

  /** Opens the stream on a ready session. */
  open(connection: Connection, session: ClientHttp2Session): void {
    if (this.#state !== PENDING) return; // aborted while it waited
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(this.#headers, { endStream: this.#body === null });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== undefined && INVALID_HEADER_CODES.has(e.code)) {
        this.#fail(new H2UpstreamError('UND_ERR_INVALID_ARG', `the request cannot be sent over HTTP/2: ${e.message}`, { cause: e }));
      } else this.#fail(e);
      return;
    }
    const s = stream as CallStream;
    s[kCall] = this;
    this.#stream = s;
    this.#connection = connection;
    this.#state = OPEN;
    connection.streamOpened();
    s.on('response', onStreamResponse);
    s.on('headers', onStreamHeaders);
    s.on('trailers', onStreamTrailers);
    s.on('data', onStreamData);
    s.on('end', onStreamEnd);
    s.on('error', onStreamError);
    s.on('close', onStreamClose);
    if (this.#paused) s.pause();
    const body = this.#body;
    if (body === null) {
      this.requestSent();
      return;
    }
    s.on('finish', onStreamFinish);
    s.on('aborted', onStreamAborted);
    this.#unwatchBody = finished(body, { writable: false }, this.#bodyDone.bind(this));
    body.pipe(s);
  }

  /** The body's own error (a client that left mid-upload): the backend must not wait for the rest. */
  #bodyDone(err?: Error | null): void {
    if (!err || this.#state === DONE) return;
    this.#cancel();
    this.#fail(err);
  }

  /** A 1xx head (RFC 9110 §15.2): passed on before the final one; Exchange forwards or drops it. */
  informational(status: number, raw: string[]): void {
    if (this.#state !== OPEN || this.#status !== 0 || status < 100 || status > 199) return;
    try {
      this.#handler.onResponseStart?.(this, status, headerObject(raw), undefined);
    } catch (err) {
      this.abort(err as Error);
    }
  }

  /**
   * The final head. HTTP/2 has no reason phrase (RFC 9113 §8.3.2): statusMessage is undefined, so
   * the HTTP/1.1 side writes its standard one rather than an empty one.
   */
  response(status: number, raw: string[]): void {
    if (this.#state !== OPEN) return;
    this.#status = status;
    const headers = headerObject(raw);
    const length = headers['content-length'];
    if (typeof length === 'string' && /^\d+$/.test(length)) this.#expected = Number(length);
    try {
      this.#handler.onResponseStart?.(this, status, headers, undefined);
    } catch (err) {
      this.abort(err as Error);
    }
  }

  data(chunk: Buffer): void {
    if (this.#state !== OPEN) return;
    this.#received += chunk.length;
    try {
      this.#handler.onResponseData?.(this, chunk);
    } catch (err) {
      this.abort(err as Error);
    }
  }

  trailers(raw: string[]): void {
    if (this.#state === OPEN) this.#trailers = headerObject(raw);
  }

  /**
   * The response side ended. node:http2 also ends it when the stream is torn down (reset, its
   * session lost): then the stream is already destroyed, and that is a failure. An
   * RST_STREAM(NO_ERROR) before END_STREAM it ends like END_STREAM itself, which nothing tells
   * apart; a Content-Length shortfall still shows such a cut.
   */
  end(): void {
    if (this.#state !== OPEN) return;
    const s = this.#stream!;
    if (this.#status === 0 || s.destroyed) {
      this.#cancel();
      this.#fail(this.#closeError());
      return;
    }
    const bodyless = this.#method === 'HEAD' || this.#status === 204 || this.#status === 304;
    if (this.#expected >= 0 && !bodyless && this.#received !== this.#expected) {
      this.#cancel();
      this.#fail(new H2UpstreamError('UND_ERR_RES_CONTENT_LENGTH_MISMATCH', `the backend sent ${this.#received} of the ${this.#expected} bytes its Content-Length announced`));
      return;
    }
    this.#state = DONE;
    this.#detachBody();
    // A response complete before its request (RFC 9113 §8.1): the rest of the request is not needed.
    if (!s.writableEnded) s.close(NGHTTP2_CANCEL);
    try {
      this.#handler.onResponseEnd?.(this, this.#trailers);
    } catch {
      // the exchange is over: nothing left to report to
    }
  }

  /** The whole request was written: onRequestSent, once, unless the exchange already ended. */
  requestSent(): void {
    if (this.#sent || this.#state === DONE) return;
    this.#sent = true;
    try {
      this.#handler.onRequestSent?.();
    } catch (err) {
      this.abort(err as Error);
    }
  }

  /** The backend closed our sending side (RST_STREAM): stop feeding it before node ends the stream. */
  writableClosedByPeer(): void {
    if (this.#body !== null && this.#stream !== undefined) this.#body.unpipe(this.#stream);
  }

  streamError(err: Error): void {
    this.#error ??= err;
  }

  /** The stream is gone. If the exchange did not end, it failed: reported here, or retried once. */
  closed(): void {
    const connection = this.#connection!;
    connection.streamClosed();
    if (this.#state !== OPEN) return;
    const s = this.#stream!;
    // Refused (RFC 9113 §8.7, or beyond a GOAWAY's last stream id): the backend processed nothing,
    // so a request without a body goes again, once, on a session that is not going away.
    if (s.rstCode === NGHTTP2_REFUSED_STREAM && this.#status === 0 && this.#body === null && !this.#retried && !this.#aborted) {
      this.#retried = true;
      this.#state = PENDING;
      this.#stream = undefined;
      this.#connection = undefined;
      this.#error = undefined;
      this.#pool.route(this);
      return;
    }
    this.#fail(this.#closeError());
  }

  /** Ends the exchange with an error (also from the pool, for a call that never got a stream). */
  fail(err: Error): void {
    this.#fail(err);
  }

  #fail(err: Error): void {
    if (this.#state === DONE) return;
    this.#state = DONE;
    this.#detachBody();
    try {
      this.#handler.onResponseError?.(this, err);
    } catch {
      // the exchange is over: nothing left to report to
    }
  }

  /** RST_STREAM(CANCEL) for a stream still open. */
  #cancel(): void {
    const s = this.#stream;
    if (s !== undefined && !s.closed && !s.destroyed) s.close(NGHTTP2_CANCEL);
  }

  #detachBody(): void {
    const body = this.#body;
    if (body === null) return;
    this.#unwatchBody?.();
    this.#unwatchBody = undefined;
    if (this.#stream !== undefined) body.unpipe(this.#stream);
  }

  /**
   * Why a stream closed before its response ended, with a code the proxy can act on: the
   * HTTP/2 error code of a reset (NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, …; a GOAWAY's code when
   * it carried one), else UND_ERR_SOCKET for a connection that failed or closed under it.
   */
  #closeError(): Error {
    const seen = this.#error;
    if (seen instanceof H2UpstreamError) return seen;
    const code = (seen as NodeJS.ErrnoException | undefined)?.code;
    const rst = this.#stream?.rstCode ?? NGHTTP2_NO_ERROR;
    const reset = code === 'ERR_HTTP2_STREAM_ERROR' || code === 'ERR_HTTP2_SESSION_ERROR' || (code === undefined && !this.#connection!.lost);
    if (rst !== NGHTTP2_NO_ERROR && reset) {
      const name = h2ErrorName(rst);
      return new H2UpstreamError(name, `the backend reset the HTTP/2 stream (${name})`, { cause: seen });
    }
    return new H2UpstreamError(
      'UND_ERR_SOCKET',
      seen ? `the HTTP/2 connection to the backend failed: ${seen.message}` : 'the backend closed the HTTP/2 stream before the response was complete',
      { cause: seen },
    );
  }
}

const CONNECTING = 0;
const READY = 1;
const DRAINING = 2; // no new streams: GOAWAY, idle, or closing
const CLOSED = 3;

/**
 * One socket and its session. Streams wait in `#queue` until the server's SETTINGS arrived, so
 * a failed connect or handshake fails them before any byte of theirs was sent (safe to retry),
 * and its stream limit is known before the first stream (nghttp2 queues the ones beyond it).
 */
class Connection {
  readonly #pool: SessionPool;
  #state = CONNECTING;
  #socket: Socket | undefined;
  #session: ClientHttp2Session | undefined;
  #queue: Call[] = [];
  #active = 0;
  #connectTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleSince = 0;
  /** close() was asked while connecting: drain once ready. */
  #closeWhenReady = false;
  #ended = false;

  constructor(pool: SessionPool) {
    this.#pool = pool;
    const o = pool.options;
    this.#connectTimer = setTimeout(this.#onConnectTimeout, o.connectTimeoutMs);
    this.#connectTimer.unref();
    try {
      const socket = pool.secureContext
        ? tlsConnect({ host: pool.host, port: pool.port, ALPNProtocols: ['h2'], servername: o.servername, secureContext: pool.secureContext, rejectUnauthorized: o.rejectUnauthorized ?? true })
        : netConnect({ host: pool.host, port: pool.port });
      this.#socket = socket;
      socket.setNoDelay(true);
      socket.on('error', this.#onSocketError);
      socket.on('close', this.#onSocketClose);
      socket.once(pool.secureContext ? 'secureConnect' : 'connect', this.#onSocketConnect);
    } catch (err) {
      // An address node refuses outright: failed like any connect, after dispatch returned.
      queueMicrotask(() => this.#connectFailed(err as Error));
    }
  }

  /** The session was destroyed (its socket closed or failed): streams it tears down were not reset by the peer. */
  get lost(): boolean {
    return this.#session?.destroyed ?? true;
  }

  /** Takes new streams. */
  get usable(): boolean {
    return this.#state === CONNECTING || this.#state === READY;
  }

  add(call: Call): void {
    if (this.#state === READY) call.open(this, this.#session!);
    else this.#queue.push(call);
  }

  streamOpened(): void {
    if (this.#active++ === 0) this.#session!.ref();
  }

  streamClosed(): void {
    if (--this.#active > 0) return;
    const session = this.#session!;
    if (!session.destroyed) session.unref(); // an idle session does not keep the process alive
    this.#idleSince = performance.now();
    this.#armIdle(this.#pool.options.idleTimeoutMs);
  }

  /** Graceful: no new streams; the queued and open ones finish, then the session closes. */
  close(): void {
    if (this.#state === CONNECTING) {
      this.#closeWhenReady = true;
      return;
    }
    this.#drain();
  }

  /** Now: every queued and open stream fails with `err`. */
  destroy(err: Error): void {
    if (this.#state === CLOSED) return;
    if (this.#state === CONNECTING) {
      this.#connectFailed(err);
      return;
    }
    this.#state = CLOSED;
    this.#clearTimers();
    // Open streams are destroyed with `err` and report it (Call.#closeError passes ours through).
    this.#session!.destroy(err);
  }

  readonly #socketForSession = (): Socket => this.#socket!;

  readonly #onSocketConnect = (): void => {
    if (this.#state !== CONNECTING) return;
    const socket = this.#socket!;
    const o = this.#pool.options;
    if (this.#pool.secureContext) {
      const alpn = (socket as TLSSocket).alpnProtocol;
      if (alpn !== 'h2') {
        const chose = alpn ? `chose ${alpn}` : 'chose no protocol';
        this.#connectFailed(new H2UpstreamError('FULCRUM_H2_ALPN', `backend ${o.origin} does not speak HTTP/2: offered only h2 in ALPN, it ${chose}`));
        return;
      }
    }
    socket.off('error', this.#onSocketError); // the session reports socket errors from now on
    const session = http2.connect(o.origin, {
      createConnection: this.#socketForSession,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
    });
    this.#session = session;
    session.on('error', this.#onSessionError);
    session.on('close', this.#onSessionClose);
    session.on('goaway', this.#onGoaway);
    session.once('remoteSettings', this.#onReady);
    session.setLocalWindowSize(SESSION_WINDOW);
  };

  /** The server's SETTINGS arrived: it speaks HTTP/2; queued streams go. */
  readonly #onReady = (): void => {
    if (this.#state !== CONNECTING) return;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#state = READY;
    const session = this.#session!;
    const queue = this.#queue;
    this.#queue = [];
    for (const call of queue) call.open(this, session);
    if (this.#closeWhenReady) this.#drain();
    else if (this.#active === 0 && this.#state === READY) {
      session.unref();
      this.#idleSince = performance.now();
      this.#armIdle(this.#pool.options.idleTimeoutMs);
    }
  };

  readonly #onConnectTimeout = (): void => {
    this.#connectTimer = undefined;
    const o = this.#pool.options;
    this.#connectFailed(new H2UpstreamError('UND_ERR_CONNECT_TIMEOUT', `connecting to ${o.origin} (TCP, TLS and HTTP/2 SETTINGS) took longer than ${o.connectTimeoutMs} ms`));
  };

  /** Before the session exists: ECONNREFUSED, a TLS verification failure, … passed on as they are. */
  readonly #onSocketError = (err: Error): void => {
    this.#connectFailed(err);
  };

  readonly #onSocketClose = (): void => {
    if (this.#state === CONNECTING) this.#connectFailed(this.#handshakeError(undefined));
  };

  readonly #onSessionError = (err: Error): void => {
    // Once ready, the open streams report it themselves (node destroys them with it).
    if (this.#state === CONNECTING) this.#connectFailed(this.#handshakeError(err));
  };

  readonly #onSessionClose = (): void => {
    if (this.#state === CONNECTING) this.#connectFailed(this.#handshakeError(undefined));
    this.#state = CLOSED;
    this.#clearTimers();
    this.#end();
  };

  /**
   * RFC 9113 §6.8: no new streams on this session; node lets the open ones finish (refusing those
   * beyond the last stream id, which Call retries) and closes it after them.
   */
  readonly #onGoaway = (): void => {
    if (this.#state === CONNECTING) {
      this.#connectFailed(this.#handshakeError(undefined));
      return;
    }
    if (this.#state === READY) this.#state = DRAINING;
    this.#pool.retire(this);
  };

  readonly #onIdleTimer = (): void => {
    this.#idleTimer = undefined;
    if (this.#state !== READY || this.#active > 0) return;
    const left = this.#pool.options.idleTimeoutMs - (performance.now() - this.#idleSince);
    if (left > 0) this.#armIdle(left);
    else this.#drain();
  };

  /** One timer per idle period: a stream opening and closing in between costs a clock read. */
  #armIdle(ms: number): void {
    if (this.#idleTimer !== undefined || this.#state !== READY) return;
    this.#idleTimer = setTimeout(this.#onIdleTimer, ms);
    this.#idleTimer.unref();
  }

  #drain(): void {
    if (this.#state === CLOSED) return;
    this.#state = DRAINING;
    this.#pool.retire(this);
    this.#session?.close();
  }

  #handshakeError(cause: Error | undefined): Error {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    // A plain socket error (ECONNRESET, EPIPE) is passed on as it is.
    if (cause && code !== undefined && /^E[A-Z]+$/.test(code)) return cause;
    const what = cause ? `failed: ${cause.message}` : 'was closed by the backend';
    return new H2UpstreamError('FULCRUM_H2_HANDSHAKE', `the HTTP/2 handshake with ${this.#pool.options.origin} ${what} before its SETTINGS arrived`, { cause });
  }

  /** Connecting failed: every queued call gets `err`; the next dispatch connects anew. */
  #connectFailed(err: Error): void {
    if (this.#state !== CONNECTING) return;
    this.#state = CLOSED;
    this.#clearTimers();
    this.#pool.retire(this);
    if (this.#session) this.#session.destroy();
    else this.#socket?.destroy();
    const queue = this.#queue;
    this.#queue = [];
    for (const call of queue) call.fail(err);
    this.#end();
  }

  #clearTimers(): void {
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#idleTimer);
    this.#connectTimer = undefined;
    this.#idleTimer = undefined;
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#pool.ended(this);
  }
}

const POOL_OPEN = 0;
const POOL_CLOSING = 1;
const POOL_DESTROYED = 2;

/** The upstream's state: its settings, the session new streams go to, all sessions still alive. */
class SessionPool {
  readonly options: H2UpstreamOptions;
  readonly host: string;
  readonly port: number;
  readonly scheme: 'http' | 'https';
  /** :authority when a request has no Host. */
  readonly authority: string;
  /** Built once: the CA bundle is parsed once, not per connection. Undefined for h2c. */
  readonly secureContext: SecureContext | undefined;
  #state = POOL_OPEN;
  #current: Connection | undefined;
  readonly #all = new Set<Connection>();
  #waiters: (() => void)[] = [];

  constructor(options: H2UpstreamOptions) {
    const url = new URL(options.origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`an HTTP/2 upstream origin is http: or https:, not ${url.protocol}`);
    this.options = { ...options, origin: url.origin };
    this.scheme = url.protocol === 'https:' ? 'https' : 'http';
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port === '' ? (this.scheme === 'https' ? 443 : 80) : Number(url.port);
    this.authority = url.host;
    this.secureContext = this.scheme === 'https' ? createSecureContext(options.ca !== undefined ? { ca: options.ca } : {}) : undefined;
  }

  route(call: Call): void {
    if (this.#state !== POOL_OPEN) {
      call.fail(this.#state === POOL_DESTROYED ? new H2UpstreamError('UND_ERR_DESTROYED', 'the HTTP/2 upstream was destroyed') : new H2UpstreamError('UND_ERR_CLOSED', 'the HTTP/2 upstream is closed'));
      return;
    }
    let connection = this.#current;
    if (connection === undefined || !connection.usable) {
      connection = new Connection(this);
      this.#current = connection;
      this.#all.add(connection);
    }
    connection.add(call);
  }

  /** `connection` takes no new streams. */
  retire(connection: Connection): void {
    if (this.#current === connection) this.#current = undefined;
  }

  /** `connection` is closed. */
  ended(connection: Connection): void {
    this.retire(connection);
    this.#all.delete(connection);
    if (this.#all.size === 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
    }
  }

  get open(): boolean {
    return this.#state === POOL_OPEN;
  }

  close(): Promise<void> {
    if (this.#state === POOL_OPEN) this.#state = POOL_CLOSING;
    this.#current = undefined;
    for (const c of [...this.#all]) c.close();
    return this.#settled();
  }

  destroy(): Promise<void> {
    this.#state = POOL_DESTROYED;
    this.#current = undefined;
    const err = new H2UpstreamError('UND_ERR_DESTROYED', 'the HTTP/2 upstream was destroyed');
    for (const c of [...this.#all]) c.destroy(err);
    return this.#settled();
  }

  #settled(): Promise<void> {
    if (this.#all.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/**
 * An HTTP/2 backend behind undici's dispatch surface: `dispatch(options, handler)` with the
 * DispatchHandler hooks Exchange implements. One session, opened on first use, replaced when it
 * closes, fails or receives GOAWAY, closed after idleTimeoutMs without streams.
 */
export class H2Upstream {
  readonly #pool: SessionPool;

  constructor(options: H2UpstreamOptions) {
    this.#pool = new SessionPool(options);
  }

  /**
   * Same contract as undici's Dispatcher.dispatch for the fields Exchange uses. onRequestStart
   * comes first, synchronously; errors (a refused connect too) arrive as onResponseError, never
   * as a throw. False when the upstream is closed (the handler has had onResponseError).
   */
  dispatch(options: H2DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const call = new Call(this.#pool, options, handler);
    if (!call.start()) return true;
    const open = this.#pool.open;
    this.#pool.route(call);
    return open;
  }

  /** Graceful: no new streams; open ones finish. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  /** Now: every open stream fails. */
  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}
