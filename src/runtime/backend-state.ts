/**
 * Runtime facts about backends that are not configuration: health as checks see it, the
 * connections open to each, and what traffic measured. Keyed by backend identity (`server_id`) so
 * a configuration edit never resets them. The data plane and the health checker write here; the
 * API reads.
 */
import { CheckHistory } from './check-history.ts';
import { TrafficWindow } from './traffic-window.ts';

export type HealthState = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'OFFLINE';

export interface HealthFacts {
  state: HealthState;
  /** When `state` last changed (ms since epoch). */
  since: number;
  lastCheck: number | null;
  /** OFFLINE (passive) ends by itself at this time (ms since epoch). */
  until?: number;
}

/** An operator's forced status (health-override), until it expires or is cleared. */
export interface HealthOverride {
  state: 'HEALTHY' | 'UNHEALTHY';
  /** ms since epoch */
  until: number;
  createdAt: number;
  reason: string | null;
  operator: string | null;
}

/** One active check of a backend, as the API reports it. */
export interface CheckOutcome {
  at: number;
  durationMs: number;
  ok: boolean;
  statusCode?: number;
  bodyMatched?: boolean;
  error?: string;
}

/** A change of health state, with why. */
export interface HealthTransition {
  at: number;
  from: HealthState;
  to: HealthState;
  reason: string;
  error?: string;
}

/** Transitions kept per backend: enough to see flapping, bounded so memory is too. */
const MAX_TRANSITIONS = 50;


/** Closes one tracked connection at once. */
export type Terminate = () => void;

/** Weight of the newest sample in the latency average: recent enough to follow a slowing backend. */
const LATENCY_ALPHA = 0.2;

/** Everything live about one backend. Snapshots hold a reference, so the hot path never looks it up. */
export class BackendRecord {
  readonly id: string;
  health: HealthFacts | undefined;
  /** Requests in flight and open tunnels to the backend, each with a way to cut it. */
  readonly connections = new Set<Terminate>();
  /** Exponentially weighted moving average of response time, ms; 0 until measured. */
  latencyMs = 0;
  readonly traffic = new TrafficWindow();
  /** Consecutive passes and failures of the active check, and its last outcome. */
  consecutiveSuccesses = 0;
  consecutiveFailures = 0;
  lastCheck: CheckOutcome | undefined;
  /** Recent check outcomes, bounded (see CheckHistory). */
  readonly history = new CheckHistory();
  /** Newest last. */
  readonly transitions: HealthTransition[] = [];
  override: HealthOverride | undefined;
  /** Failures of live traffic in a row (passive detection). */
  passiveFailures = 0;
  /** The health state a passive OFFLINE replaced (what the active checks had said). */
  beforeOffline: HealthState | undefined;

  constructor(id: string) {
    this.id = id;
  }

  get active(): number {
    return this.connections.size;
  }

  /** Records one active check's outcome as the latest and in the bounded history. */
  checked(outcome: CheckOutcome): void {
    this.lastCheck = outcome;
    this.history.add(outcome.at, outcome.durationMs, outcome.ok);
  }

  /** Records a health state; a change is kept with its reason (when one is given) and error. */
  setHealth(state: HealthState, at: number, lastCheck: number | null = at, reason?: string, error?: string, until?: number): void {
    const prev = this.health;
    this.health = { state, since: prev && prev.state === state ? prev.since : at, lastCheck, ...(until !== undefined ? { until } : {}) };
    if (reason !== undefined && prev?.state !== state) this.note({ at, from: prev?.state ?? 'UNKNOWN', to: state, reason, ...(error !== undefined ? { error } : {}) });
  }

  /** Keeps a transition, dropping the oldest beyond MAX_TRANSITIONS. */
  note(transition: HealthTransition): void {
    this.transitions.push(transition);
    if (this.transitions.length > MAX_TRANSITIONS) this.transitions.shift();
  }

  /** A response finished (or failed) after `ms`; `failed` counts it as an error. */
  observe(now: number, ms: number, failed: boolean): void {
    this.latencyMs = this.latencyMs === 0 ? ms : this.latencyMs + LATENCY_ALPHA * (ms - this.latencyMs);
    this.traffic.record(now, ms, failed);
  }
}

export class BackendState {
  readonly #records = new Map<string, BackendRecord>();

  /** The backend's record if it has one; never creates one. */
  existing(serverId: string): BackendRecord | undefined {
    return this.#records.get(serverId);
  }

  /** The backend's record, created on first use. */
  record(serverId: string): BackendRecord {
    let r = this.#records.get(serverId);
    if (!r) {
      r = new BackendRecord(serverId);
      this.#records.set(serverId, r);
    }
    return r;
  }

  health(serverId: string): HealthFacts | undefined {
    return this.#records.get(serverId)?.health;
  }

  setHealth(serverId: string, state: HealthState, at: number, lastCheck: number | null = at, reason?: string, error?: string, until?: number): void {
    this.record(serverId).setHealth(state, at, lastCheck, reason, error, until);
  }

  /** The backend is no longer checked: it goes back to what its configuration alone says. */
  clearHealth(serverId: string): void {
    const r = this.#records.get(serverId);
    if (!r) return;
    r.health = undefined;
    r.consecutiveSuccesses = 0;
    r.consecutiveFailures = 0;
    r.lastCheck = undefined;
    r.history.clear();
  }

  activeConnections(serverId: string): number {
    return this.#records.get(serverId)?.active ?? 0;
  }

  /** Counts a connection to a backend until the returned function is called. */
  track(serverId: string, terminate: Terminate): () => void {
    const set = this.record(serverId).connections;
    set.add(terminate);
    return () => {
      set.delete(terminate);
    };
  }

  /** Closes every connection to the backend; returns how many there were. */
  terminateAll(serverId: string): number {
    const set = this.#records.get(serverId)?.connections;
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
      this.#records.delete(id);
    }
    return terminated;
  }
}
