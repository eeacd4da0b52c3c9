/**
 * Requests, errors and response time over the last few seconds, in one-second buckets: enough for
 * the API's requests_per_second, avg_response_time_ms and error_rate_percent without keeping
 * every sample. Recording is O(1) and allocation-free.
 */
export const WINDOW_SECONDS = 10;

export interface TrafficSummary {
  requests_per_second: number;
  avg_response_time_ms: number;
  error_rate_percent: number;
}

export class TrafficWindow {
  readonly #second = new Float64Array(WINDOW_SECONDS).fill(-1);
  readonly #requests = new Float64Array(WINDOW_SECONDS);
  readonly #errors = new Float64Array(WINDOW_SECONDS);
  readonly #totalMs = new Float64Array(WINDOW_SECONDS);

  record(now: number, ms: number, failed: boolean): void {
    const second = Math.floor(now / 1000);
    const i = second % WINDOW_SECONDS;
    if (this.#second[i] !== second) {
      this.#second[i] = second;
      this.#requests[i] = 0;
      this.#errors[i] = 0;
      this.#totalMs[i] = 0;
    }
    this.#requests[i]! += 1;
    this.#totalMs[i]! += ms;
    if (failed) this.#errors[i]! += 1;
  }

  /** Over the last WINDOW_SECONDS full or partial seconds, ending at `now`. */
  summary(now: number): TrafficSummary {
    const current = Math.floor(now / 1000);
    let requests = 0;
    let errors = 0;
    let totalMs = 0;
    for (let i = 0; i < WINDOW_SECONDS; i++) {
      const s = this.#second[i]!;
      if (s > current - WINDOW_SECONDS && s <= current) {
        requests += this.#requests[i]!;
        errors += this.#errors[i]!;
        totalMs += this.#totalMs[i]!;
      }
    }
    const round = (n: number, places: number) => Math.round(n * 10 ** places) / 10 ** places;
    return {
      requests_per_second: round(requests / WINDOW_SECONDS, 2),
      avg_response_time_ms: requests === 0 ? 0 : round(totalMs / requests, 2),
      error_rate_percent: requests === 0 ? 0 : round((errors * 100) / requests, 2),
    };
  }
}
