/**
 * Requests each routing rule matched over the last hour (the API's `hit_count_last_hour`): per
 * rule, a ring of 60 one-minute counters, so counting is O(1) and memory is fixed per rule. Runtime
 * state keyed by rule id, kept across configuration revisions.
 */
const MINUTE_MS = 60_000;
const SLOTS = 60;

class Ring {
  readonly counts = new Float64Array(SLOTS);
  /** The minute (ms since epoch / 60,000) each slot counts. */
  readonly minutes = new Float64Array(SLOTS);
}

export class RuleHits {
  readonly #rings = new Map<string, Ring>();

  hit(ruleId: string, now: number): void {
    let ring = this.#rings.get(ruleId);
    if (!ring) this.#rings.set(ruleId, (ring = new Ring()));
    const minute = Math.floor(now / MINUTE_MS);
    const slot = minute % SLOTS;
    if (ring.minutes[slot] !== minute) {
      ring.minutes[slot] = minute;
      ring.counts[slot] = 0;
    }
    ring.counts[slot]!++;
  }

  /** Requests matched in the 60 minutes up to `now` (the current minute included). */
  lastHour(ruleId: string, now: number): number {
    const ring = this.#rings.get(ruleId);
    if (!ring) return 0;
    const minute = Math.floor(now / MINUTE_MS);
    let total = 0;
    for (let i = 0; i < SLOTS; i++) if (minute - ring.minutes[i]! < SLOTS) total += ring.counts[i]!;
    return total;
  }

  /** Forgets rules that no longer exist. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.#rings.keys()) if (!ids.has(id)) this.#rings.delete(id);
  }
}
