/**
 * Pooled keep-alive connections to backends: one undici Pool per backend address (and connect
 * timeout), kept by identity across configuration revisions so a change never drops warm
 * connections. A pool no revision uses any more is closed gracefully: in-flight requests finish.
 */
import { Pool } from 'undici';

/**
 * Idle upstream sockets close after this long, or sooner when the backend announces a shorter
 * `Keep-Alive: timeout` (never later: the announced value is capped here). Shorter than common
 * backend idle timeouts (nginx 75 s, Node 5 s), so Fulcrum closes first and rarely reuses a
 * socket the backend is closing (nodejs/node#47130).
 */
const UPSTREAM_IDLE_MS = 4_000;

export class Upstreams {
  readonly #pools = new Map<string, Pool>();

  static key(origin: string, connectMs: number): string {
    return `${origin}|${connectMs}`;
  }

  get(origin: string, connectMs: number): Pool {
    const key = Upstreams.key(origin, connectMs);
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new Pool(origin, {
        connections: null,
        pipelining: 1,
        keepAliveTimeout: UPSTREAM_IDLE_MS,
        keepAliveMaxTimeout: UPSTREAM_IDLE_MS,
        keepAliveTimeoutThreshold: 1_000,
        connect: { timeout: connectMs, noDelay: true },
        strictContentLength: true,
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Closes idle connections to an origin now; in-flight requests on it finish first. */
  closeOrigin(origin: string): void {
    for (const [key, pool] of this.#pools) {
      if (key.startsWith(`${origin}|`)) {
        this.#pools.delete(key);
        void pool.close().catch(() => {});
      }
    }
  }

  /** Keeps the pools whose keys are in `used`; closes the rest gracefully. */
  retain(used: ReadonlySet<string>): void {
    for (const [key, pool] of this.#pools) {
      if (!used.has(key)) {
        this.#pools.delete(key);
        void pool.close().catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(all.map((p) => p.destroy().catch(() => {})));
  }
}
