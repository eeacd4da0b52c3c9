/**
 * What each algorithm promises beyond the shared conformance checks: smoothness of weighted round
 * robin, exactness of the least-load heaps, latency preference, and the stability of hashing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Balancer } from '../../src/balancing/balancer.ts';
import { createBalancer } from '../../src/balancing/index.ts';
import type { Algorithm } from '../../src/model/pool.ts';
import { build, FakeLoad, keyOf, seeded, shares, targetsOf, Traffic, VARIANTS, type Variant } from './fake-load.ts';

const variant = (name: string): Variant => VARIANTS.find((v) => v.name === name)!;
const picks = (b: Balancer, count: number): number[] => Array.from({ length: count }, () => b.pick({ key: '' }));
const longestRun = (seq: readonly number[], target: number): number => {
  let run = 0;
  let longest = 0;
  for (const i of seq) longest = Math.max(longest, (run = i === target ? run + 1 : 0));
  return longest;
};

for (const name of ['WEIGHTED_ROUND_ROBIN', 'ROUND_ROBIN weighted']) {
  describe(`${name} is smooth`, () => {
    it('interleaves weights 5, 1, 1: five a, one b, one c in every 7 picks, never more than 3 a in a row', () => {
      const seq = picks(build(variant(name), new FakeLoad([5, 1, 1]), 3), 70);
      for (let start = 0; start + 7 <= seq.length; start++) {
        const window = seq.slice(start, start + 7);
        assert.deepEqual([0, 1, 2].map((i) => window.filter((x) => x === i).length), [5, 1, 1], `window at ${start}: ${window}`);
      }
      assert.ok(longestRun(seq, 0) <= 3, `a burst: ${seq.join('')}`);
    });

    it('keeps every target within 2 picks of its exact share at every point, for any weights', () => {
      const random = seeded(11);
      for (let trial = 0; trial < 30; trial++) {
        const n = 2 + Math.floor(random() * 8);
        const weights = Array.from({ length: n }, () => 1 + Math.floor(random() * 20));
        const total = weights.reduce((a, b) => a + b, 0);
        const b = build(variant(name), new FakeLoad(weights), n);
        const counts = weights.map(() => 0);
        for (let made = 1; made <= 3 * total; made++) {
          counts[b.pick({ key: '' })]!++;
          counts.forEach((c, i) => assert.ok(Math.abs(c - (made * weights[i]!) / total) < 2, `weights ${weights}, pick ${made}: counts ${counts}`));
        }
      }
    });

    it('reads the weight at pick time, so a weight that changes without update() takes effect', () => {
      const load = new FakeLoad([1, 1]);
      const b = build(variant(name), load, 2);
      picks(b, 101);
      load.weights[1] = 3; // slow start ramping up, no update() call
      const seq = picks(b, 400);
      const ones = seq.filter((i) => i === 1).length;
      assert.ok(Math.abs(ones - 300) <= 2, `${ones} of 400 picks for the weight-3 target`);
    });

    it('takes a target whose weight rose (update) into the rotation without a catch-up burst', () => {
      const load = new FakeLoad([1, 0.01]);
      const b = build(variant(name), load, 2);
      picks(b, 10);
      load.weights[1] = 1; // slow start done
      b.update(1);
      const seq = picks(b, 20);
      assert.ok(longestRun(seq, 1) <= 2, `a burst: ${seq.join('')}`);
      assert.equal(seq.filter((i) => i === 1).length, 10, seq.join(''));
    });

    it('is not disturbed by the update() calls the data plane makes on every connection change', () => {
      const weights = [4, 3, 2, 1];
      const quiet = build(variant(name), new FakeLoad(weights), 4);
      const busy = build(variant(name), new FakeLoad(weights), 4);
      const expected = picks(quiet, 200);
      const seq = Array.from({ length: 200 }, () => {
        const i = busy.pick({ key: '' });
        busy.update(i);
        return i;
      });
      assert.deepEqual(seq, expected);
    });
  });
}

/** The score each least-load variant minimises, written out independently of the implementation. */
const SCORES: Record<string, (load: FakeLoad, i: number) => number> = {
  LEAST_CONNECTIONS: (load, i) => load.actives[i]!,
  'LEAST_CONNECTIONS weighted': (load, i) => (load.actives[i]! + 1) / load.weights[i]!,
  WEIGHTED_LEAST_CONNECTIONS: (load, i) => (load.actives[i]! + 1) / load.weights[i]!,
  LEAST_RESPONSE_TIME: (load, i) => load.latencies[i]! * (load.actives[i]! + 1),
  'LEAST_RESPONSE_TIME weighted': (load, i) => (load.latencies[i]! * (load.actives[i]! + 1)) / load.weights[i]!,
};

for (const [name, score] of Object.entries(SCORES)) {
  describe(`${name} picks the least loaded target`, () => {
    it('matches a brute-force minimum through load, weight, health and avoid changes', () => {
      const n = 12;
      const random = seeded(5);
      const load = new FakeLoad(Array.from({ length: n }, () => 1 + Math.floor(random() * 4)));
      load.latencies.forEach((_, i) => (load.latencies[i] = 5 + Math.floor(random() * 4) * 5));
      const b = build(variant(name), load, n);
      const traffic = new Traffic(b, load, 40);
      for (let step = 0; step < 20_000; step++) {
        const r = random();
        const t = Math.floor(random() * n);
        if (r < 0.03) {
          // Going down is noticed at pick time; coming back is announced, so the minimum is exact.
          load.usables[t] = !load.usables[t];
          if (load.usables[t]) b.update(t);
        } else if (r < 0.06) {
          load.weights[t] = Math.floor(random() * 5);
          b.update(t);
        } else if (r < 0.09) {
          load.latencies[t] = 5 + Math.floor(random() * 4) * 5;
          b.update(t);
        }
        const avoid = random() < 0.2 ? new Set([Math.floor(random() * n)]) : undefined;
        const candidates = load.weights.map((_, i) => i).filter((i) => load.pickable(i, avoid));
        const best = Math.min(...candidates.map((i) => score(load, i)));
        const i = b.pick({ key: '' }, avoid);
        if (candidates.length === 0) {
          assert.equal(i, -1);
        } else {
          assert.ok(candidates.includes(i), `step ${step}: ${i} is not pickable`);
          assert.equal(score(load, i), best, `step ${step}: ${i} is not the least loaded`);
          traffic.open(i);
        }
      }
    });
  });
}

describe('least-load ties', () => {
  for (const name of ['LEAST_CONNECTIONS', 'WEIGHTED_LEAST_CONNECTIONS', 'LEAST_RESPONSE_TIME']) {
    it(`${name} rotates over equally loaded targets when the load never changes`, () => {
      const counts = [0, 0, 0, 0, 0];
      for (const i of picks(build(variant(name), FakeLoad.even(5), 5), 100)) counts[i]!++;
      assert.deepEqual(counts, [20, 20, 20, 20, 20]);
    });
    it(`${name} p2c spreads over equally loaded targets when the load never changes`, () => {
      const counts = [0, 0, 0, 0, 0];
      for (const i of picks(build(variant(`${name} p2c`), FakeLoad.even(5), 5), 5_000)) counts[i]!++;
      for (const c of counts) assert.ok(Math.abs(c - 1_000) < 100, `${counts}`);
    });
  }

  it('power of two choices never picks the single most loaded target', () => {
    for (const name of ['LEAST_CONNECTIONS p2c', 'WEIGHTED_LEAST_CONNECTIONS p2c', 'LEAST_RESPONSE_TIME p2c']) {
      const load = FakeLoad.even(5);
      load.actives.splice(0, 5, 5, 2, 7, 2, 9);
      load.latencies.fill(10);
      const seen = new Set(picks(build(variant(name), load, 5), 1_000));
      assert.ok(!seen.has(4), name);
      assert.deepEqual([...seen].sort(), [0, 1, 2, 3], name);
    }
  });
});

describe('LEAST_RESPONSE_TIME', () => {
  for (const name of ['LEAST_RESPONSE_TIME', 'LEAST_RESPONSE_TIME p2c']) {
    it(`${name} sends more traffic to faster targets`, () => {
      const load = FakeLoad.even(3);
      load.latencies.splice(0, 3, 10, 20, 40);
      const s = shares(new Traffic(build(variant(name), load, 3), load, 70).count(70_000));
      assert.ok(s[0]! > s[1]! && s[1]! > s[2]!, `shares ${s}`);
      // At equilibrium latency × (active + 1) is equal, so shares go as 1 / latency: 4 : 2 : 1.
      if (!name.endsWith('p2c')) [4 / 7, 2 / 7, 1 / 7].forEach((e, i) => assert.ok(Math.abs(s[i]! - e) < e * 0.1, `shares ${s}`));
    });

    it(`${name} tries every unmeasured target early`, () => {
      const load = FakeLoad.even(6);
      load.latencies.splice(0, 3, 10, 10, 10);
      const traffic = new Traffic(build(variant(name), load, 6), load, 1_000);
      const first = Array.from({ length: name.endsWith('p2c') ? 60 : 3 }, () => traffic.request());
      assert.deepEqual([...new Set(first.filter((i) => i >= 3))].sort(), [3, 4, 5], `first picks ${first}`);
    });
  }
});

describe('weighted RANDOM', () => {
  it('catches up with weight changes made without update() within n picks', () => {
    const load = FakeLoad.even(4);
    const traffic = new Traffic(build(variant('RANDOM weighted'), load, 4), load);
    load.weights[0] = 5;
    traffic.count(4);
    const s = shares(traffic.count(80_000));
    [5 / 8, 1 / 8, 1 / 8, 1 / 8].forEach((e, i) => assert.ok(Math.abs(s[i]! - e) < e * 0.04, `shares ${s}`));
  });


  it('follows weight changes announced by update()', () => {
    const load = FakeLoad.even(4);
    const b = build(variant('RANDOM weighted'), load, 4);
    load.weights[0] = 5;
    b.update(0);
    const s = shares(new Traffic(b, load).count(80_000));
    [5 / 8, 1 / 8, 1 / 8, 1 / 8].forEach((e, i) => assert.ok(Math.abs(s[i]! - e) < e * 0.04, `shares ${s}`));
  });
});

const HASHING = VARIANTS.filter((v) => v.hashing);
const KEYS = Array.from({ length: 5_000 }, (_, k) => keyOf(k * 7919));
const route = (b: Balancer, avoid?: ReadonlySet<number>) => KEYS.map((key) => b.pick({ key }, avoid));

for (const v of HASHING) {
  describe(`${v.name} is sticky`, () => {
    it('sends the same key to the same target, pick after pick and balancer after balancer', () => {
      const load = new FakeLoad([1, 2, 3, 4, 5]);
      const first = route(build(v, load, 5, 1));
      const again = build(v, load, 5, 99);
      assert.deepEqual(route(again), first);
      assert.deepEqual(route(again), first);
    });

    it('moves only the keys of a target that goes down, deterministically and spread over the others', () => {
      const load = FakeLoad.even(8);
      const b = build(v, load, 8);
      const before = route(b);
      load.usables[2] = false;
      const after = route(b);
      const moved = new Set<number>();
      before.forEach((t, k) => {
        if (t === 2) moved.add(after[k]!);
        else assert.equal(after[k], t, `key ${KEYS[k]} left healthy target ${t}`);
      });
      assert.ok(!moved.has(2));
      assert.ok(moved.size >= 5, `a down target's keys went to only ${[...moved]}`);
      assert.deepEqual(route(b), after, 'fallback is deterministic');
      load.usables[2] = true;
      assert.deepEqual(route(b, new Set([2])), after, 'avoiding a target falls back the same way');
      assert.deepEqual(route(b), before, 'keys come back when it recovers');
    });
  });
}

describe('CONSISTENT_HASH is consistent', () => {
  const KEY_COUNT = 100_000;
  const locate = (algorithm: Algorithm, targets: { id: string }[]) => {
    const b = createBalancer(targets, FakeLoad.even(targets.length), { algorithm, weighted: false, powerOfTwoChoices: false, random: seeded(1) });
    return Array.from({ length: KEY_COUNT }, (_, k) => targets[b.pick({ key: keyOf(k) })]!.id);
  };

  for (const n of [10, 100]) {
    it(`moves about 1/N of keys when one of N = ${n} targets goes, and only those`, () => {
      const all = targetsOf(n);
      const before = locate('CONSISTENT_HASH', all);
      const gone = all[3]!.id;
      const after = locate('CONSISTENT_HASH', all.filter((t) => t.id !== gone));
      let moved = 0;
      let movedFromSurvivors = 0;
      before.forEach((id, k) => {
        if (after[k] === id) return;
        moved++;
        if (id !== gone) movedFromSurvivors++;
      });
      assert.ok(moved / KEY_COUNT <= 1.5 / n, `moved ${moved / KEY_COUNT} of keys`);
      assert.ok(movedFromSurvivors / KEY_COUNT <= 0.01, `${movedFromSurvivors} keys of surviving targets moved`);
    });

    it(`gives N = ${n} targets even shares of keys`, () => {
      const counts = new Map<string, number>();
      for (const id of locate('CONSISTENT_HASH', targetsOf(n))) counts.set(id, (counts.get(id) ?? 0) + 1);
      assert.equal(counts.size, n);
      const tolerance = n === 10 ? 0.08 : 0.2;
      for (const [id, c] of counts) assert.ok(Math.abs(c / KEY_COUNT - 1 / n) <= tolerance / n, `${id}: ${c}`);
    });
  }

  it('moves keys only to a target that joins', () => {
    const all = targetsOf(11);
    const before = locate('CONSISTENT_HASH', all.slice(0, 10));
    const after = locate('CONSISTENT_HASH', all);
    const moved = before.filter((id, k) => after[k] !== id);
    assert.ok(moved.length / KEY_COUNT <= 1.5 / 11, `${moved.length} moved`);
    before.forEach((id, k) => assert.ok(after[k] === id || after[k] === all[10]!.id));
  });

  it('where IP_HASH, by contrast, moves most keys', () => {
    const all = targetsOf(10);
    const before = locate('IP_HASH', all);
    const after = locate('IP_HASH', all.slice(1));
    assert.ok(before.filter((id, k) => after[k] !== id).length / KEY_COUNT > 0.5);
  });
});
