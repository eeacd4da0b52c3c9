/**
 * Runtime facts about backends that are not configuration: health as checks see it and the
 * connections open to each. Keyed by backend identity (`server_id`) so a configuration edit never
 * resets them. The data plane and the health checker write here; the API reads.
 */

export type HealthState = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'OFFLINE';

export interface HealthFacts {
  state: HealthState;
  /** When `state` last changed (ms since epoch). */
  since: number;
  lastCheck: number | null;
}

/** Closes one tracked connection at once. */
export type Terminate = () => void;

export class BackendState {
  readonly #health = new Map<string, HealthFacts>();
  readonly #connections = new Map<string, Set<Terminate>>();

  health(serverId: string): HealthFacts | undefined {
    return this.#health.get(serverId);
  }

  setHealth(serverId: string, state: HealthState, at: number, lastCheck: number | null = at): void {
    const prev = this.#health.get(serverId);
    this.#health.set(serverId, { state, since: prev && prev.state === state ? prev.since : at, lastCheck });
  }

  activeConnections(serverId: string): number {
    return this.#connections.get(serverId)?.size ?? 0;
  }

  /** Counts a connection to a backend until the returned function is called. */
  track(serverId: string, terminate: Terminate): () => void {
    let set = this.#connections.get(serverId);
    if (!set) {
      set = new Set();
      this.#connections.set(serverId, set);
    }
    set.add(terminate);
    return () => {
      set.delete(terminate);
      if (set.size === 0 && this.#connections.get(serverId) === set) this.#connections.delete(serverId);
    };
  }

  /** Closes every connection to the backend; returns how many there were. */
  terminateAll(serverId: string): number {
    const set = this.#connections.get(serverId);
    if (!set) return 0;
    const all = [...set];
    for (const terminate of all) terminate();
    return all.length;
  }

  /** Backends deleted from the configuration: closes their connections, forgets them, returns how many were closed. */
  remove(serverIds: Iterable<string>): number {
    let terminated = 0;
    for (const id of serverIds) {
      terminated += this.terminateAll(id);
      this.#health.delete(id);
      this.#connections.delete(id);
    }
    return terminated;
  }
}
