import type { Balancer, LoadSource, PickRequest } from './balancer.ts';
import { IndexedHeap } from './heap.ts';
import { ParkedSet } from './parked.ts';
import { pickable } from './pickable.ts';

/** What tells the heap-based algorithms apart: the order of targets and how a pick changes it. */
export interface HeapOrder {
  less(a: number, b: number): boolean;
  /** Recomputes target i's key from the load source (after update(i), or on leaving the parked set). */
  refresh(i: number): void;
  /** Target i was just picked. */
  picked(i: number): void;
}

/**
 * A balancer that picks the least target of a heap: O(1) to find, O(log n) to reposition after the
 * pick and after each update(). The heap holds only targets that were pickable when last seen;
 * the others are parked (see ParkedSet), which covers both health and weight: in the data plane
 * a weight drops to 0 and comes back (health, slow start) without an update() call. Targets in
 * `avoid` are lifted off for the one pick, so the top is the answer after a bounded number of steps.
 */
export class HeapBalancer implements Balancer {
  readonly #load: LoadSource;
  readonly #order: HeapOrder;
  readonly #heap: IndexedHeap;
  readonly #parked: ParkedSet;

  constructor(n: number, load: LoadSource, order: HeapOrder) {
    this.#load = load;
    this.#order = order;
    this.#heap = new IndexedHeap(n, (a, b) => order.less(a, b));
    this.#parked = new ParkedSet(n);
    for (let i = 0; i < n; i++) {
      if (pickable(load, i, undefined)) this.#heap.push(i);
      else this.#parked.add(i);
    }
  }

  pick(_request: PickRequest, avoid?: ReadonlySet<number>): number {
    this.#recheck(this.#parked.next());
    let chosen = this.#best(avoid);
    // Nothing left in the heap: before answering "none", give every parked target its re-check now.
    if (chosen < 0 && this.#recheckAll()) chosen = this.#best(avoid);
    if (chosen >= 0) {
      this.#order.picked(chosen);
      this.#heap.fix(chosen);
    }
    return chosen;
  }

  update(index: number): void {
    if (this.#parked.has(index)) {
      this.#recheck(index);
    } else if (!pickable(this.#load, index, undefined)) {
      this.#heap.remove(index);
      this.#parked.add(index);
    } else {
      this.#order.refresh(index);
      this.#heap.fix(index);
    }
  }

  /** The least pickable target, parking the unpickable ones found on the way; -1 when there is none. */
  #best(avoid: ReadonlySet<number> | undefined): number {
    const heap = this.#heap;
    let lifted: number[] | undefined;
    let chosen = -1;
    for (let i = heap.top(); i >= 0; i = heap.top()) {
      if (!pickable(this.#load, i, undefined)) {
        heap.remove(i);
        this.#parked.add(i);
      } else if (avoid?.has(i)) {
        heap.remove(i);
        (lifted ??= []).push(i);
      } else {
        chosen = i;
        break;
      }
    }
    if (lifted) for (const i of lifted) heap.push(i);
    return chosen;
  }

  /** Returns parked target i to the heap if it is pickable again; whether it did. */
  #recheck(i: number): boolean {
    if (i < 0 || !pickable(this.#load, i, undefined)) return false;
    this.#parked.delete(i);
    this.#order.refresh(i);
    this.#heap.push(i);
    return true;
  }

  #recheckAll(): boolean {
    let any = false;
    for (const i of this.#parked.snapshot()) any = this.#recheck(i) || any;
    return any;
  }
}
