/**
 * The recent outcomes of one backend's active checks, for the results endpoint's aggregates:
 * a fixed ring of typed arrays (13 bytes per check), so thousands of backends checked every
 * second keep a bounded, garbage-free history — 600 checks: ten minutes at one a second, ten
 * hours at one a minute.
 */
export const HISTORY_CAPACITY = 600;

export interface HistoryAggregates {
  checks_total: number;
  checks_passed: number;
  checks_failed: number;
  availability_percent: number | null;
  avg_response_time_ms: number | null;
  p99_response_time_ms: number | null;
  /** The oldest check counted (ISO time is the caller's to format); null when none. */
  oldest_at: number | null;
}

export class CheckHistory {
  readonly #at = new Float64Array(HISTORY_CAPACITY);
  readonly #ms = new Float32Array(HISTORY_CAPACITY);
  readonly #ok = new Uint8Array(HISTORY_CAPACITY);
  #next = 0;
  #size = 0;

  add(at: number, durationMs: number, ok: boolean): void {
    this.#at[this.#next] = at;
    this.#ms[this.#next] = durationMs;
    this.#ok[this.#next] = ok ? 1 : 0;
    this.#next = (this.#next + 1) % HISTORY_CAPACITY;
    if (this.#size < HISTORY_CAPACITY) this.#size++;
  }

  clear(): void {
    this.#next = 0;
    this.#size = 0;
  }

  /** Aggregates over the kept checks at or after `since` (ms since epoch). */
  aggregate(since: number): HistoryAggregates {
    const durations: number[] = [];
    let passed = 0;
    let oldest = Infinity;
    for (let k = 0; k < this.#size; k++) {
      const i = (this.#next - 1 - k + HISTORY_CAPACITY) % HISTORY_CAPACITY;
      const at = this.#at[i]!;
      if (at < since) break; // newest first: everything further back is older still
      durations.push(this.#ms[i]!);
      if (this.#ok[i] === 1) passed++;
      oldest = at;
    }
    const n = durations.length;
    const round = (x: number) => Math.round(x * 100) / 100;
    durations.sort((a, b) => a - b);
    return {
      checks_total: n,
      checks_passed: passed,
      checks_failed: n - passed,
      availability_percent: n === 0 ? null : round((passed * 100) / n),
      avg_response_time_ms: n === 0 ? null : round(durations.reduce((a, b) => a + b, 0) / n),
      p99_response_time_ms: n === 0 ? null : round(durations[Math.min(n - 1, Math.ceil(n * 0.99) - 1)]!),
      oldest_at: n === 0 ? null : oldest,
    };
  }
}
