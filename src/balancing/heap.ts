/**
 * A binary min-heap of target indexes that records where each index sits, so that a target whose
 * key changed is repositioned in O(log n) instead of searched for. The heap holds no keys: `less`
 * reads them, so callers change a key first and then call `fix`.
 */
export class IndexedHeap {
  readonly #items: Int32Array;
  /** Position of each target in #items, -1 while it is not in the heap. */
  readonly #slot: Int32Array;
  readonly #less: (a: number, b: number) => boolean;
  #size = 0;

  constructor(capacity: number, less: (a: number, b: number) => boolean) {
    this.#items = new Int32Array(capacity);
    this.#slot = new Int32Array(capacity).fill(-1);
    this.#less = less;
  }

  /** The least target, -1 when empty. */
  top(): number {
    return this.#size > 0 ? this.#items[0]! : -1;
  }

  push(i: number): void {
    this.#place(i, this.#size++);
    this.#up(this.#size - 1);
  }

  /** Takes target i out; nothing when it is not in the heap. */
  remove(i: number): void {
    const at = this.#slot[i]!;
    if (at < 0) return;
    this.#slot[i] = -1;
    const last = this.#items[--this.#size]!;
    if (last === i) return;
    this.#place(last, at);
    this.fix(last);
  }

  /** Restores the order after target i's key changed; nothing when i is not in the heap. */
  fix(i: number): void {
    const at = this.#slot[i]!;
    if (at >= 0 && this.#up(at) === at) this.#down(at);
  }

  #place(i: number, at: number): void {
    this.#items[at] = i;
    this.#slot[i] = at;
  }

  /** Moves the item at `at` towards the root while it is less than its parent; its final position. */
  #up(at: number): number {
    const i = this.#items[at]!;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      const p = this.#items[parent]!;
      if (!this.#less(i, p)) break;
      this.#place(p, at);
      at = parent;
    }
    this.#place(i, at);
    return at;
  }

  #down(at: number): void {
    const i = this.#items[at]!;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= this.#size) break;
      if (child + 1 < this.#size && this.#less(this.#items[child + 1]!, this.#items[child]!)) child++;
      const c = this.#items[child]!;
      if (!this.#less(c, i)) break;
      this.#place(c, at);
      at = child;
    }
    this.#place(i, at);
  }
}
