/**
 * Layer 4 byte pumping in worker processes (relay-worker.ts). The main process accepts, admits,
 * picks the backend and connects; then it hands both sockets to a worker (node passes the sockets
 * themselves between processes) and keeps only the bookkeeping: the backend's slot, the admission,
 * metrics and the connection's log line, all settled when the worker reports the end. One event
 * loop moving every byte is the limit of a Node proxy on a multi-core machine; this spreads it.
 *
 * Workers start on first use, are picked in turn, and a worker that dies ends its connections (and
 * is replaced on next use). With no workers (one core, or `relay_workers = 0`) the relay pumps in
 * process (relay.ts).
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';

export interface RelayEnd {
  /** Bytes the worker read from and wrote to the client (after the hand-off). */
  bytesIn: number;
  bytesOut: number;
  end: string;
}

interface Relay {
  worker: ChildProcess;
  done(r: RelayEnd): void;
}

const WORKER = new URL('./relay-worker.ts', import.meta.url);

export class RelayWorkers {
  readonly #count: number;
  readonly #log: Logger;
  readonly #workers: (ChildProcess | undefined)[];
  readonly #relays = new Map<number, Relay>();
  #next = 0;
  #id = 0;
  #stopped = false;
  #drained: (() => void) | undefined;

  constructor(count: number, log: Logger) {
    this.#count = count;
    this.#log = log;
    this.#workers = new Array<ChildProcess | undefined>(count);
  }

  get enabled(): boolean {
    return this.#count > 0 && !this.#stopped;
  }

  /** Relays in workers now. */
  get active(): number {
    return this.#relays.size;
  }

  #worker(): ChildProcess {
    const i = this.#next++ % this.#count;
    let w = this.#workers[i];
    if (w === undefined || w.exitCode !== null || !w.connected) {
      w = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
      const worker = w;
      this.#workers[i] = worker;
      worker.on('message', (m: { t: string; id: number } & RelayEnd) => {
        if (m.t === 'ended') this.#ended(m.id, m);
      });
      worker.on('error', (err) => this.#log.error({ err: err.message }, 'relay worker error'));
      worker.once('exit', (code, signal) => {
        if (this.#workers[i] === worker) this.#workers[i] = undefined;
        if (!this.#stopped) this.#log.error({ code, signal }, 'relay worker exited: its connections ended');
        for (const [id, r] of this.#relays) if (r.worker === worker) this.#ended(id, { bytesIn: 0, bytesOut: 0, end: 'worker_exit' });
      });
    }
    return w;
  }

  #ended(id: number, r: RelayEnd): void {
    const relay = this.#relays.get(id);
    if (!relay) return;
    this.#relays.delete(id);
    relay.done({ bytesIn: r.bytesIn, bytesOut: r.bytesOut, end: r.end });
    if (this.#relays.size === 0) this.#drained?.();
  }

  /**
   * Hands a connected client and backend to a worker. Both must be paused with nothing written
   * yet; what was already read from either side goes along (`toBackend`, `toClient`) and is
   * written first by the worker. `done` is called once when the connection has ended.
   * Returns how to end it early (a drain's timeout, a removed backend).
   */
  hand(client: Socket, backend: Socket, options: { idleMs: number; toBackend: Buffer[]; toClient: Buffer[] }, done: (r: RelayEnd) => void): () => void {
    const id = ++this.#id;
    const worker = this.#worker();
    this.#relays.set(id, { worker, done });
    const failed = (err: Error | null) => {
      if (!err) return;
      this.#log.error({ err: err.message }, 'handing a connection to a relay worker failed');
      client.destroy();
      backend.destroy();
      if (worker.connected) worker.send({ t: 'terminate', id });
      this.#ended(id, { bytesIn: 0, bytesOut: 0, end: 'relay_failed' });
    };
    // keepOpen false: once passed, this process closes its copies of the sockets.
    worker.send({ t: 'client', id, idleMs: options.idleMs, toBackend: options.toBackend }, client, { keepOpen: false }, failed);
    worker.send({ t: 'backend', id, toClient: options.toClient }, backend, { keepOpen: false }, failed);
    return () => {
      if (this.#relays.has(id) && worker.connected) worker.send({ t: 'terminate', id });
    };
  }

  /** Waits for relayed connections to end, up to `deadlineMs`; then ends the rest and stops the workers. */
  async stop(deadlineMs: number): Promise<void> {
    if (this.#relays.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.#drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs))),
      ]);
      clearTimeout(timer);
    }
    this.#stopped = true;
    const exits = this.#workers.filter((w): w is ChildProcess => w !== undefined && w.exitCode === null).map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          w.disconnect();
        }),
    );
    await Promise.all(exits);
    for (const [id] of this.#relays) this.#ended(id, { bytesIn: 0, bytesOut: 0, end: 'shutdown' });
  }
}
