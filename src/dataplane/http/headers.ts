/**
 * Header rewriting for the HTTP forwarding path. RFC 9110 §7.6.1: hop-by-hop fields, and any
 * field the Connection header names, apply to one connection only and are never forwarded.
 */
import type { IncomingMessage } from 'node:http';
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
}

/**
 * The request's headers as a flat [name, value, …] list for the backend: hop-by-hop fields
 * dropped, X-Forwarded-* and X-Request-ID set. `keepUpgrade` keeps Connection/Upgrade for a
 * tunnelled WebSocket handshake.
 */
export function upstreamRequestHeaders(req: IncomingMessage, facts: ForwardFacts, keepUpgrade = false): string[] {
  const raw = req.rawHeaders;
  const named = connectionNamed(req.headers.connection);
  const out: string[] = [];
  let forwardedFor: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? raw[i + 1]! : `${forwardedFor}, ${raw[i + 1]!}`;
      continue;
    }
    if (HOP_BY_HOP.has(lower) || REPLACED.has(lower) || named?.has(lower)) continue;
    out.push(name, raw[i + 1]!);
  }
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
  const host = req.headers.host;
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
