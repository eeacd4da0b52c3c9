/**
 * A pool's circuit breaker (seed 000 `circuit_breaker`, seed 003 CircuitBreakerConfig). It watches
 * the pool's outcomes over `evaluation_window_seconds` in one-second buckets: once at least
 * `min_request_volume` requests were seen and the error rate reaches `error_threshold_percent` (or
 * the share of calls slower than `slow_call_threshold_ms` reaches `slow_call_rate_percent`), it
 * OPENs and the pool fails fast with 503. After `recovery_timeout_seconds` it is HALF_OPEN and lets
 * `half_open_requests` probe requests through: all succeed → CLOSED, any fails → OPEN again.
 * Runtime state, kept per pool across configuration revisions. Pure: the clock comes in.
 */
import type { CircuitBreaker as BreakerConfig } from '../model/pool.ts';

export type BreakerState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';

/**
 * What allow() let through: an ordinary request (counted in the window while CLOSED) or one of
 * HALF_OPEN's probes. The outcome is recorded against what it was let in as, not against whatever
 * the state is when it ends.
 */
export type Admission = 'request' | 'probe';

/** How a let-through request ended: `neutral` (the client left) says nothing about the backend. */
export type Outcome = 'success' | 'failure' | 'neutral';

export type BreakerSettings = Required<BreakerConfig>;

export interface BreakerView {
  state: BreakerState;
  opened_at: number | null;
  requests: number;
  error_rate_percent: number;
  slow_call_rate_percent: number;
}

export class CircuitBreakerState {
  #settings: BreakerSettings;
  #state: BreakerState = 'CLOSED';
  #openedAt = 0;
  /** Probe requests let through in HALF_OPEN, and how many of them succeeded. */
  #probes = 0;
  #probeSuccesses = 0;
  #halfOpenSince = 0;
  /** Bumped whenever HALF_OPEN begins: probes of an earlier round no longer count. */
  #round = 0;
  #second: Float64Array;
  #requests: Float64Array;
  #errors: Float64Array;
  #slow: Float64Array;

  constructor(settings: BreakerSettings) {
    this.#settings = settings;
    const n = settings.evaluation_window_seconds;
    this.#second = new Float64Array(n).fill(-1);
    this.#requests = new Float64Array(n);
    this.#errors = new Float64Array(n);
    this.#slow = new Float64Array(n);
  }

  get settings(): BreakerSettings {
    return this.#settings;
  }

  /** New settings keep the state; a new window length starts a fresh window. */
  configure(settings: BreakerSettings): void {
    if (settings.evaluation_window_seconds !== this.#settings.evaluation_window_seconds) {
      const n = settings.evaluation_window_seconds;
      this.#second = new Float64Array(n).fill(-1);
      this.#requests = new Float64Array(n);
      this.#errors = new Float64Array(n);
      this.#slow = new Float64Array(n);
    }
    this.#settings = settings;
  }

  state(now: number): BreakerState {
    const recovery = this.#settings.recovery_timeout_seconds * 1000;
    // From OPEN after the recovery timeout; and again from a HALF_OPEN whose probes all vanished
    // without an outcome for as long (a safety net: a lost probe must not hold the pool shut).
    if ((this.#state === 'OPEN' && now - this.#openedAt >= recovery) || (this.#state === 'HALF_OPEN' && now - this.#halfOpenSince >= recovery)) {
      this.#state = 'HALF_OPEN';
      this.#halfOpenSince = now;
      this.#probes = 0;
      this.#probeSuccesses = 0;
      this.#round++;
    }
    return this.#state;
  }

  /**
   * May a request go to the pool now? Null when not; otherwise what it was let in as. In HALF_OPEN
   * this takes one of the probe slots, which its record() gives back.
   */
  allow(now: number): { admission: Admission; round: number } | null {
    const state = this.state(now);
    if (state === 'CLOSED') return { admission: 'request', round: this.#round };
    if (state === 'OPEN') return null;
    if (this.#probes >= this.#settings.half_open_requests) return null;
    this.#probes++;
    return { admission: 'probe', round: this.#round };
  }

  /** A request the breaker let through has ended. `ms` is the backend's time to answer. */
  record(now: number, ticket: { admission: Admission; round: number }, outcome: Outcome, ms: number): void {
    if (ticket.admission === 'probe') {
      if (this.#state !== 'HALF_OPEN' || ticket.round !== this.#round) return; // a probe of a round already decided
      if (outcome === 'neutral') this.#probes--; // the slot goes back: nothing was learned
      else if (outcome === 'failure') this.#open(now);
      else if (++this.#probeSuccesses >= this.#settings.half_open_requests) this.#close();
      return;
    }
    // Ordinary requests count only while CLOSED (stragglers from before an OPEN are dropped).
    if (this.#state !== 'CLOSED' || outcome === 'neutral') return;
    const failed = outcome === 'failure';
    const second = Math.floor(now / 1000);
    const i = second % this.#second.length;
    if (this.#second[i] !== second) {
      this.#second[i] = second;
      this.#requests[i] = 0;
      this.#errors[i] = 0;
      this.#slow[i] = 0;
    }
    this.#requests[i]! += 1;
    if (failed) this.#errors[i]! += 1;
    if (ms >= this.#settings.slow_call_threshold_ms) this.#slow[i]! += 1;
    const w = this.#window(now);
    if (w.requests < this.#settings.min_request_volume) return;
    if (w.errorRate >= this.#settings.error_threshold_percent || w.slowRate >= this.#settings.slow_call_rate_percent) this.#open(now);
  }

  view(now: number): BreakerView {
    const w = this.#window(now);
    return {
      state: this.state(now),
      opened_at: this.#state === 'CLOSED' ? null : this.#openedAt,
      requests: w.requests,
      error_rate_percent: Math.round(w.errorRate * 100) / 100,
      slow_call_rate_percent: Math.round(w.slowRate * 100) / 100,
    };
  }

  #window(now: number): { requests: number; errorRate: number; slowRate: number } {
    const current = Math.floor(now / 1000);
    const n = this.#second.length;
    let requests = 0;
    let errors = 0;
    let slow = 0;
    for (let i = 0; i < n; i++) {
      const s = this.#second[i]!;
      if (s > current - n && s <= current) {
        requests += this.#requests[i]!;
        errors += this.#errors[i]!;
        slow += this.#slow[i]!;
      }
    }
    return { requests, errorRate: requests === 0 ? 0 : (errors * 100) / requests, slowRate: requests === 0 ? 0 : (slow * 100) / requests };
  }

  #open(now: number): void {
    this.#state = 'OPEN';
    this.#openedAt = now;
  }

  #close(): void {
    this.#state = 'CLOSED';
    this.#second.fill(-1);
  }
}
