/**
 * WebSocket (and any `Upgrade`) handshakes: the request head is re-sent to a backend over a fresh
 * connection. Only once the backend answers `101 Switching Protocols` do bytes pass both ways
 * untouched; any other answer is relayed to the client and nothing more the client sends reaches
 * the backend (else a refused upgrade would open a raw channel past every check). A tunnel belongs
 * to its backend, not to a configuration revision: it stays open across every change that does
 * not remove that backend, and closes after the listener's idle timeout only when no byte moved
 * either way.
 */
import { type IncomingMessage, STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { passiveOutcome } from '../../health/passive.ts';
import { connectBackend } from '../backend-connect.ts';
import { requestId } from '../../observability/request-id.ts';
import type { CircuitBreakerState } from '../../runtime/circuit-breaker.ts';
import type { PoolRuntime, UpstreamSpec } from '../../snapshot/snapshot.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { pickSticky } from './sticky.ts';
import { answerFields, type BoundTransforms, type PolicyAnswer, requestFacts, routeRequest } from './policies.ts';
import { NO_CONTENT } from '../../policy/routing/rule.ts';
import { connectionFacts, noteBackend, noteEnd, peerAddress, proxyPreamble } from '../accept.ts';
import { clientCertRefusal, countBytes, headProblem, type ListenerView, originForm, type ProxyDeps, subjectFact } from './proxy.ts';

/** How long a refused client has to read Fulcrum's answer before its socket is closed. */
const LINGER_MS = 5_000;

const TITLES: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 405: 'Method Not Allowed', 502: 'Bad Gateway', 503: 'Service Unavailable' };

/**
 * Answers on a socket node:http handed over (upgrade, CONNECT) and closes it: the socket is read
 * (and discarded) so the client's close is seen, and cut after a grace period if it never comes.
 */
export function answerRaw(socket: Socket, status: number, id: string, reason: string, extra = ''): void {
  const title = TITLES[status] ?? 'Error';
  const body = `${status} ${title}: ${reason} (request id ${id})\n`;
  socket.on('error', () => socket.destroy());
  socket.resume();
  socket.setTimeout(LINGER_MS, () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${id}\r\n${status === 503 ? 'retry-after: 1\r\n' : ''}${extra}connection: close\r\n\r\n${body}`,
  );
}

/** A policy's answer (an ACL denial, a rate limit, a rule's redirect or fixed response) on a handed-over socket, which then closes. */
function answerDecision(socket: Socket, d: PolicyAnswer, id: string, transforms: BoundTransforms | null, listenerFields: readonly string[]): void {
  socket.on('error', () => socket.destroy());
  socket.resume();
  socket.setTimeout(LINGER_MS, () => socket.destroy());
  const fields = answerFields(d, id, transforms, listenerFields);
  let head = `HTTP/1.1 ${d.status} ${STATUS_CODES[d.status] ?? 'Unknown'}\r\n`;
  for (let i = 0; i < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
  socket.end(`${head}connection: close\r\n\r\n${NO_CONTENT.has(d.status) ? '' : d.body}`);
}

/** The status code at the start of the backend's first bytes, or 0 when it is not an HTTP status line. */
function statusOf(chunk: Buffer): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
  return m ? Number(m[1]) : 0;
}

/** A connection to the backend for one tunnel, over TLS when the backend asks for it; `ready` names the event that says it is up. */
function dial(spec: UpstreamSpec, preamble: Buffer | null): { socket: Socket; ready: 'connect' | 'secureConnect' } {
  const tls = spec.tls;
  const plain = connect({ host: spec.host, port: spec.port, noDelay: true });
  // A PROXY protocol header goes first, before TLS too (queued until the connection is up).
  if (preamble !== null) plain.write(preamble);
  if (!tls.enabled) return { socket: plain, ready: 'connect' };
  // WebSocket handshakes are HTTP/1.1 (RFC 6455), whatever the pool speaks otherwise.
  const socket = connectTls({
    socket: plain,
    host: spec.host,
    port: spec.port,
    rejectUnauthorized: tls.verify,
    ALPNProtocols: ['http/1.1'],
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
  });
  plain.once('error', (err) => socket.destroy(err));
  return { socket, ready: 'secureConnect' };
}

export function tunnel(deps: ProxyDeps, view: ListenerView, req: IncomingMessage, client: Socket, head: Buffer): void {
  let id = requestId(req.headers['x-request-id']);
  const started = performance.now();
  let pool: PoolRuntime | null = view.runtime.pool;
  const listener = view.runtime.listener;
  client.on('error', () => client.destroy());
  // Nothing from the client goes anywhere until the backend has agreed to switch protocols.
  client.pause();
  const done = (pool: string, backend: string, status: number) => {
    deps.metrics.request(view.metrics, pool, backend, status, (performance.now() - started) / 1000);
    countBytes(client, view.metrics);
  };
  // What passes through the tunnel after the handshake counts too, once it closes.
  client.once('close', () => countBytes(client, view.metrics));
  const refuse = (status: number, reason: string, poolId = pool?.pool.pool_id ?? 'none', backend = 'none') => {
    answerRaw(client, status, id, reason);
    done(poolId, backend, status);
  };
  /**
   * The handshake's outcome, once, for the pool's circuit breaker that let it through; every way a
   * handshake can end calls it (a probe slot must always come back). 0: ended without an answer.
   */
  let ticket: ReturnType<CircuitBreakerState['allow']> = null;
  let settled = false;
  const settle = (status: number, clientLeft = false) => {
    if (settled || ticket === null) return;
    settled = true;
    const outcome = clientLeft ? 'neutral' : status >= 500 || status === 0 ? 'failure' : 'success';
    pool!.breaker!.record(deps.now(), ticket, outcome, performance.now() - started);
  };
  client.once('close', () => settle(0, true));

  const problem = headProblem(req);
  if (problem !== null) return refuse(400, problem);
  const path = originForm(req);
  if (path === null) return refuse(400, 'the request target must be a path, or an absolute URL naming the Host');
  if (!/^websocket$/i.test(req.headers.upgrade ?? '')) return refuse(400, `upgrade to '${req.headers.upgrade}' is not supported`);
  const rejected = clientCertRefusal(view, client);
  if (rejected !== null) return refuse(403, rejected);
  const clientIp = peerAddress(client);
  if (connectionFacts(client)?.refused !== undefined) return refuse(503, 'too many connections from your address');
  let upstreamPath = path;
  let transforms: BoundTransforms | null = null;
  const policies = view.runtime.policies;
  if (policies !== null) {
    // The same policy stage as any request: a WebSocket handshake is an HTTP request until it is answered 101.
    const facts = requestFacts(req.method!, req.headers.host, path, req.headers, clientIp, listener);
    const routed = routeRequest(policies, facts, path, pool, id, deps.now(), deps.random);
    id = routed.id;
    transforms = routed.transforms;
    if (routed.answer !== null) {
      answerDecision(client, routed.answer, id, transforms, view.runtime.responseHeaders);
      done(routed.poolId, 'none', routed.answer.status);
      return;
    }
    if (routed.pool === null) return refuse(503, routed.missing, routed.poolId);
    pool = routed.pool;
    upstreamPath = routed.target;
  }
  if (pool === null) return refuse(503, 'the listener has no default pool');
  if (pool.breaker !== null) {
    ticket = pool.breaker.allow(deps.now());
    if (ticket === null) return refuse(503, `the circuit breaker of pool ${pool.pool.pool_id} is open`, pool.pool.pool_id);
  }

  const chosen = pool;
  let headers = upstreamRequestHeaders(
    req,
    {
      clientIp,
      proto: listener.protocol === 'HTTPS' ? 'https' : 'http',
      port: listener.port,
      requestId: id,
      subject: subjectFact(view, client),
      drop: view.runtime.dropHeaders,
    },
    true,
  );
  if (transforms !== null) headers = transforms.requestHeaders(headers);
  let requestHead = `${req.method} ${upstreamPath} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) requestHead += `${headers[i]}: ${headers[i + 1]}\r\n`;
  requestHead += '\r\n';

  connectBackend({
    pool: chosen,
    request: req,
    clientIp,
    connectMs: listener.timeouts.connect_ms,
    now: deps.now,
    loadChanged: deps.loadChanged,
    pick: (avoid) => pickSticky(chosen, req, clientIp, deps.now(), listener.protocol === 'HTTPS', avoid).index,
    open: (target) => dial(target.upstream, proxyPreamble(target.upstream.proxyProtocol, client)),
    gone: () => client.destroyed,
    closeClient: (why) => {
      noteEnd(client, why);
      client.destroy();
    },
    closed: (wasConnected) => {
      if (wasConnected) settle(0); // closed before answering the handshake (a no-op once it answered)
    },
    failed: (tried, lastError, target) => {
      const status = tried ? 502 : 503;
      if (target) refuse(502, `backend ${target.id} failed (${lastError})`, chosen.pool.pool_id, target.id);
      else refuse(status, tried ? `backend failed (${lastError})` : 'no usable backend');
      settle(status);
    },
    connected: (target, upstream, terminate) => {
      noteBackend(client, target.id);
      upstream.write(requestHead);
      upstream.once('data', (first: Buffer) => {
        const status = statusOf(first);
        target.record.observe(deps.now(), performance.now() - started, status >= 500 || status === 0);
        done(chosen.pool.pool_id, target.id, status);
        settle(status);
        if (status === 101) {
          if (chosen.passive) passiveOutcome(target.record, false, '', deps.now()); // an answer resets the count
          // Switched: from here on both directions are the application's.
          if (head.length > 0) upstream.write(head);
          client.pipe(upstream);
          client.resume();
        } else {
          // Refused: the answer goes to the client; the client's further bytes go nowhere.
          client.on('data', () => {});
          client.resume();
        }
      });
      upstream.pipe(client);
      // Idle only when nothing moves either way: writes to the client count as activity too.
      client.setTimeout(listener.timeouts.idle_ms, terminate);
      // An end from either side is passed on (pipe does it); a close without one cuts both.
      client.on('close', () => upstream.destroy());
    },
  });
}
