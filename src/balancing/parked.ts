/**
 * Targets that a heap-based balancer found unpickable (unusable or weight 0) and took out of its
 * heap. Both can change without an update() call, so an unpickable target left in the heap would
 * be skipped on every pick while it stays on top, and one left at the bottom would never be seen
 * again; parked, it costs one removal per outage. Picks re-check parked targets one at a time in
 * rotation (`next`), so a recovered target is back within as many picks as there are parked ones.
 */
export class ParkedSet {
  readonly #list: number[] = [];
  /** Position of each target in #list, -1 while it is not parked. */
  readonly #at: Int32Array;
  #cursor = 0;

  constructor(capacity: number) {
    this.#at = new Int32Array(capacity).fill(-1);
  }

  has(i: number): boolean {
    return this.#at[i]! >= 0;
  }

  add(i: number): void {
    this.#at[i] = this.#list.length;
    this.#list.push(i);
  }

  /** Removes i in O(1) by moving the last parked target into its place. */
  delete(i: number): void {
    const at = this.#at[i]!;
    const last = this.#list.pop()!;
    if (last !== i) {
      this.#list[at] = last;
      this.#at[last] = at;
    }
    this.#at[i] = -1;
  }

  /** The next parked target to re-check, in rotation; -1 when none is parked. */
  next(): number {
    if (this.#list.length === 0) return -1;
    if (this.#cursor >= this.#list.length) this.#cursor = 0;
    return this.#list[this.#cursor++]!;
  }

  /** A copy, safe to iterate while deleting. */
  snapshot(): number[] {
    return [...this.#list];
  }
}
