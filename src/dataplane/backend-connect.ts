/**
 * Opening a raw connection to one backend of a pool, for whatever takes a backend's socket for its
 * own (WebSocket tunnels, layer 4 relays): the pool's balancer picks, the connection holds a slot
 * on the backend from the first attempt to its close, a refused or timed-out connect counts
 * against the backend (passive health) and is tried on another backend, up to the pool's `retries`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { countsAsPassiveFailure, passiveOutcome } from '../health/passive.ts';
import type { BackendTarget, PoolRuntime } from '../snapshot/snapshot.ts';
import { pickTarget } from './http/pick.ts';

export interface BackendConnect {
  pool: PoolRuntime;
  /** What the pool's hash key is read from (a request's headers; none for layer 4). */
  request: { headers: IncomingHttpHeaders };
  clientIp: string;
  connectMs: number;
  now(): number;
  loadChanged(pool: PoolRuntime, index: number): void;
  /** Opens the socket; `ready` is the event that says it is up (`secureConnect` for TLS). */
  open(target: BackendTarget): { socket: Socket; ready: 'connect' | 'secureConnect' };
  /** Picks a target (session persistence first); the pool's balancer when absent. */
  pick?(avoid: ReadonlySet<number> | undefined): number;
  /** The client left meanwhile: stop trying. */
  gone(): boolean;
  /**
   * Connected. `terminate` closes both sides (a removed backend, a timed-out drain); the slot is
   * freed when `socket` closes — unless the connection is `move`d to another process: then
   * `terminate` calls the given function instead, and the slot is freed by calling what it returns.
   */
  connected(target: BackendTarget, socket: Socket, terminate: () => void, connectMs: number, move: (terminate: () => void) => () => void): void;
  /** No backend could be reached: none usable (`tried` false), or every one tried failed with `lastError`. */
  failed(tried: boolean, lastError: string, target: BackendTarget | undefined): void;
  /** Closes the client side: `terminated` (a removed backend, a timed-out drain, a backend marked down) or `backend_error`. */
  closeClient(why: 'terminated' | 'backend_error'): void;
  /** The upstream socket closed (after connecting or not). */
  closed?(wasConnected: boolean): void;
}

export function connectBackend(c: BackendConnect): void {
  const { pool } = c;
  const started = performance.now();
  let tried: Set<number> | undefined;
  let lastError = '';
  const attempt = (): void => {
    const index = c.pick ? c.pick(tried) : pickTarget(pool, c.request, c.clientIp, tried);
    if (index < 0) {
      c.failed(tried !== undefined, lastError, undefined);
      return;
    }
    const target = pool.targets[index]!;
    const { socket: upstream, ready } = c.open(target);
    let connected = false;
    let moved = false;
    let onTerminate = () => {
      upstream.destroy();
      c.closeClient('terminated');
    };
    const terminate = () => onTerminate();
    target.record.connections.add(terminate);
    c.loadChanged(pool, index);
    const free = () => {
      if (target.record.connections.delete(terminate)) c.loadChanged(pool, index);
    };
    // Whatever way the upstream socket ends, its connection slot is free again (here, unless moved).
    upstream.once('close', () => {
      if (moved) return;
      free();
      c.closed?.(connected);
    });
    upstream.setTimeout(c.connectMs, () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) {
        c.closeClient('backend_error');
        return;
      }
      lastError = err.code ?? err.message;
      // The failed attempt gives its slot back first: a backend this failure marks down must not
      // take this very client with it (SHUTDOWN_SESSIONS) — the client is about to try another.
      free();
      target.record.observe(c.now(), performance.now() - started, true);
      if (pool.passive && countsAsPassiveFailure(lastError) && passiveOutcome(target.record, true, lastError, c.now())) c.loadChanged(pool, index);
      if (c.gone()) return;
      if ((tried?.size ?? 0) < pool.retries) {
        (tried ??= new Set()).add(index);
        attempt();
        return;
      }
      c.failed(true, lastError, target);
    });
    upstream.once(ready, () => {
      connected = true;
      upstream.setTimeout(0);
      if (c.gone()) {
        upstream.destroy();
        return;
      }
      c.connected(target, upstream, terminate, performance.now() - started, (elsewhere) => {
        moved = true;
        onTerminate = elsewhere;
        return free;
      });
    });
  };
  attempt();
}
