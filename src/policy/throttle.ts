/**
 * A listener's connection throttle (seed 001 "Connection Throttling"): per client IP, a cap on open
 * connections and on the rate of new ones. One instance per listener, kept across configuration
 * revisions (`configure` swaps the settings, the counts stay), so a reload neither forgets who holds
 * connections nor hands every client a fresh allowance.
 *
 * Per client (IPv4-mapped IPv6 counted as the IPv4 address it is):
 *
 * - Open connections: `admit` counts one, its `release()` (idempotent) uncounts it. A new
 *   connection is refused with `max_connections` when the client already has that many open.
 * - Rate: a token bucket of capacity `max_connection_rate`, refilled continuously at
 *   `max_connection_rate` tokens per `rate_interval_seconds`; each admitted connection takes a
 *   token, and none is left means `max_connection_rate`. A bucket rather than fixed windows: a
 *   client cannot double its rate across a window edge, and the state is two numbers. A client
 *   idle for a whole interval may open `max_connection_rate` at once, then one per
 *   interval / rate. Refilling is lazy (at each `admit`), so no timers run.
 * - `min_connections`: a connection that leaves its client with at most `min_connections` open is
 *   never refused. It still counts as open and still takes a token when one is left (so the
 *   client's later connections see it), but never drives the bucket below empty.
 * - Refused attempts take nothing: a client hammering at the limit does not push its own
 *   recovery further away.
 *
 * Changing `max_connection_rate` or `rate_interval_seconds` gives every client a full bucket of the
 * new size (checked lazily, per client, by a settings epoch); `configure(null)` turns refusing off
 * but keeps counting open connections, so a later `configure` applies `max_connections` to the
 * connections already held.
 *
 * Memory is bounded by `maxTracked` clients (default 100,000). A client with no open connection is
 * idle; an idle client with a full bucket carries no information and is the same as an absent one.
 * When a new client arrives at the bound:
 *
 * 1. idle clients with a full bucket are dropped (all of them, in one pass over the idle ones);
 * 2. if that freed less than an eighth of the bound, the longest-idle clients are dropped (they
 *    forget their partly spent rate, so each may burst once more) until an eighth is free;
 * 3. a client with open connections is never dropped: when every tracked client has one, the new
 *    client is admitted all the same and tracked beyond the bound (its open count and rate both
 *    kept, so `max_connections` still holds for it); the next new client after some turn idle
 *    brings the table back under the bound. Beyond the bound the table grows only with clients
 *    actually holding connections, each of which costs the process far more (a socket) than its
 *    entry here.
 *
 * Freeing an eighth at a time makes the passes amortised O(1) per new client; `admit` and
 * `release` are otherwise O(1) map operations.
 */
import type { ConnectionThrottle as ThrottleSettings } from '../model/listener.ts';
import { plainAddress } from './cidr.ts';

export type ThrottleRefusal = 'max_connections' | 'max_connection_rate';
export type ThrottleAdmission = { ok: true; release(): void } | { ok: false; reason: ThrottleRefusal };

export interface ThrottleOptions {
  /** Milliseconds from a clock that does not jump (e.g. `performance.now`); a step back only restarts refilling. */
  now: () => number;
  /** Clients tracked at most (see the bound above); 100,000 by default. */
  maxTracked?: number;
}

const DEFAULT_MAX_TRACKED = 100_000;
/**
 * Lazy refills add fractions of a token, and binary fractions do not sum to whole numbers exactly
 * (20,000 refills of 1/20000 make 0.9999999999998981): within this of a whole token counts as one.
 */
const EPSILON = 1e-9;

interface Client {
  readonly ip: string;
  open: number;
  tokens: number;
  refilledAt: number;
  /** The rate settings the bucket was filled under; another epoch means a full bucket of the current size. */
  epoch: number;
}

const REFUSED_MAX: ThrottleAdmission = Object.freeze({ ok: false, reason: 'max_connections' });
const REFUSED_RATE: ThrottleAdmission = Object.freeze({ ok: false, reason: 'max_connection_rate' });

export class ConnectionThrottle {
  readonly #now: () => number;
  readonly #maxTracked: number;
  readonly #clients = new Map<string, Client>();
  /** Clients with no open connection, longest idle first (a Set keeps insertion order). */
  readonly #idle = new Set<Client>();
  #settings: ThrottleSettings | null = null;
  #epoch = 0;
  /** The rate interval in milliseconds (refill: `max_connection_rate` tokens per this). */
  #intervalMs = 1;

  constructor(options: ThrottleOptions) {
    this.#now = options.now;
    this.#maxTracked = Math.max(1, options.maxTracked ?? DEFAULT_MAX_TRACKED);
  }

  /** The settings of the current configuration revision; null turns refusing off. */
  configure(settings: ThrottleSettings | null): void {
    const before = this.#settings;
    this.#settings = settings === null ? null : { ...settings };
    const rate = settings?.max_connection_rate ?? null;
    if (rate !== (before?.max_connection_rate ?? null) || (rate !== null && settings!.rate_interval_seconds !== before?.rate_interval_seconds)) {
      this.#epoch++;
      if (rate !== null) this.#intervalMs = settings!.rate_interval_seconds * 1000;
    }
  }

  /** Clients currently tracked (for metrics and tests). */
  get tracked(): number {
    return this.#clients.size;
  }

  /** Decides on a new connection from `ip`; when admitted, call `release()` once it closes. */
  admit(ip: string): ThrottleAdmission {
    const key = plainAddress(ip);
    const s = this.#settings;
    let client = this.#clients.get(key);
    if (client !== undefined && s !== null) {
      const exempt = client.open + 1 <= s.min_connections;
      if (!exempt && s.max_connections !== null && client.open >= s.max_connections) return REFUSED_MAX;
      if (s.max_connection_rate !== null) {
        this.#refill(client, s.max_connection_rate);
        if (client.tokens >= 1 - EPSILON) client.tokens = Math.max(0, client.tokens - 1);
        else if (!exempt) return REFUSED_RATE;
      }
    } else if (client === undefined) {
      client = this.#track(key);
      // A new client has no connection open and a full bucket: never refused (max_connections and
      // max_connection_rate are at least 1), only charged.
      if (s !== null && s.max_connection_rate !== null) client.tokens = s.max_connection_rate - 1;
    }
    if (client.open === 0) this.#idle.delete(client);
    client.open++;
    return { ok: true, release: this.#releaser(client) };
  }

  #releaser(client: Client): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      client.open--;
      if (client.open === 0) this.#idle.add(client);
    };
  }

  #refill(client: Client, capacity: number): void {
    const now = this.#now();
    if (client.epoch !== this.#epoch) {
      client.epoch = this.#epoch;
      client.tokens = capacity;
      client.refilledAt = now;
      return;
    }
    const elapsed = now - client.refilledAt;
    if (elapsed > 0) client.tokens = Math.min(capacity, client.tokens + (elapsed * capacity) / this.#intervalMs);
    // A clock that stepped back restarts refilling from now: no tokens are minted, none are lost.
    client.refilledAt = now;
  }

  /** Whether an idle client's bucket is full by now, i.e. forgetting it loses nothing. */
  #full(client: Client): boolean {
    const capacity = this.#settings?.max_connection_rate ?? null;
    if (capacity === null || client.epoch !== this.#epoch) return true;
    const elapsed = Math.max(0, this.#now() - client.refilledAt);
    return client.tokens + (elapsed * capacity) / this.#intervalMs >= capacity - EPSILON;
  }

  #track(key: string): Client {
    if (this.#clients.size >= this.#maxTracked) this.#makeRoom();
    const client: Client = { ip: key, open: 0, tokens: 0, refilledAt: this.#now(), epoch: this.#epoch };
    this.#clients.set(key, client);
    return client;
  }

  #makeRoom(): void {
    if (this.#idle.size === 0) return;
    const target = this.#maxTracked - Math.max(1, Math.floor(this.#maxTracked / 8));
    for (const c of this.#idle) {
      if (this.#full(c)) this.#forget(c);
    }
    for (const c of this.#idle) {
      if (this.#clients.size <= target) break;
      this.#forget(c);
    }
  }

  #forget(client: Client): void {
    this.#idle.delete(client);
    this.#clients.delete(client.ip);
  }
}
