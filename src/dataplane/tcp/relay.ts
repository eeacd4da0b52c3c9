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
import { detach, noteBackend, noteEnd, proxyPreamble } from '../accept.ts';
import type { RelayWorkers } from './relay-workers.ts';
import { pickSticky } from '../http/sticky.ts';
import type { ListenerMetrics, Metrics } from '../../observability/metrics.ts';
import type { ListenerRuntime, PoolRuntime } from '../../snapshot/snapshot.ts';

export interface RelayDeps {
  metrics: Metrics;
  now(): number;
  loadChanged(pool: PoolRuntime, index: number): void;
  /** Worker processes the bytes are moved in; in this process when absent or disabled. */
  relayWorkers?: RelayWorkers;
}

export interface RelayView {
  readonly runtime: ListenerRuntime;
  readonly metrics: ListenerMetrics;
}

const NO_HEADERS = { headers: {} };

/**
 * Closes a tunnel on which no byte moved either way for `idleMs`. A socket timeout would do it too,
 * but re-arms a timer on every chunk read or written; this looks at the byte counts a few times
 * per idle period instead (closing within idleMs and idleMs + idleMs / 4).
 */
function watchIdle(client: Socket, idleMs: number, onIdle: () => void): void {
  const every = Math.max(Math.floor(idleMs / 4), 25);
  let moved = client.bytesRead + client.bytesWritten;
  let quietSince = Date.now();
  const timer = setInterval(() => {
    const now = client.bytesRead + client.bytesWritten;
    if (now !== moved) {
      moved = now;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= idleMs) {
      clearInterval(timer);
      onIdle();
    }
  }, every);
  timer.unref();
  client.once('close', () => clearInterval(timer));
}

/** Counts a finished connection: its bytes and how it ended. */
function account(deps: RelayDeps, view: RelayView, client: Socket, pool: string, backend: string, result: string, bytes?: { bytesIn: number; bytesOut: number }): void {
  view.metrics.bytesIn.inc(bytes?.bytesIn ?? client.bytesRead);
  view.metrics.bytesOut.inc(bytes?.bytesOut ?? client.bytesWritten);
  deps.metrics.tcpConnection(view.metrics, pool, backend, result);
}

/**
 * Stops a socket from reading in this process, so nothing more is taken from it before it is handed
 * to a worker: a stream's pause only stops delivering, its handle may keep reading into memory
 * here (node's handle `readStop`, stable for years, is the only way to say so). True when nothing
 * read is left undelivered — then the socket can move; else it stays and is relayed here.
 */
function stopReading(socket: Socket): boolean {
  socket.pause();
  const handle = (socket as Socket & { _handle?: { readStop?(): number; reading?: boolean } | null })._handle;
  if (handle?.reading) {
    handle.readStop?.();
    // node's own flag, so a later resume here starts reading again.
    handle.reading = false;
  }
  return socket.readableLength === 0;
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
    // SOURCE_IP persistence holds for layer 4 too (cookies cannot).
    pick: (avoid) => pickSticky(pool, NO_HEADERS, clientIp, deps.now(), false, avoid).index,
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
    connected: (target, upstream, terminate, connectMs, move) => {
      noteBackend(client, target.id);
      const workers = deps.relayWorkers;
      // Both checked (no short-circuit): each must stop reading before either moves.
      const movable = [stopReading(upstream), stopReading(client)].every(Boolean);
      if (workers?.enabled && movable) {
        // Decided here, pumped in a worker: the slot, the admission and the accounting stay here.
        // Nothing was written to either socket; the bytes read here (a ClientHello, a PROXY
        // header's followers) go along to be written first.
        const preamble = proxyPreamble(target.upstream.proxyProtocol, client);
        const toBackend = [...(preamble ? [preamble] : []), ...(first.length > 0 ? [first] : [])];
        const toClient: Buffer[] = [];
        target.record.observe(deps.now(), connectMs, false);
        if (pool.passive) passiveOutcome(target.record, false, '', deps.now());
        const here = { bytesIn: client.bytesRead, bytesOut: client.bytesWritten };
        const finish = detach(client);
        let free: () => void = () => {};
        const end = workers.hand(client, upstream, { idleMs: listener.timeouts.idle_ms, toBackend, toClient }, (r) => {
          free();
          account(deps, view, client, pool.pool.pool_id, target.id, 'forwarded', { bytesIn: here.bytesIn + r.bytesIn, bytesOut: here.bytesOut + r.bytesOut });
          finish(r.bytesIn, r.bytesOut, r.end);
        });
        free = move(end);
        return;
      }
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
      watchIdle(client, listener.timeouts.idle_ms, () => {
        noteEnd(client, 'idle_timeout');
        terminate();
      });
      client.resume();
    },
  });
}
