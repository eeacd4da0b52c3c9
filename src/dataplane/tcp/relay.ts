/**
 * Layer 4 forwarding: a client connection is joined to a backend connection and bytes pass both
 * ways untouched, with backpressure (pipe) and half-close (an end from one side is passed on, the
 * other direction keeps flowing). The backend is picked by the pool's balancer; a refused or
 * timed-out connect tries another backend, up to the pool's `retries`. The connection holds a slot
 * on its backend for as long as it is open, so least-connections balancing and drains see it, and
 * a drain that times out or a removed backend cuts it.
 */
import { connect, type Socket } from 'node:net';
import { passiveOutcome } from '../../health/passive.ts';
import { connectBackend } from '../backend-connect.ts';
import { noteBackend, noteEnd, proxyPreamble } from '../accept.ts';
import type { ListenerMetrics, Metrics } from '../../observability/metrics.ts';
import type { ListenerRuntime, PoolRuntime } from '../../snapshot/snapshot.ts';

export interface RelayDeps {
  metrics: Metrics;
  now(): number;
  loadChanged(pool: PoolRuntime, index: number): void;
}

export interface RelayView {
  readonly runtime: ListenerRuntime;
  readonly metrics: ListenerMetrics;
}

const NO_HEADERS = { headers: {} };

/** Counts a finished connection: its bytes and how it ended. */
function account(deps: RelayDeps, view: RelayView, client: Socket, pool: string, backend: string, result: string): void {
  view.metrics.bytesIn.inc(client.bytesRead);
  view.metrics.bytesOut.inc(client.bytesWritten);
  deps.metrics.tcpConnection(view.metrics, pool, backend, result);
}

/** Refuses a connection that was never forwarded, counting why. */
export function refuse(deps: RelayDeps, view: RelayView, client: Socket, result: string, pool = 'none', goodbye?: Buffer): void {
  noteEnd(client, result);
  account(deps, view, client, pool, 'none', result);
  if (goodbye && client.writable) client.end(goodbye);
  client.destroySoon();
}

/**
 * Joins `client` to a backend of `pool`. `first` holds the bytes already read from the client
 * (a ClientHello), written to the backend before anything else.
 */
export function relay(deps: RelayDeps, view: RelayView, pool: PoolRuntime, client: Socket, clientIp: string, first: Buffer): void {
  const listener = view.runtime.listener;
  client.pause();
  client.on('error', () => client.destroy());
  connectBackend({
    pool,
    request: NO_HEADERS,
    clientIp,
    connectMs: listener.timeouts.connect_ms,
    now: deps.now,
    loadChanged: deps.loadChanged,
    open: (target) => ({ socket: connect({ host: target.upstream.host, port: target.upstream.port, noDelay: true, allowHalfOpen: true }), ready: 'connect' }),
    gone: () => client.destroyed,
    closeClient: (why) => {
      noteEnd(client, why);
      client.destroy();
    },
    failed: (tried) => refuse(deps, view, client, tried ? 'backend_failed' : 'no_backend', pool.pool.pool_id),
    connected: (target, upstream, terminate, connectMs) => {
      noteBackend(client, target.id);
      client.once('end', () => noteEnd(client, 'client_closed'));
      upstream.once('end', () => noteEnd(client, 'backend_closed'));
      // Layer 4 has no response time: the connect time is what LEAST_RESPONSE_TIME sees.
      target.record.observe(deps.now(), connectMs, false);
      if (pool.passive) passiveOutcome(target.record, false, '', deps.now());
      client.once('close', () => {
        upstream.destroy();
        account(deps, view, client, pool.pool.pool_id, target.id, 'forwarded');
      });
      upstream.once('close', () => client.destroySoon());
      const preamble = proxyPreamble(target.upstream.proxyProtocol, client);
      if (preamble !== null) upstream.write(preamble);
      if (first.length > 0) upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      // Idle only when nothing moves either way: writes to the client count as activity too.
      client.setTimeout(listener.timeouts.idle_ms, () => {
        noteEnd(client, 'idle_timeout');
        terminate();
      });
      client.resume();
    },
  });
}
