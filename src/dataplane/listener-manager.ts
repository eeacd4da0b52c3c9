import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { Logger } from 'pino';
import type { Listener } from '../model/listener.ts';
import { SUPPORTED_LISTENER_PROTOCOLS } from '../model/listener.ts';
import type { DataPlaneControl } from '../control/context.ts';
import type { Store } from '../store/store.ts';
import { requestId } from '../observability/request-id.ts';

interface Bound {
  listener: Listener;
  server: Server;
  key: string;
  /** Set when the socket stops accepting: responses still running close their connection. */
  closing: boolean;
}

function servable(l: Listener): boolean {
  return l.enabled && SUPPORTED_LISTENER_PROTOCOLS.includes(l.protocol);
}

type Status = ReturnType<DataPlaneControl['listenerStatus']>;

function bindKey(l: Listener): string {
  return `${l.protocol}|${l.bind_address}|${l.port}`;
}

/** Resolves once `server` listens, or rejects with the OS's error. */
function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Stops accepting, lets in-flight requests finish, closes idle keep-alive connections. */
function closeGracefully(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * Owns the data plane's sockets. `reconcile` is given the whole set of listeners of one revision
 * and binds, keeps or releases each by identity: a listener whose address is unchanged keeps its
 * socket and its connections; one that moved is bound at the new address before the old closes.
 * A listener that fails to bind gets status ERROR with the OS's reason; the others are unaffected.
 */
export class ListenerManager implements DataPlaneControl {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #bound = new Map<string, Bound>();
  readonly #errors = new Map<string, string>();
  /** Old sockets still finishing their in-flight requests; stop() waits for them too. */
  readonly #retiring = new Map<Server, Promise<void>>();
  #desired = new Map<string, Listener>();
  #appliedRevision = -1;
  #syncing: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(store: Store, log: Logger) {
    this.#store = store;
    this.#log = log;
  }

  /**
   * Applies the store's current configuration; concurrent calls run one after another. Never
   * rejects: the write that asked for it has committed, so a failure here is the data plane's to
   * report (logged, and visible as listener status), not a failed API call.
   */
  sync(): Promise<void> {
    this.#syncing = this.#syncing
      .then(() => this.#syncOnce())
      .catch((err: unknown) => this.#log.error({ err }, 'data plane sync failed'));
    return this.#syncing;
  }

  async #syncOnce(): Promise<void> {
    if (this.#stopped) return;
    const revision = await this.#store.revision();
    if (revision === this.#appliedRevision) return;
    const { items } = await this.#store.list<Listener>('listener');
    await this.reconcile(items.map((r) => r.body));
    this.#appliedRevision = revision;
  }

  async reconcile(listeners: Listener[]): Promise<void> {
    this.#desired = new Map(listeners.map((l) => [l.listener_id, l]));
    const wanted = listeners.filter(servable);
    const wantedIds = new Set(wanted.map((l) => l.listener_id));

    for (const [id, bound] of this.#bound) {
      if (!wantedIds.has(id)) {
        this.#bound.delete(id);
        this.#retire(bound);
        this.#log.info({ listener_id: id }, 'listener unbound');
      }
    }
    for (const id of this.#errors.keys()) if (!wantedIds.has(id)) this.#errors.delete(id);

    for (const listener of wanted) {
      const current = this.#bound.get(listener.listener_id);
      if (current && current.key === bindKey(listener)) {
        current.listener = listener; // same socket, new settings
        this.#applySettings(current);
        continue;
      }
      const next = this.#newServer(listener);
      try {
        await listen(next.server, listener.bind_address, listener.port);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        this.#errors.set(listener.listener_id, `cannot bind ${listener.bind_address}:${listener.port}: ${e.code ?? e.message}`);
        this.#log.error({ listener_id: listener.listener_id, err: e.message }, 'listener bind failed');
        continue;
      }
      this.#errors.delete(listener.listener_id);
      this.#bound.set(listener.listener_id, next);
      this.#log.info({ listener_id: listener.listener_id, address: listener.bind_address, port: listener.port }, 'listener bound');
      if (current) this.#retire(current);
    }
  }

  /**
   * Stops accepting on an old socket at once (so its port is free for whoever binds it next) and
   * lets its in-flight requests finish in the background: a busy listener never holds up the
   * next configuration change.
   */
  #retire(bound: Bound): void {
    bound.closing = true;
    const server = bound.server;
    this.#retiring.set(server, closeGracefully(server).finally(() => this.#retiring.delete(server)));
  }

  #newServer(listener: Listener): Bound {
    const bound: Bound = { listener, key: bindKey(listener), server: createHttpServer(), closing: false };
    bound.server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#handle(bound, req, res));
    this.#applySettings(bound);
    return bound;
  }

  #applySettings(bound: Bound): void {
    const t = bound.listener.timeouts;
    bound.server.requestTimeout = t.client_ms;
    bound.server.headersTimeout = Math.min(t.client_ms, 60_000);
    bound.server.keepAliveTimeout = t.idle_ms;
    bound.server.maxConnections = bound.listener.connection_limit ?? Infinity;
  }

  /**
   * Until the HTTP forwarding path lands, a bound listener has no way to reach a backend, so it
   * answers as a load balancer does when no backend is usable: 503 with the request id.
   */
  #handle(bound: Bound, req: IncomingMessage, res: ServerResponse): void {
    const id = requestId(req.headers['x-request-id']);
    req.resume();
    if (bound.closing) res.setHeader('connection', 'close');
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'x-request-id': id, 'retry-after': '5' });
    res.end(`503 Service Unavailable: no usable backend (request id ${id})\n`);
  }

  async probeBind(protocol: string, address: string, port: number): Promise<void> {
    if (protocol === 'UDP') return; // UDP listeners arrive with layer 4; refused before this point
    const probe = createNetServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host: address, port, exclusive: true }, () => resolve());
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }

  listenerStatus(listenerId: string): Status {
    const listener = this.#desired.get(listenerId);
    if (this.#bound.has(listenerId)) return { status: 'ACTIVE', message: null };
    const error = this.#errors.get(listenerId);
    if (error !== undefined) return { status: 'ERROR', message: error };
    if (listener && !listener.enabled) return { status: 'DISABLED', message: null };
    return { status: 'PENDING', message: null };
  }

  /** For `/ready`: every enabled listener of the applied revision is bound. */
  readiness(): { ready: boolean; bound: number; expected: number; failing: { listener_id: string; reason: string }[] } {
    const expected = [...this.#desired.values()].filter(servable).length;
    return {
      ready: this.#appliedRevision >= 0 && this.#bound.size === expected,
      bound: this.#bound.size,
      expected,
      failing: [...this.#errors].map(([listener_id, reason]) => ({ listener_id, reason })),
    };
  }

  /** Graceful stop: stop accepting now, wait for in-flight requests until the deadline, then cut. */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopped = true;
    const bound = [...this.#bound.values()];
    this.#bound.clear();
    for (const b of bound) b.closing = true;
    const servers = [...bound.map((b) => b.server), ...this.#retiring.keys()];
    const all = Promise.all([...bound.map((b) => closeGracefully(b.server)), ...this.#retiring.values()]);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const outcome = await Promise.race([all.then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      for (const s of servers) s.closeAllConnections();
      await all;
    }
  }
}
