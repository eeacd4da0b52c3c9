/**
 * Drains run to completion here. A DRAINING backend is already out of every balancer (the
 * snapshot leaves it out), so it only loses connections: when none are left, or when its
 * `timeout_seconds` pass, the remaining ones are closed and the backend is removed. With
 * `close_idle_connections` its idle upstream keep-alive connections close as the drain starts.
 */
import type { Logger } from 'pino';
import type { Backend } from '../model/backend.ts';
import type { BackendState } from '../runtime/backend-state.ts';

/** How often drains are checked: the API sees a finished drain within this. */
const CHECK_EVERY_MS = 100;

export interface DrainDeps {
  state: BackendState;
  now: () => number;
  log: Logger;
  /** Closes the idle upstream connections of a backend. */
  closeIdle(serverId: string): void;
  remove(backend: Backend): Promise<boolean>;
}

export class DrainSupervisor {
  readonly #deps: DrainDeps;
  /** server_id → the backend as it was when its current drain was seen, and its deadline. */
  readonly #draining = new Map<string, { backend: Backend; deadline: number }>();
  readonly #removing = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: DrainDeps) {
    this.#deps = deps;
  }

  /** The DRAINING backends of the revision just applied. */
  watch(draining: Backend[]): void {
    const ids = new Set(draining.map((b) => b.server_id));
    for (const id of this.#draining.keys()) if (!ids.has(id)) this.#draining.delete(id); // cancelled or deleted
    for (const b of draining) {
      const known = this.#draining.get(b.server_id);
      if (known?.backend.drain?.drain_id === b.drain?.drain_id) continue;
      // started_at has whole seconds; a drain seen as it starts counts from now, one found at
      // start-up (after a restart) from its recorded start.
      const recorded = Date.parse(b.drain?.started_at ?? b.updated_at);
      const now = this.#deps.now();
      const start = now - recorded < 1500 ? now : recorded;
      this.#draining.set(b.server_id, { backend: b, deadline: start + (b.drain?.timeout_seconds ?? 0) * 1000 });
      this.#deps.log.info({ server_id: b.server_id, drain: b.drain }, 'drain started');
      if (b.drain?.close_idle_connections !== false) this.#deps.closeIdle(b.server_id);
    }
    if (this.#draining.size > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), CHECK_EVERY_MS);
      this.#timer.unref();
    }
    this.#check();
  }

  #check(): void {
    const now = this.#deps.now();
    for (const [id, { backend: b, deadline }] of this.#draining) {
      if (this.#removing.has(id)) continue;
      const active = this.#deps.state.activeConnections(id);
      if (active > 0 && now < deadline) continue;
      const terminated = this.#deps.state.terminateAll(id);
      this.#deps.log.info({ server_id: id, terminated, timed_out: active > 0 }, 'drain complete; removing backend');
      this.#removing.add(id);
      this.#deps
        .remove(b)
        .then(
          (removed) => {
            // Removed, or re-enabled meanwhile (the next watch() says which drains remain).
            if (this.#draining.get(id)?.backend === b) this.#draining.delete(id);
            if (!removed) this.#deps.log.info({ server_id: id }, 'drain ended without removal: the backend left its drain');
          },
          // Kept in #draining: the next check tries again.
          (err: unknown) => this.#deps.log.error({ err, server_id: id }, 'removing a drained backend failed; will retry'),
        )
        .finally(() => this.#removing.delete(id));
    }
    if (this.#draining.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#draining.clear();
  }
}
