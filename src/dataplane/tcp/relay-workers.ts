/**
 * Layer 4 byte pumping in worker processes (relay-worker.ts). The main process accepts, admits,
 * picks the backend and connects; then it hands both sockets to a worker (node passes the sockets
 * themselves between processes) and keeps only the bookkeeping: the backend's slot, the admission,
 * metrics and the connection's log line, all settled when the worker reports the end. One event
 * loop moving every byte is the limit of a Node proxy on a multi-core machine; this spreads it.
 *
 * The main process keeps its copies of the sockets until the worker says it has both and started
 * (then it closes them: the connection lives on in the worker's copies). A worker that does not
 * start a hand-off within HANDOFF_MS, or exits before, gets the connection closed by the main
 * process, so no slot, admission or socket is ever left behind. Workers start on first use, are
 * picked in turn, and one that exits is replaced on next use. With no workers (one core, or
 * `relay_workers = 0`) the relay pumps in process (relay.ts).
 */
import { type ChildProcess, fork } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';

/** How long a worker may take to receive a hand-off before the connection is closed instead. */
const HANDOFF_MS = 10_000;
/** How long stopping waits for workers to report the connections it ended. */
const REPORT_MS = 2_000;

export interface RelayEnd {
  /** Bytes the worker read from and wrote to the client (after the hand-off). */
  bytesIn: number;
  bytesOut: number;
  end: string;
}

interface Relay {
  worker: ChildProcess;
  done(r: RelayEnd): void;
  /** The main process's copies, until the worker has started. */
  copies: { client: Socket; backend: Socket } | null;
  timer: NodeJS.Timeout | undefined;
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
        if (m.t === 'started') this.#started(m.id);
        else if (m.t === 'ended') this.#ended(m.id, m);
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

  /** The worker has both sockets: this process lets go of its copies (the connection stays open there). */
  #started(id: number): void {
    const relay = this.#relays.get(id);
    if (!relay?.copies) return;
    clearTimeout(relay.timer);
    const { client, backend } = relay.copies;
    relay.copies = null;
    client.destroy();
    backend.destroy();
  }

  #ended(id: number, r: RelayEnd): void {
    const relay = this.#relays.get(id);
    if (!relay) return;
    this.#relays.delete(id);
    clearTimeout(relay.timer);
    // Never started there: the connection ends here, with this process's copies.
    if (relay.copies) {
      relay.copies.client.destroy();
      relay.copies.backend.destroy();
      relay.copies = null;
    }
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
    const relay: Relay = { worker, done, copies: { client, backend }, timer: undefined };
    this.#relays.set(id, relay);
    const fail = (why: string) => {
      if (!this.#relays.has(id)) return;
      if (worker.connected) worker.send({ t: 'terminate', id, why });
      this.#ended(id, { bytesIn: 0, bytesOut: 0, end: why });
    };
    // A worker that cannot take the sockets (out of file descriptors: node gives up quietly) or
    // is stuck: the connection is closed rather than left hanging.
    relay.timer = setTimeout(() => {
      this.#log.error({ pid: worker.pid }, 'a relay worker did not take a connection in time: closed');
      fail('relay_failed');
    }, HANDOFF_MS);
    relay.timer.unref();
    const sent = (err: Error | null) => {
      if (!err) return;
      this.#log.error({ err: err.message }, 'handing a connection to a relay worker failed');
      fail('relay_failed');
    };
    // The listener's own bookkeeping stays here: node must not track these as the worker's.
    (client as Socket & { server: unknown }).server = null;
    // keepOpen: this process closes its copies itself, once the worker has started.
    worker.send({ t: 'client', id, idleMs: options.idleMs, toBackend: options.toBackend }, client, { keepOpen: true }, sent);
    worker.send({ t: 'backend', id, toClient: options.toClient }, backend, { keepOpen: true }, sent);
    return () => {
      if (this.#relays.has(id) && worker.connected) worker.send({ t: 'terminate', id, why: 'terminated' });
    };
  }

  /**
   * Waits for relayed connections to end, up to `deadlineMs`; then ends the rest (their byte
   * counts reported as they close) and stops the workers.
   */
  async stop(deadlineMs: number): Promise<void> {
    const drained = () => new Promise<void>((resolve) => (this.#drained = resolve));
    const within = async (ms: number) => {
      if (this.#relays.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([drained(), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
    };
    await within(deadlineMs);
    this.#stopped = true;
    const running = this.#workers.filter((w): w is ChildProcess => w !== undefined && w.exitCode === null && w.connected);
    if (this.#relays.size > 0) {
      for (const w of running) w.send({ t: 'terminate-all', why: 'shutdown' });
      await within(REPORT_MS);
    }
    await Promise.all(
      running.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once('exit', () => resolve());
            w.disconnect();
          }),
      ),
    );
    for (const [id] of this.#relays) this.#ended(id, { bytesIn: 0, bytesOut: 0, end: 'shutdown' });
  }
}
