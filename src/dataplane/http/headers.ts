/**
 * Header rewriting for the HTTP forwarding path. RFC 9110 §7.6.1: hop-by-hop fields, and any
 * field the Connection header names, apply to one connection only and are never forwarded.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { IncomingHttpHeaders } from 'undici/types/header.js';

/** Never forwarded in either direction. `expect` is answered by Fulcrum itself (100 Continue). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

/** Set by Fulcrum, so a client cannot forge them; X-Forwarded-For is appended to instead. */
const REPLACED = new Set(['x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-request-id']);

/** Fields the Connection header names, beyond the usual keep-alive / close / upgrade tokens. */
function connectionNamed(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  let named: Set<string> | null = null;
  for (const token of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const t = token.trim().toLowerCase();
    if (t === '' || t === 'keep-alive' || t === 'close' || t === 'upgrade') continue;
    (named ??= new Set()).add(t);
  }
  return named;
}

export interface ForwardFacts {
  clientIp: string;
  proto: 'http' | 'https';
  port: number;
  requestId: string;
  /** HTTPS listeners: the client certificate subject header (a client's own value is dropped) and its verified value, if any. */
  subject: { header: string; value: string | null } | null;
  /** The backend speaks HTTP/2: `TE: trailers` passes (gRPC needs it, RFC 9113 §8.2.2 allows it). */
  h2Upstream?: boolean;
}

/** The authority a request names: Host, or HTTP/2's :authority (RFC 9113 §8.3.1). */
export function requestHost(req: IncomingMessage | Http2ServerRequest): string | undefined {
  const host = req.headers.host;
  if (host !== undefined) return host;
  const authority = req.headers[':authority'];
  return typeof authority === 'string' ? authority : undefined;
}

/** A TLS client's certificate as Fulcrum judged it, once per connection (not per request). */
export interface ClientCertificate {
  /** The subject (`CN=…,O=…`) of a certificate that verified against the listener's CA bundle. */
  subject: string | null;
  /** Why a certificate the client presented did not verify; null when none was presented or it verified. */
  problem: string | null;
}

const NO_CERTIFICATE: ClientCertificate = { subject: null, problem: null };
const judged = new WeakMap<object, ClientCertificate>();

/** RFC 4514 §2.4: the characters that would break a distinguished name apart are escaped. */
function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1');
}

export function clientCertificate(socket: Socket | null | undefined): ClientCertificate {
  if (!socket) return NO_CERTIFICATE;
  const known = judged.get(socket);
  if (known !== undefined) return known;
  const tls = socket as TLSSocket;
  let verdict = NO_CERTIFICATE;
  if (typeof tls.getPeerCertificate === 'function') {
    const peer = tls.getPeerCertificate();
    const subject = peer?.subject as unknown as Record<string, string | string[]> | undefined;
    if (subject && Object.keys(subject).length > 0) {
      verdict =
        tls.authorized === true
          ? {
              subject: Object.entries(subject)
                .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => `${k}=${escapeDn(x)}`))
                .join(','),
              problem: null,
            }
          : { subject: null, problem: String(tls.authorizationError ?? 'not verified') };
    }
  }
  judged.set(socket, verdict);
  return verdict;
}

/**
 * The request's headers as a flat [name, value, …] list for the backend: hop-by-hop fields
 * dropped, X-Forwarded-* and X-Request-ID set. `keepUpgrade` keeps Connection/Upgrade for a
 * tunnelled WebSocket handshake.
 */
export function upstreamRequestHeaders(req: IncomingMessage | Http2ServerRequest, facts: ForwardFacts, keepUpgrade = false): string[] {
  const raw = req.rawHeaders;
  const named = connectionNamed(req.headers.connection);
  const subjectHeader = facts.subject?.header;
  const out: string[] = [];
  let forwardedFor: string | undefined;
  let cookies: string | undefined;
  let hasHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // HTTP/2 pseudo-header fields (RFC 9113 §8.3) become the request line and Host upstream.
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'cookie') {
      // RFC 9113 §8.2.3: HTTP/2 may split Cookie into several fields; one field goes upstream.
      cookies = cookies === undefined ? raw[i + 1]! : `${cookies}; ${raw[i + 1]!}`;
      continue;
    }
    // TE is hop-by-hop (RFC 9110 §10.1.4), but "trailers" says the client takes trailer fields,
    // which Fulcrum passes on: an HTTP/2 backend gets it (gRPC servers require it).
    if (lower === 'te' && facts.h2Upstream && raw[i + 1]!.trim().toLowerCase() === 'trailers') {
      out.push(name, 'trailers');
      continue;
    }
    if (HOP_BY_HOP.has(lower) || REPLACED.has(lower) || named?.has(lower) || lower === subjectHeader) continue;
    if (lower === 'host') hasHost = true;
    out.push(name, raw[i + 1]!);
  }
  const host = requestHost(req);
  if (!hasHost && host !== undefined) out.push('Host', host);
  if (cookies !== undefined) out.push('Cookie', cookies);
  if (facts.subject?.value) out.push(facts.subject.header, facts.subject.value);
  if (keepUpgrade) out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? 'websocket');
  out.push(
    'X-Forwarded-For',
    forwardedFor === undefined ? facts.clientIp : `${forwardedFor}, ${facts.clientIp}`,
    'X-Forwarded-Proto',
    facts.proto,
    'X-Forwarded-Port',
    String(facts.port),
    'X-Request-ID',
    facts.requestId,
  );
  if (host !== undefined) out.push('X-Forwarded-Host', host);
  return out;
}

/** The backend's response headers as a flat list for the client, hop-by-hop fields dropped. */
export function downstreamResponseHeaders(headers: IncomingHttpHeaders): string[] {
  const named = connectionNamed(headers.connection);
  const out: string[] = [];
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  return out;
}

/** The address a client connected from, IPv4-mapped IPv6 shown as plain IPv4. */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}
