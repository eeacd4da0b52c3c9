/**
 * Pooled connections to backends, kept by identity across configuration revisions so a change
 * never drops warm connections: one undici Pool per backend (HTTP/1.1, plain or TLS), or one
 * HTTP/2 session manager when the pool asks for h2. A pool no revision uses any more is closed
 * gracefully: in-flight requests finish.
 */
import { connect as connectNet, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import type { buildConnector, Dispatcher } from 'undici';
import { Client, Pool } from 'undici';
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

/**
 * Connections that start with a PROXY protocol header (plain, or with TLS on top of it): the header
 * names one client, so such a connection belongs to that client alone.
 */
function preambleConnector(spec: UpstreamSpec, connectMs: number, preamble: Buffer): buildConnector.connector {
  const tls = spec.tls;
  return (_options, callback) => {
    const plain = connectNet({ host: spec.host, port: spec.port, noDelay: true });
    plain.write(preamble);
    const socket: Socket = tls.enabled
      ? connectTls({
          socket: plain,
          rejectUnauthorized: tls.verify,
          ALPNProtocols: ['http/1.1'],
          ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
          ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
        })
      : plain;
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        socket.destroy();
        callback(err, null);
      } else callback(null, socket);
    };
    const timer = setTimeout(() => settle(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), connectMs);
    socket.once(tls.enabled ? 'secureConnect' : 'connect', () => settle(null));
    socket.once('error', (err) => settle(err));
    plain.once('error', (err) => settle(err));
  };
}

export class Upstreams {
  /** Per client connection, the backends it was given connections of its own to (PROXY protocol). */
  readonly #private = new WeakMap<Socket, Map<string, Client>>();

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

  /**
   * An upstream for one client connection only: every connection to the backend starts with that
   * client's PROXY protocol header, so none is shared with another client (HAProxy marks such
   * connections private too). Closed when the client connection closes.
   */
  forClient(spec: UpstreamSpec, connectMs: number, client: Socket, preamble: Buffer): Upstream {
    let mine = this.#private.get(client);
    if (!mine) {
      const made = new Map<string, Client>();
      mine = made;
      this.#private.set(client, made);
      client.once('close', () => {
        for (const c of made.values()) void c.close().catch(() => {});
        made.clear();
      });
    }
    let upstream = mine.get(spec.key);
    if (!upstream) {
      upstream = new Client(spec.origin, {
        pipelining: 1,
        keepAliveTimeout: UPSTREAM_IDLE_MS,
        keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
        keepAliveTimeoutThreshold: 1_000,
        connect: preambleConnector(spec, connectMs, preamble),
        strictContentLength: true,
      });
      mine.set(spec.key, upstream);
    }
    return upstream;
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
