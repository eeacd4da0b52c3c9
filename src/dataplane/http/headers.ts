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

/**
 * RFC 9113 §8.2.2: connection-specific fields an HTTP/2 message must not carry (node refuses them
 * with an exception); `te` is allowed only as "trailers", which responses have no use for.
 */
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** Fields node's HTTP/2 layer accepts once per message (it throws on a second). */
const H2_SINGLE = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method', 'age', 'authorization',
  'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type',
  'date', 'dnt', 'etag', 'expires', 'from', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'range', 'referer', 'retry-after', 'tk',
  'upgrade-insecure-requests', 'user-agent', 'x-content-type-options',
]);

/**
 * A flat [name, value, …] list an HTTP/2 response (or its trailers) can carry: connection-specific
 * fields dropped, a repeated single-value field kept once (the first), as a proxy must before
 * forwarding an HTTP/1.1 message over HTTP/2 (RFC 9113 §8.2.2).
 */
export function h2Fields(fields: string[]): string[] {
  let out: string[] | undefined;
  let seen: Set<string> | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    let drop = H2_FORBIDDEN.has(name);
    if (!drop && H2_SINGLE.has(name)) {
      seen ??= new Set();
      drop = seen.has(name);
      seen.add(name);
    }
    if (drop) out ??= fields.slice(0, i);
    else out?.push(name, fields[i + 1]!);
  }
  return out ?? fields;
}

/** Never valid in trailers (RFC 9110 §6.5.1): framing, routing and connection fields. */
const NOT_TRAILERS = new Set([...H2_FORBIDDEN, 'content-length', 'trailer', 'content-type', 'content-encoding']);

/**
 * A response's trailer fields as node writes them, or null when none is left: framing and
 * connection fields dropped, repeated fields joined (HTTP/1.1) or kept once when HTTP/2 allows one.
 */
export function trailerFields(trailers: IncomingHttpHeaders, h2: boolean): Record<string, string | string[]> | null {
  let out: Record<string, string | string[]> | null = null;
  for (const name in trailers) {
    const v = trailers[name];
    if (v === undefined || name.charCodeAt(0) === 58 /* : */ || NOT_TRAILERS.has(name)) continue;
    out ??= {};
    if (!Array.isArray(v)) out[name] = v;
    else if (!h2) out[name] = v.join(', ');
    else out[name] = H2_SINGLE.has(name) ? v[0]! : v;
  }
  return out;
}

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
  /** Client certificate subject headers of the configuration's HTTPS listeners: a client's own value is dropped on every listener. */
  drop?: ReadonlySet<string>;
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

/**
 * The client connection a request came on: its socket for HTTP/1.x, the session's socket for
 * HTTP/2 (node gives each HTTP/2 request a socket view of its own; the session's is one per
 * connection). Per-connection facts (bytes counted, the client certificate) are kept against it.
 */
export function clientConnection(req: IncomingMessage | Http2ServerRequest): Socket {
  return 'stream' in req ? (req.stream.session?.socket as Socket) ?? req.socket : req.socket;
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

/**
 * RFC 4514 §2.4: the characters that would break a distinguished name apart are escaped with a
 * backslash, and anything outside printable ASCII as `\XX` hex of its UTF-8 bytes — so the value is
 * always a valid header value (no CR, LF or other control characters can reach a backend).
 */
export function escapeDn(value: string): string {
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x20 && c < 0x7f) out += ',+"\\<>;='.includes(ch) || ((ch === '#' || ch === ' ') && out === '') ? `\\${ch}` : ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `\\${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
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
    if (HOP_BY_HOP.has(lower) || REPLACED.has(lower) || named?.has(lower) || lower === subjectHeader || facts.drop?.has(lower)) continue;
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
