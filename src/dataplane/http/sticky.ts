/**
 * Session persistence at pick time (seed 000's pool `session_persistence`, seed 001's Session
 * Persistence, seed 002's `sticky_sessions`): a client pinned to a backend goes back to it while
 * that backend can take it — healthy, below its limit, or DRAINING until its drain ends —, else
 * the balancer picks and the client is pinned anew.
 *
 * - COOKIE: Fulcrum names the backend in a cookie of its own (an opaque value, not the backend's
 *   id); a client without it, or whose backend is gone, gets a new one with the response.
 * - APP_COOKIE: the application's own session cookie is followed: when a backend sets it, its
 *   value is pinned to that backend in a table; a request carrying the value goes back there.
 * - SOURCE_IP: a table from client address to backend, refreshed on every use.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Balancer } from '../../balancing/balancer.ts';
import type { PoolRuntime, StickyRuntime } from '../../snapshot/snapshot.ts';
import { cookieValue, pickTarget } from './pick.ts';

export interface StickyChoice {
  /** Index in `pool.targets`, or -1 when no backend can take the request. */
  index: number;
  /** A Set-Cookie value to send with the response (COOKIE: a new or changed pin); null for none. */
  setCookie: string | null;
}

/** The backend the request's client is pinned to, if any. */
function pinned(s: StickyRuntime, headers: IncomingHttpHeaders, clientIp: string, now: number): string | undefined {
  switch (s.type) {
    case 'COOKIE': {
      const token = cookieValue(headers.cookie, s.cookieName);
      return token === undefined ? undefined : s.serverOf.get(token);
    }
    case 'APP_COOKIE': {
      const value = cookieValue(headers.cookie, s.cookieName);
      return value === undefined ? undefined : s.table!.get(value, now);
    }
    case 'SOURCE_IP':
      return s.table!.get(clientIp, now);
  }
}

/** The cookie naming `serverId` (RFC 6265 §4.1), scoped to the whole site. */
function stickyCookie(s: StickyRuntime, serverId: string, secure: boolean): string | null {
  const token = s.tokenOf.get(serverId);
  if (token === undefined) return null;
  return `${s.cookieName}=${token}; Path=/; Max-Age=${Math.round(s.ttlMs / 1000)}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

export function pickSticky(pool: PoolRuntime, request: { headers: IncomingHttpHeaders }, clientIp: string, now: number, secure: boolean, avoid?: ReadonlySet<number>): StickyChoice {
  const s = pool.sticky;
  if (s === null) return { index: pickTarget(pool, request, clientIp, avoid), setCookie: null };
  const serverId = pinned(s, request.headers, clientIp, now);
  if (serverId !== undefined) {
    const i = pool.index.get(serverId);
    if (i !== undefined && !avoid?.has(i) && pool.load.pinnable(i)) {
      if (s.type === 'SOURCE_IP') s.table!.set(clientIp, serverId, now + s.ttlMs);
      return { index: i, setCookie: null };
    }
  }
  // Not pinned, or its backend cannot take it: the balancer picks, and the client is pinned anew.
  const index = pickTarget(pool, request, clientIp, avoid);
  if (index < 0) return { index, setCookie: null };
  const chosen = pool.targets[index]!.id;
  if (s.type === 'SOURCE_IP') s.table!.set(clientIp, chosen, now + s.ttlMs);
  const setCookie = s.type === 'COOKIE' && chosen !== serverId ? stickyCookie(s, chosen, secure) : null;
  return { index, setCookie };
}

/**
 * The backend a request would get, for the dry run: the pin when there is one it may keep, else
 * `balancer`'s pick (a fresh one: the live balancer's position is not moved). Pins nothing.
 */
export function previewSticky(pool: PoolRuntime, request: { headers: IncomingHttpHeaders }, clientIp: string, now: number, balancer: Balancer): number {
  const s = pool.sticky;
  if (s !== null) {
    const serverId = pinned(s, request.headers, clientIp, now);
    const i = serverId === undefined ? undefined : pool.index.get(serverId);
    if (i !== undefined && pool.load.pinnable(i)) return i;
  }
  return pickTarget(pool, request, clientIp, undefined, balancer);
}

/** APP_COOKIE: a response that sets the application's cookie pins its value to the backend that answered. */
export function learnAppCookie(pool: PoolRuntime, setCookie: string | string[] | undefined, serverId: string, now: number): void {
  const s = pool.sticky;
  if (s?.type !== 'APP_COOKIE' || setCookie === undefined) return;
  for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) {
    const eq = line.indexOf('=');
    if (eq <= 0 || line.slice(0, eq).trim() !== s.cookieName) continue;
    const end = line.indexOf(';', eq);
    const value = line.slice(eq + 1, end < 0 ? undefined : end).trim();
    if (value !== '') s.table!.set(value, serverId, now + s.ttlMs);
  }
}
