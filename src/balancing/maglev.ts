import type { LoadSource, Target } from './balancer.ts';
import { hashKey } from './hash.ts';
import type { Locate } from './hashing.ts';
import { IndexedHeap } from './heap.ts';

/**
 * Table slots per target: Maglev moves little more than the minimal 1/N of keys when a target
 * goes only while the table is much larger than the target list.
 */
const SLOTS_PER_TARGET = 100;
/** Smallest table: 256 KB, even shares (±1 slot in 65,537) for small pools. */
const MIN_SLOTS = 65_537;
/** Largest table: 4 MB, reached at 10,000 targets; beyond, fewer slots per target. */
const MAX_SLOTS = 1_000_003;
/** Seeds of the two per-target hashes that define a target's preference order over the slots. */
const OFFSET_SEED = 0x4d41474c;
const SKIP_SEED = 0x45565f32;

/**
 * CONSISTENT_HASH's mapping: Maglev hashing (Eisenbud et al., NSDI 2016). Each target prefers the
 * slots of a prime-sized table in its own order, derived from its id; targets take turns claiming
 * their next free preferred slot until the table is full, and a key maps to the target of slot
 * hash mod size — O(1). Because preferences depend on ids, not positions, building over the same
 * targets less one moves about 1/N of the keys. Weighted, each target's turns come in proportion
 * to its weight at construction, and so does its share of slots.
 */
export function maglev(targets: readonly Target[], load: LoadSource, weighted: boolean): Locate {
  const table = buildTable(targets, weighted ? turnsByWeight(targets.length, load) : undefined);
  const size = table.length;
  return (hash) => table[hash % size]!;
}

function buildTable(targets: readonly Target[], nextTurn: (() => number) | undefined): Int32Array {
  const n = targets.length;
  const size = tableSize(n);
  const next = new Int32Array(n);
  const skip = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = hashKey(targets[i]!.id, OFFSET_SEED) % size;
    skip[i] = (hashKey(targets[i]!.id, SKIP_SEED) % (size - 1)) + 1;
  }
  const table = new Int32Array(size).fill(-1);
  for (let filled = 0; filled < size; filled++) {
    const i = nextTurn ? nextTurn() : filled % n;
    // The size is prime and 0 < skip < size, so the walk visits every slot and finds a free one.
    let slot = next[i]!;
    while (table[slot] !== -1) {
      slot += skip[i]!;
      if (slot >= size) slot -= size;
    }
    table[slot] = i;
    slot += skip[i]!;
    next[i] = slot >= size ? slot - size : slot;
  }
  return table;
}

/**
 * Whose turn it is, by earliest deadline with period 1/weight (as weighted round robin), so
 * turns, and slots, come in proportion to weight; undefined when all weights are 0.
 */
function turnsByWeight(n: number, load: LoadSource): (() => number) | undefined {
  const period = new Float64Array(n);
  const due = new Float64Array(n);
  const heap = new IndexedHeap(n, (a, b) => due[a]! < due[b]! || (due[a] === due[b] && a < b));
  for (let i = 0; i < n; i++) {
    const w = load.weight(i);
    if (!(w > 0)) continue;
    period[i] = due[i] = 1 / w;
    heap.push(i);
  }
  if (heap.size === 0) return undefined;
  return () => {
    const i = heap.top();
    due[i]! += period[i]!;
    heap.fix(i);
    return i;
  };
}

/** The smallest prime of at least SLOTS_PER_TARGET × n, within [MIN_SLOTS, MAX_SLOTS]. */
function tableSize(n: number): number {
  let size = Math.min(Math.max(SLOTS_PER_TARGET * n, MIN_SLOTS), MAX_SLOTS);
  while (!isPrime(size)) size++;
  return size;
}

function isPrime(x: number): boolean {
  if (x % 2 === 0) return x === 2;
  for (let d = 3; d * d <= x; d += 2) if (x % d === 0) return false;
  return x > 1;
}
