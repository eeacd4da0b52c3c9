/**
 * Pooled connections to backends, kept by identity across configuration revisions so a change
 * never drops warm connections: one undici Pool per backend (HTTP/1.1, plain or TLS), or one
 * HTTP/2 session manager when the pool asks for h2. A pool no revision uses any more is closed
 * gracefully: in-flight requests finish.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Pool } from 'undici';
import type { UpstreamSpec } from '../../snapshot/snapshot.ts';
import { H2Upstream } from './h2-upstream.ts';

/**
 * Idle upstream sockets close after this long, or sooner when the backend announces a shorter
 * `Keep-Alive: timeout` (never later: the announced value is capped here). Shorter than common
 * backend idle timeouts (nginx 75 s, Node 5 s), so Fulcrum closes first and rarely reuses a
 * socket the backend is closing (nodejs/node#47130).
 */
const UPSTREAM_IDLE_MS = 4_000;

/** One request as the forwarding path hands it to an upstream (the undici dispatch fields it uses). */
export interface UpstreamRequest {
  path: string;
  method: string;
  /** Flat [name, value, …] list. */
  headers: string[];
  body: Readable | null;
  headersTimeout?: number;
  bodyTimeout?: number;
  idempotent?: boolean;
  blocking?: boolean;
}

/** What the forwarding path needs of an upstream: undici's dispatch, and a way to let it go. */
export interface Upstream {
  dispatch(options: UpstreamRequest, handler: Dispatcher.DispatchHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

function open(spec: UpstreamSpec, connectMs: number): Upstream {
  const tls = spec.tls;
  if (tls.http2) {
    return new H2Upstream({
      origin: spec.origin,
      connectTimeoutMs: connectMs,
      idleTimeoutMs: UPSTREAM_IDLE_MS,
      ...(tls.enabled ? { servername: tls.servername, rejectUnauthorized: tls.verify, ca: tls.ca } : {}),
    });
  }
  return new Pool(spec.origin, {
    connections: null,
    pipelining: 1,
    keepAliveTimeout: UPSTREAM_IDLE_MS,
    keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
    keepAliveTimeoutThreshold: 1_000,
    connect: {
      timeout: connectMs,
      noDelay: true,
      ...(tls.enabled
        ? {
            rejectUnauthorized: tls.verify,
            ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
            ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
            ALPNProtocols: ['http/1.1'],
          }
        : {}),
    },
    strictContentLength: true,
  });
}

export class Upstreams {
  /** By spec key, then connect timeout: a lookup per request without building a key string. */
  readonly #pools = new Map<string, Map<number, Upstream>>();

  static key(spec: UpstreamSpec, connectMs: number): string {
    return `${spec.key}|${connectMs}`;
  }

  get(spec: UpstreamSpec, connectMs: number): Upstream {
    let byTimeout = this.#pools.get(spec.key);
    if (!byTimeout) this.#pools.set(spec.key, (byTimeout = new Map()));
    let pool = byTimeout.get(connectMs);
    if (!pool) {
      pool = open(spec, connectMs);
      byTimeout.set(connectMs, pool);
    }
    return pool;
  }

  /** Closes a backend's idle connections now; in-flight requests on them finish first. */
  closeBackend(serverId: string): void {
    for (const [key, byTimeout] of this.#pools) {
      if (!key.startsWith(`${serverId}|`)) continue;
      this.#pools.delete(key);
      for (const pool of byTimeout.values()) void pool.close().catch(() => {});
    }
  }

  /** Keeps the pools whose keys (`Upstreams.key`) are in `used`; closes the rest gracefully. */
  retain(used: ReadonlySet<string>): void {
    for (const [key, byTimeout] of this.#pools) {
      for (const [ms, pool] of byTimeout) {
        if (used.has(`${key}|${ms}`)) continue;
        byTimeout.delete(ms);
        void pool.close().catch(() => {});
      }
      if (byTimeout.size === 0) this.#pools.delete(key);
    }
  }

  async close(): Promise<void> {
    const all = [...this.#pools.values()].flatMap((m) => [...m.values()]);
    this.#pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => {})));
  }
}
