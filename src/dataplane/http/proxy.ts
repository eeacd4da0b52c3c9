/**
 * The HTTP/1.1 forwarding path: pick a backend, forward the request over a pooled keep-alive
 * connection with undici's low-level dispatch, stream the response back with backpressure, retry
 * on another backend when that is safe, and answer 502 / 503 / 504 when it is not possible.
 *
 * The client side is node:http, whose llhttp parser is strict: it refuses requests that could
 * smuggle (Content-Length with Transfer-Encoding, duplicate or invalid Content-Length, bad chunk
 * sizes, oversized heads) before they reach this code.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2constants, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';
import type { ListenerMetrics, Metrics } from '../../observability/metrics.ts';
import { requestId } from '../../observability/request-id.ts';
import type { Listener, RedirectSettings } from '../../model/listener.ts';
import type { ListenerTlsRuntime } from '../tls/listener-tls.ts';
import type { CircuitBreakerState } from '../../runtime/circuit-breaker.ts';

type BreakerTicket = NonNullable<ReturnType<CircuitBreakerState['allow']>>;
import type { BackendTarget, ListenerRuntime, PoolRuntime } from '../../snapshot/snapshot.ts';
import { countsAsPassiveFailure, isHandshakeFailure, passiveOutcome } from '../../health/passive.ts';
import { connectionFacts, noteBackend, peerAddress, proxyPreamble } from '../accept.ts';
import { clientCertificate, clientConnection, downstreamResponseHeaders, h2Fields, requestHost, trailerFields, upstreamRequestHeaders } from './headers.ts';
import { learnAppCookie, pickSticky } from './sticky.ts';
import { answerFields, type BoundTransforms, hostPart, httpsLocation, type PolicyAnswer, requestFacts, type Routed, routeRequest, setFields } from './policies.ts';
import { NO_CONTENT } from '../../policy/routing/rule.ts';
import type { Upstreams } from './upstreams.ts';
import type { RelayWorkers } from '../tcp/relay-workers.ts';

/** A request as node:http (HTTP/1.x) or node:http2's compatibility layer (HTTP/2) hands it over. */
export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;

function isH2(res: ClientResponse): res is Http2ServerResponse {
  return 'stream' in res;
}

/**
 * node:http2's compatibility response takes the same calls Fulcrum makes (writeHead with a reason
 * and a flat field list, write, end, writeEarlyHints, addTrailers, 'drain'), so one code path
 * serves both; this only tells the type checker so.
 */
function writer(res: ClientResponse): ServerResponse {
  return res as ServerResponse;
}

/** Whether the client side of an exchange is gone (an HTTP/2 response has no `destroyed` of its own). */
function gone(res: ClientResponse): boolean {
  return isH2(res) ? res.stream.destroyed : res.destroyed;
}

/** What the proxy needs of the listener a request arrived on. */
export interface ListenerView {
  /** The listener's compiled runtime of the revision the request started under. */
  readonly runtime: ListenerRuntime;
  /** Set once the listener stops accepting: responses close their connection. */
  readonly closing: boolean;
  readonly metrics: ListenerMetrics;
  /** HTTPS listeners: the TLS they serve now (client certificates, the subject header); undefined on others. */
  readonly tls: ListenerTlsRuntime | undefined;
}

export interface ProxyDeps {
  upstreams: Upstreams;
  /** Layer 4 listeners' worker processes (see tcp/relay-workers.ts). */
  relayWorkers?: RelayWorkers;
  metrics: Metrics;
  /** Tells the current revision's balancer of `pool` that a target's load changed. */
  loadChanged(pool: PoolRuntime, index: number): void;
  now(): number;
  /** Uniform in [0, 1): a WEIGHTED_ROUTE's draw. */
  random(): number;
}

/** RFC 9110 §9.2.2: a request with one of these methods may be sent twice with the same effect. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Errors raised before any byte of the request reached the backend: always safe to retry. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

const TIMEOUT_ERRORS = new Set(['FULCRUM_BACKEND_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The client's request could not be sent as it is: its fault, not the backend's. */
const REQUEST_ERRORS = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

/** A Host value (RFC 9112 §3.2, RFC 3986 authority): a name or IP literal and an optional port. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/;

/**
 * What RFC 9112 §3.2 requires a server to refuse and node:http lets through: more than one Host
 * field, or an invalid one. Null when the head is fine.
 */
export function headProblem(req: ClientRequest): string | null {
  if (req.httpVersionMajor === 2 && 'stream' in req) {
    // RFC 9113 §8.3.1: :authority (or Host) names the target; it must be a valid authority.
    const authority = requestHost(req);
    if (authority === undefined) return 'an HTTP/2 request needs :authority or Host';
    if (!HOST_VALUE.test(authority)) return 'invalid :authority';
    return null;
  }
  if (req.httpVersionMajor !== 1) return `HTTP/${req.httpVersion} is not supported`;
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (++hosts > 1) return 'more than one Host header';
    if (!HOST_VALUE.test(raw[i + 1]!)) return 'invalid Host header';
  }
  if (hosts === 0 && req.httpVersionMinor >= 1) return 'an HTTP/1.1 request needs a Host header';
  return null;
}

class BackendTimeout extends Error {
  readonly code = 'FULCRUM_BACKEND_TIMEOUT';
}

class InvalidResponse extends Error {
  readonly code = 'FULCRUM_INVALID_RESPONSE';
}

/**
 * The client certificate subject header for the backend: always dropped from what the client sent
 * on an HTTPS listener, and set from a certificate Fulcrum verified.
 */
export function subjectFact(view: ListenerView, connection: Socket | null | undefined): { header: string; value: string | null } | null {
  const tls = view.tls;
  if (tls === undefined) return null;
  return { header: tls.subjectHeader, value: tls.requestCert ? clientCertificate(connection).subject : null };
}

/**
 * Why a request's connection may not be served under the listener's client_auth now: a certificate
 * that did not verify (OPTIONAL), or none while REQUIRED — which can be the case of a connection
 * opened before the listener began to require one. Null when it may.
 */
export function clientCertRefusal(view: ListenerView, connection: Socket | null | undefined): string | null {
  const tls = view.tls;
  if (!tls?.requestCert) return null;
  const cert = clientCertificate(connection);
  if (cert.problem !== null) return `the client certificate was not accepted: ${cert.problem}`;
  if (tls.rejectUnauthorized && cert.subject === null) return 'this listener requires a client certificate';
  return null;
}

/** A reason phrase node writes as it is (RFC 9112 §4: HTAB, SP, VCHAR). */
const REASON = /^[\t\x20-\x7e]*$/;

/** A 103's fields for node's writeEarlyHints, which wants one Link value per entry. */
function earlyHints(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (name !== 'link') out[name] = value;
    else out.link = (Array.isArray(value) ? value : [value]).flatMap((v) => v.split(/,\s*(?=<)/));
  }
  return out;
}

function errorCode(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.name;
}

const TITLES: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 405: 'Method Not Allowed', 408: 'Request Timeout', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/**
 * An HTTP listener with redirect_to_https: every request is sent to the same host and target on
 * HTTPS (the port left out when it is 443), nothing is forwarded.
 */
function redirectToHttps(deps: ProxyDeps, view: ListenerView, req: ClientRequest, res: ClientResponse, r: RedirectSettings): void {
  const host = requestHost(req);
  if (host === undefined) return answer(deps, view, req, res, 400, 'a redirect to HTTPS needs a Host header');
  const target = req.url!.startsWith('/') ? req.url! : (originForm(req) ?? '/');
  const location = httpsLocation(hostPart(host), r, target);
  req.resume();
  writer(res).writeHead(r.status_code, { location, 'content-length': 0, 'x-request-id': requestId(req.headers['x-request-id']) });
  res.end();
  deps.metrics.request(view.metrics, 'none', 'none', r.status_code, 0);
  countBytes(clientConnection(req), view.metrics);
}

/** The balancer's own answer: short, plain text, carrying the request id. */
export function sendProblem(res: ClientResponse, status: number, id: string, reason: string, close: boolean, extra: readonly string[] = []): void {
  if (res.headersSent || gone(res)) {
    res.destroy();
    return;
  }
  const title = TITLES[status] ?? 'Error';
  const body = `${status} ${title}: ${reason} (request id ${id})\n`;
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': id,
    'cache-control': 'no-store',
  };
  if (status === 503) headers['retry-after'] = 1;
  // HTTP/2 has no Connection field (RFC 9113 §8.2.2): the session ends with GOAWAY instead.
  if (close && !isH2(res)) headers.connection = 'close';
  for (let i = 0; i < extra.length; i += 2) headers[extra[i]!] = extra[i + 1]!;
  try {
    writer(res).writeHead(status, headers);
    writer(res).end(body);
  } catch {
    // Fields left from a head node refused: the client gets a cut instead of an answer.
    res.destroy();
  }
}

/** Forgets the fields of a head node refused to write, so an answer of Fulcrum's own can follow. */
function clearHead(res: ServerResponse): void {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
}

/** Bytes read and written on a client socket at the end of its previous request. */
const lastCount = new WeakMap<Socket, { read: number; written: number }>();

/** Counts the bytes a request and its response moved on the client connection. */
export function countBytes(socket: Socket | null, m: ListenerMetrics): void {
  if (!socket) return;
  const prev = lastCount.get(socket);
  const read = socket.bytesRead;
  const written = socket.bytesWritten;
  // A connection already gone (an HTTP/2 session closed under its last stream) has nothing to read:
  // a counter that took NaN would stay NaN for good.
  if (!Number.isFinite(read) || !Number.isFinite(written) || read < (prev?.read ?? 0) || written < (prev?.written ?? 0)) return;
  m.bytesIn.inc(read - (prev?.read ?? 0));
  m.bytesOut.inc(written - (prev?.written ?? 0));
  if (prev) {
    prev.read = read;
    prev.written = written;
  } else lastCount.set(socket, { read, written });
}

/** A flat field list with its names in lower case. */
function lowerNames(fields: string[]): string[] {
  return fields.map((f, i) => (i % 2 === 0 ? f.toLowerCase() : f));
}

/**
 * One client request and its way through one or more backends. Implements undici's dispatch
 * handler, so the response streams straight from the upstream parser into the client response.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #deps: ProxyDeps;
  readonly #view: ListenerView;
  /** The listener as the request found it: its timeouts hold for the whole exchange. */
  readonly #listener: Listener;
  readonly #pool: PoolRuntime;
  /** The request target in origin-form. */
  readonly #path: string;
  /** What the pool's circuit breaker let this request in as; null when the pool has none. */
  readonly #ticket: BreakerTicket | null;
  readonly #req: ClientRequest;
  readonly #res: ServerResponse;
  /** The client speaks HTTP/2: no Connection field, no reason phrase. */
  readonly #h2: boolean;
  readonly #id: string;
  readonly #clientIp: string;
  /** The client connection (for HTTP/2 the session's), taken while it is certainly there. */
  readonly #connection: Socket;
  readonly #hasBody: boolean;
  readonly #started = performance.now();
  #headers: string[] | undefined;
  #headersH2 = false;
  /** Session persistence: the cookie pinning the client to the backend that answers, when it changed. */
  #setCookie: string | null = null;
  /** The matched routing rule's header edits; null when there is no rule or it edits nothing. */
  readonly #transforms: BoundTransforms | null;
  /** Fields a rate limit adds to the response (`headers_on_allowed`). */
  readonly #rateHeaders: readonly [string, string][] | undefined;
  #bodyTimer: NodeJS.Timeout | undefined;
  #tried: Set<number> | undefined;
  #target: BackendTarget | undefined;
  #index = -1;
  #dispatchedAt = 0;
  #controller: Dispatcher.DispatchController | undefined;
  #status = 0;
  #done = false;
  #lastError = '';
  /** Time to the response head, ms: what LEAST_RESPONSE_TIME and the API's averages measure. */
  #latency = 0;
  /**
   * backend_ms: from the request fully sent to the response head (connecting has connect_ms, an
   * upload takes as long as it takes), then between body chunks; and idle_ms for a client that
   * stopped reading. Fulcrum's own timer, one per exchange: undici's parser timers have about a
   * second of resolution, and allocate a timer per request that lives long enough to burden the
   * garbage collector. It fires at the shorter of the two limits and re-arms itself for what is
   * left, so progress costs a clock read, not a timer operation.
   */
  #timer: NodeJS.Timeout | undefined;
  /** When the backend last made progress (ms, performance clock). */
  #activityAt = 0;
  #timedOut = false;
  /** Since when the client has not been reading (ms, performance clock); 0 while it reads. */
  #pausedAt = 0;

  constructor(
    deps: ProxyDeps,
    view: ListenerView,
    pool: PoolRuntime,
    req: ClientRequest,
    res: ClientResponse,
    path: string,
    ticket: BreakerTicket | null,
    routed: Routed | null = null,
  ) {
    this.#deps = deps;
    this.#transforms = routed?.transforms ?? null;
    this.#rateHeaders = routed?.rateHeaders;
    this.#ticket = ticket;
    this.#view = view;
    this.#listener = view.runtime.listener;
    this.#pool = pool;
    this.#path = path;
    this.#req = req;
    this.#res = writer(res);
    this.#h2 = isH2(res);
    this.#id = routed?.id ?? requestId(req.headers['x-request-id']);
    this.#connection = clientConnection(req);
    this.#clientIp = peerAddress(this.#connection);
    const length = req.headers['content-length'];
    // HTTP/2 frames the body itself: there is one unless the HEADERS frame ended the stream.
    this.#hasBody =
      'stream' in req ? !req.stream.endAfterHeaders : req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    res.on('close', this.#onClientClose);
    // node times HTTP/1.x requests against client_ms itself; an HTTP/2 request body is timed here.
    if (this.#h2 && this.#hasBody) {
      this.#bodyTimer = setTimeout(this.#onBodyTimeout, this.#listener.timeouts.client_ms);
      req.once('end', () => clearTimeout(this.#bodyTimer));
    }
  }

  /** An HTTP/2 request body did not arrive within client_ms: 408 if nothing was answered yet, else a reset. */
  readonly #onBodyTimeout = (): void => {
    if (this.#done || this.#req.complete) return;
    if (this.#status !== 0 || this.#res.headersSent) {
      this.#res.destroy(); // counted as the client's leaving, like a cut HTTP/1.1 connection
      return;
    }
    this.#done = true;
    clearTimeout(this.#timer);
    this.#controller?.abort(new Error('the request body did not arrive in time'));
    this.#release(false, 0, false);
    sendProblem(this.#res, 408, this.#id, 'the request was not received in time', false, this.#view.runtime.responseHeaders);
    this.#record(408);
  };

  start(): void {
    const choice = pickSticky(this.#pool, this.#req, this.#clientIp, this.#deps.now(), this.#listener.protocol === 'HTTPS', this.#tried);
    const index = choice.index;
    this.#setCookie = choice.setCookie;
    if (index < 0) {
      if (this.#tried === undefined) this.#fail(503, 'no usable backend');
      else this.#fail(502, `backend failed (${this.#lastError}) and no other backend can take the request`);
      return;
    }
    const target = this.#pool.targets[index]!;
    this.#target = target;
    this.#index = index;
    noteBackend(this.#connection, target.id);
    target.record.connections.add(this.#terminate);
    this.#deps.loadChanged(this.#pool, index);

    const listener = this.#listener;
    // Built once; a retry on a backend of the other HTTP version rebuilds them (TE differs).
    const h2 = target.upstream.tls.http2;
    if (this.#headers === undefined || this.#headersH2 !== h2) {
      this.#headersH2 = h2;
      this.#headers = upstreamRequestHeaders(this.#req, {
        clientIp: this.#clientIp,
        proto: listener.protocol === 'HTTPS' ? 'https' : 'http',
        port: listener.port,
        requestId: this.#id,
        subject: subjectFact(this.#view, this.#connection),
        drop: this.#view.runtime.dropHeaders,
        h2Upstream: h2,
      });
      if (this.#transforms !== null) this.#headers = this.#transforms.requestHeaders(this.#headers);
    }
    this.#dispatchedAt = performance.now();
    this.#timedOut = false;
    let upstream;
    try {
      const spec = target.upstream;
      upstream =
        spec.proxyProtocol === 'NONE'
          ? this.#deps.upstreams.get(spec, listener.timeouts.connect_ms)
          : this.#deps.upstreams.forClient(spec, listener.timeouts.connect_ms, this.#connection, proxyPreamble(spec.proxyProtocol, this.#connection)!);
    } catch (err) {
      // An address undici cannot reach at all: this backend fails, another may not.
      this.onResponseError(undefined, err as Error);
      return;
    }
    upstream.dispatch(
      {
        path: this.#path,
        method: this.#req.method!,
        headers: this.#headers,
        body: this.#hasBody ? this.#req : null,
        headersTimeout: 0, // this.#timer instead
        bodyTimeout: 0,
        idempotent: false, // one request per connection at a time: never pipelined behind another
        blocking: true,
      },
      this,
    );
  }

  /** The whole request reached the backend: from now on it has backend_ms to answer. */
  onRequestSent(): void {
    if (!this.#done && this.#status === 0 && this.#timer === undefined) this.#arm();
  }

  #arm(): void {
    const t = this.#listener.timeouts;
    this.#activityAt = performance.now();
    this.#timer = setTimeout(this.#onTimeout, Math.min(t.backend_ms, t.idle_ms));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#done) controller.abort(new Error('client went away'));
    else if (this.#timedOut) controller.abort(new BackendTimeout('backend timeout'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    const res = this.#res;
    if (status < 200) {
      // Interim responses pass through (RFC 9110 §15.2) to HTTP/1.1 clients; 100 Continue was
      // already Fulcrum's to send. Hints are optional: one node cannot write is dropped.
      if (this.#req.httpVersionMajor === 1 && this.#req.httpVersionMinor < 1) return;
      try {
        if (status === 103) res.writeEarlyHints(earlyHints(headers));
        else if (status === 102 && !this.#h2) res.writeProcessing();
      } catch {
        // not forwarded
      }
      return;
    }
    // From now on the timer bounds silence between body chunks (armed here when the backend
    // answered before the whole request was sent).
    if (this.#timer === undefined) this.#arm();
    else this.#activityAt = performance.now();
    this.#latency = performance.now() - this.#dispatchedAt;
    this.#passive(status === 503, 'status 503');
    let out = downstreamResponseHeaders(headers);
    if (this.#transforms !== null) out = this.#transforms.responseHeaders(out);
    // Set, not added: a backend's own X-RateLimit-* would otherwise go out twice, disagreeing.
    if (this.#rateHeaders !== undefined) out = setFields(out, this.#rateHeaders);
    const h2 = this.#h2;
    if (this.#pool.sticky !== null) {
      if (this.#setCookie !== null) out.push('set-cookie', this.#setCookie);
      learnAppCookie(this.#pool, headers['set-cookie'], this.#target!.id, this.#deps.now());
    }
    if (this.#view.closing && !h2) out.push('connection', 'close');
    const extra = this.#view.runtime.responseHeaders;
    for (let i = 0; i < extra.length; i++) out.push(extra[i]!);
    if (h2) {
      // HTTP/2 field names are lower case (RFC 9113 §8.2.1); a rule's or a rate limit's fields keep the spelling configured.
      if (this.#transforms !== null || this.#rateHeaders !== undefined) out = lowerNames(out);
      out = h2Fields(out);
      // gRPC's Trailers-Only answer: the status in the head, and no body can follow.
      if (headers['grpc-status'] !== undefined && String(headers['content-type']).startsWith('application/grpc')) {
        this.#trailersOnly(status, out);
        return;
      }
    }
    try {
      // The backend's reason phrase only when it is plain text node can write; else node's own.
      // HTTP/2 has no reason phrase (RFC 9113 §8.3.2).
      const reason = !h2 && statusMessage !== undefined && REASON.test(statusMessage) ? statusMessage : undefined;
      res.writeHead(status, reason, out);
    } catch (err) {
      // A head node refuses to write (an invalid field): nothing was sent yet, so a clean 502.
      clearHead(res);
      controller.abort(new InvalidResponse((err as Error).message));
      return;
    }
    this.#status = status;
  }

  /**
   * A gRPC "Trailers-Only" answer (the status in the head, no body): to an HTTP/2 client it must be
   * one HEADERS frame that ends the stream, or gRPC clients see a call without a status. node's
   * compatibility response always sends the head on its own, so the stream is answered directly.
   */
  #trailersOnly(status: number, out: string[]): void {
    const head: OutgoingHttpHeaders = { ':status': status };
    for (let i = 0; i < out.length; i += 2) {
      const prev = head[out[i]!];
      head[out[i]!] = prev === undefined ? out[i + 1]! : ([] as string[]).concat(prev as string | string[], out[i + 1]!);
    }
    this.#status = status;
    (this.#res as unknown as Http2ServerResponse).stream.respond(head, { endStream: true });
    this.#finish(status, status >= 500);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#done) return;
    this.#activityAt = performance.now();
    if (!this.#res.write(chunk)) {
      this.#pausedAt = performance.now();
      controller.pause();
      this.#res.once('drain', this.#resume);
    }
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    clearTimeout(this.#timer);
    if (this.#done) return; // answered already (Trailers-Only)
    // Trailers pass on (gRPC's status lives there); HTTP/1.1 clients get them with chunked bodies.
    for (const _ in trailers) {
      const fields = trailerFields(trailers, this.#h2);
      try {
        if (fields !== null) this.#res.addTrailers(fields);
      } catch {
        // a trailer node cannot write (an invalid character): the response ends without them
      }
      break;
    }
    this.#res.end();
    this.#finish(this.#status, this.#status >= 500);
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const code = errorCode(err);
    if (REQUEST_ERRORS.has(code)) {
      // Refused before it left: nothing to hold against the backend, nothing to retry.
      this.#release(false, 0, false);
      if (!this.#done) this.#fail(400, `the request cannot be forwarded: ${err.message}`);
      return;
    }
    // Released first: a backend this failure marks down (SHUTDOWN_SESSIONS) must not cut the very
    // request that is about to be retried elsewhere.
    this.#release(true, performance.now() - this.#dispatchedAt);
    if (countsAsPassiveFailure(code)) this.#passive(true, code);
    if (this.#done) return; // the client left, or the backend was removed: nothing to answer
    if (this.#status !== 0 || this.#res.headersSent) {
      // The response had begun: the client must see a cut, not a clean but truncated message.
      this.#done = true;
      this.#res.destroy(err);
      this.#record(this.#status);
      return;
    }
    this.#lastError = code;
    if (TIMEOUT_ERRORS.has(code)) {
      this.#fail(504, `backend ${this.#target!.id} did not answer within ${this.#listener.timeouts.backend_ms} ms`);
      return;
    }
    if (this.#retryable(code)) {
      (this.#tried ??= new Set()).add(this.#index);
      this.#target = undefined;
      this.#controller = undefined;
      this.#status = 0;
      this.start();
      return;
    }
    this.#fail(502, `backend ${this.#target!.id} failed (${code})`);
  }

  /** A request is re-sent only when none of it reached the backend, or sending it twice is harmless. */
  #retryable(code: string): boolean {
    if ((this.#tried?.size ?? 0) >= this.#pool.retries) return false;
    if (CONNECT_ERRORS.has(code) || isHandshakeFailure(code)) return true; // the backend never saw a byte of it
    return IDEMPOTENT.has(this.#req.method!) && (!this.#hasBody || !this.#req.readableDidRead);
  }

  #fail(status: number, reason: string): void {
    this.#done = true;
    clearTimeout(this.#bodyTimer);
    sendProblem(this.#res, status, this.#id, reason, this.#view.closing, this.#view.runtime.responseHeaders);
    this.#record(status);
  }

  #finish(status: number, failed: boolean): void {
    this.#done = true;
    this.#release(failed, this.#latency);
    this.#record(status);
  }

  /** The backend's connection slot is free again; its latency and outcome are counted. */
  #release(failed: boolean, ms: number, measured = true): void {
    const target = this.#target;
    if (!target) return;
    if (!target.record.connections.delete(this.#terminate)) return;
    if (measured) target.record.observe(this.#deps.now(), ms, failed);
    this.#deps.loadChanged(this.#pool, this.#index);
  }

  /** Live traffic's verdict on the current backend (passive health). */
  #passive(failed: boolean, error: string): void {
    const target = this.#target;
    if (!this.#pool.passive) return;
    if (target && passiveOutcome(target.record, failed, error, this.#deps.now())) this.#deps.loadChanged(this.#pool, this.#index);
  }

  #record(status: number): void {
    if (this.#ticket) {
      // A client that left says nothing of the backend; a slow call is a slow answer (head), not a long download.
      const outcome = status === 499 ? 'neutral' : status >= 500 ? 'failure' : 'success';
      this.#pool.breaker!.record(this.#deps.now(), this.#ticket, outcome, this.#status !== 0 ? this.#latency : performance.now() - this.#started);
    }
    const m = this.#view.metrics;
    this.#deps.metrics.request(m, this.#pool.pool.pool_id, this.#target?.id ?? 'none', status, (performance.now() - this.#started) / 1000);
    countBytes(this.#connection, m);
  }

  readonly #onTimeout = (): void => {
    const now = performance.now();
    const t = this.#listener.timeouts;
    if (this.#pausedAt !== 0) {
      // The client is not reading. It has the listener's idle_ms to start again, then it is cut.
      const waited = now - this.#pausedAt;
      if (waited < t.idle_ms) {
        this.#timer = setTimeout(this.#onTimeout, t.idle_ms - waited);
        return;
      }
      this.#done = true;
      this.#controller?.abort(new Error('client stopped reading'));
      this.#release(false, 0, false);
      this.#res.destroy();
      this.#record(this.#status);
      return;
    }
    const silent = now - this.#activityAt;
    if (silent < t.backend_ms) {
      this.#timer = setTimeout(this.#onTimeout, t.backend_ms - silent);
      return;
    }
    this.#timedOut = true;
    this.#controller?.abort(new BackendTimeout('backend timeout'));
  };

  readonly #resume = (): void => {
    this.#pausedAt = 0;
    this.#activityAt = performance.now();
    this.#controller?.resume();
  };

  /** The client connection closed: if the exchange is still running, the backend request is abandoned. */
  readonly #onClientClose = (): void => {
    clearTimeout(this.#bodyTimer);
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    // Released first, unmeasured: the client's patience says nothing about the backend's speed.
    this.#release(false, 0, false);
    this.#controller?.abort(new Error('client closed the connection'));
    this.#record(499);
  };

  /** Cuts the exchange at once: the backend was removed or its drain timed out. */
  readonly #terminate = (): void => {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#controller?.abort(new Error('backend removed'));
    this.#res.destroy();
    this.#record(502); // counted (and a circuit breaker's probe slot given back) like any cut
  };
}

/** Answers a request without a backend: refused, or nowhere to send it. */
function answer(
  deps: ProxyDeps,
  view: ListenerView,
  req: ClientRequest,
  res: ClientResponse,
  status: number,
  reason: string,
  closeConnection = false,
  poolId = view.runtime.pool?.pool.pool_id ?? 'none',
  id = requestId(req.headers['x-request-id']),
): void {
  req.resume();
  const close = view.closing || status === 400 || closeConnection;
  sendProblem(res, status, id, reason, close, view.runtime.responseHeaders);
  deps.metrics.request(view.metrics, poolId, 'none', status, 0);
  countBytes(clientConnection(req), view.metrics);
}

/**
 * The request target in origin-form (`/path?query`), as backends are sent it. An absolute-form
 * target (RFC 9112 §3.2.2) must name the same authority as Host, which is what Fulcrum checked
 * and forwards; null when it does not, or is not a URL.
 */
export function originForm(req: ClientRequest): string | null {
  const target = req.url!;
  if (target.startsWith('/')) return target;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.host.toLowerCase() !== (req.headers.host ?? '').toLowerCase()) return null;
  return `${url.pathname}${url.search}`;
}

/**
 * Once an HTTP/2 response is complete, a request body still being uploaded is stopped with
 * RST_STREAM(NO_ERROR) (RFC 9113 §8.1), so the stream does not hang on flow control — what closing
 * the connection does for HTTP/1.1.
 */
function stopUploadAfterAnswer(req: Http2ServerRequest): void {
  const stream = req.stream;
  if (stream.endAfterHeaders) return;
  // The stream's own 'finish': the compatibility response does not relay it.
  stream.once('finish', () => {
    if (!req.complete && !stream.destroyed) stream.close(h2constants.NGHTTP2_NO_ERROR);
  });
}

/** Handles one request on an HTTP listener. */
export function forward(deps: ProxyDeps, view: ListenerView, req: ClientRequest, res: ClientResponse): void {
  const problem = headProblem(req);
  if (problem !== null) return answer(deps, view, req, res, 400, problem);
  if (view.runtime.redirect !== null) return redirectToHttps(deps, view, req, res, view.runtime.redirect);
  if (req.method === 'CONNECT') return answer(deps, view, req, res, 405, 'CONNECT is not served by this listener');
  const connection = clientConnection(req);
  // Let in over the connection throttle only to be told so (HTTPS: the answer needs TLS).
  if (connectionFacts(connection)?.refused !== undefined) {
    if ('stream' in req) req.stream.session?.close();
    return answer(deps, view, req, res, 503, 'too many connections from your address', true);
  }
  const refusal = clientCertRefusal(view, connection);
  if (refusal !== null) return answer(deps, view, req, res, 403, refusal);
  if ('stream' in req) stopUploadAfterAnswer(req);
  if (req.url === '*') {
    if (req.method !== 'OPTIONS') return answer(deps, view, req, res, 400, `'*' is a request target for OPTIONS only`);
    // Asterisk-form asks about the server itself (RFC 9110 §9.3.7): to a client, that is Fulcrum.
    req.resume();
    writer(res).writeHead(200, { allow: 'OPTIONS, GET, HEAD, POST, PUT, PATCH, DELETE', 'content-length': 0 });
    res.end();
    return;
  }
  let path = originForm(req);
  if (path === null) return answer(deps, view, req, res, 400, 'the request target must be a path, or an absolute URL naming the Host');
  let pool = view.runtime.pool;
  let routed: Routed | null = null;
  const policies = view.runtime.policies;
  if (policies !== null) {
    const facts = requestFacts(req.method!, requestHost(req), path, req.headers, peerAddress(connection), view.runtime.listener);
    routed = routeRequest(policies, facts, path, pool, requestId(req.headers['x-request-id']), deps.now(), deps.random);
    if (routed.answer !== null) return answerForPolicy(deps, view, req, res, routed.answer, routed.id, routed.transforms);
    if (routed.pool === null) return answer(deps, view, req, res, 503, routed.missing, false, routed.poolId, routed.id);
    pool = routed.pool;
    path = routed.target;
  }
  if (pool === null) return answer(deps, view, req, res, 503, 'the listener has no default pool');
  const ticket = pool.breaker?.allow(deps.now()) ?? null;
  if (pool.breaker !== null && ticket === null) {
    return answer(deps, view, req, res, 503, `the circuit breaker of pool ${pool.pool.pool_id} is open`, false, pool.pool.pool_id, routed?.id);
  }
  new Exchange(deps, view, pool, req, res, path, ticket, routed).start();
}

/**
 * An answer of the policy stage (an ACL's denial, a rate limit's refusal, a rule's redirect or
 * fixed response): the configured status, fields and body, with the rule's response transforms.
 */
function answerForPolicy(deps: ProxyDeps, view: ListenerView, req: ClientRequest, res: ClientResponse, d: PolicyAnswer, id: string, transforms: BoundTransforms | null): void {
  req.resume();
  const h2 = isH2(res);
  const fields = answerFields(d, id, transforms, view.runtime.responseHeaders);
  if (view.closing && !h2) fields.push('connection', 'close');
  try {
    writer(res).writeHead(d.status, h2 ? h2Fields(lowerNames(fields)) : fields);
    writer(res).end(req.method === 'HEAD' || NO_CONTENT.has(d.status) ? '' : d.body);
  } catch {
    // A field node refuses (the API refuses what it knows node would): a cut rather than half an answer.
    res.destroy();
  }
  deps.metrics.request(view.metrics, d.poolId, 'none', d.status, 0);
  countBytes(clientConnection(req), view.metrics);
}
