/**
 * Sticky tables for session persistence: which backend a client is pinned to, by key (its IP for
 * SOURCE_IP — Scaleway's `table` —, the value of an application's cookie for APP_COOKIE), each pin
 * expiring `ttl` after it was last used. Runtime state, kept per pool identity across
 * configuration revisions, so editing a pool or adding backends moves no pinned client.
 *
 * Bounded: a table holds at most `maxEntries` pins; a Map in least-recently-used order (a hit
 * moves its key to the end) drops the least recently used pin first. Each operation is O(1).
 */
export class StickyTable {
  readonly #pins = new Map<string, { serverId: string; expiresAt: number }>();
  readonly #max: number;

  constructor(maxEntries = 100_000) {
    this.#max = maxEntries;
  }

  /** The backend `key` is pinned to, or undefined (none, or expired). */
  get(key: string, now: number): string | undefined {
    const pin = this.#pins.get(key);
    if (pin === undefined) return undefined;
    if (pin.expiresAt <= now) {
      this.#pins.delete(key);
      return undefined;
    }
    return pin.serverId;
  }

  /** Pins `key` to `serverId` until `expiresAt` (a use refreshes it the same way). */
  set(key: string, serverId: string, expiresAt: number): void {
    this.#pins.delete(key);
    this.#pins.set(key, { serverId, expiresAt });
    if (this.#pins.size > this.#max) this.#pins.delete(this.#pins.keys().next().value!);
  }

  get size(): number {
    return this.#pins.size;
  }
}

/** One table per pool, by pool identity. */
export class StickyTables {
  readonly #tables = new Map<string, StickyTable>();

  table(poolId: string): StickyTable {
    let t = this.#tables.get(poolId);
    if (!t) this.#tables.set(poolId, (t = new StickyTable()));
    return t;
  }

  /** Forgets the tables of pools that no longer persist sessions by a table. */
  retain(poolIds: ReadonlySet<string>): void {
    for (const id of this.#tables.keys()) if (!poolIds.has(id)) this.#tables.delete(id);
  }
}
