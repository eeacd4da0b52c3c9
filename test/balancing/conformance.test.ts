/**
 * The conformance suite: every algorithm, weighted or not and with power of two choices where it
 * applies, through the same checks — what may be picked, what shares come out, how it scales.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBalancer } from '../../src/balancing/index.ts';
import { build, FakeLoad, keyOf, seeded, shares, targetsOf, Traffic, VARIANTS, type Variant } from './fake-load.ts';

const WEIGHTS = [1, 2, 3, 4];

/**
 * Allowed relative error of a share over 100,000 picks: rotations are exact and least-load settles
 * close to its equilibrium, random and hashing carry sampling noise (σ ≈ 1% for the smallest
 * share), and a hash ring's shares are only as even as its points.
 */
function tolerance(v: Variant): number {
  if (v.algorithm === 'CONSISTENT_HASH') return 0.08;
  if (v.hashing || v.algorithm === 'RANDOM') return 0.04;
  return 0.02;
}

/** The pick of request `k`: hashing variants see a different client each time. */
const pickOf = (b: ReturnType<typeof build>, k: number, avoid?: ReadonlySet<number>) => b.pick({ key: keyOf(k) }, avoid);

for (const v of VARIANTS) {
  describe(v.name, () => {
    it(v.byWeight ? 'shares traffic in proportion to weight' : 'shares traffic evenly, whatever the weights', () => {
      const load = new FakeLoad(WEIGHTS);
      load.latencies.fill(10);
      // Many requests in flight keep least-load's +1 small against the weights.
      const counts = new Traffic(build(v, load, WEIGHTS.length), load, 500).count(100_000);
      const total = WEIGHTS.reduce((a, b) => a + b, 0);
      shares(counts).forEach((share, i) => {
        const expected = v.byWeight ? WEIGHTS[i]! / total : 1 / WEIGHTS.length;
        assert.ok(Math.abs(share - expected) <= expected * tolerance(v), `target ${i}: share ${share.toFixed(4)}, expected ${expected} (${counts})`);
      });
    });

    it('never picks an unusable, weight-0 or avoided target', () => {
      const load = new FakeLoad([3, 0, 1, 2, 5, 1, 4, 2]);
      load.usables[2] = false;
      const b = build(v, load, 8);
      const traffic = new Traffic(b, load);
      const avoid = new Set([4]);
      const counts = traffic.count(5_000, avoid);
      for (const i of [1, 2, 4]) assert.equal(counts[i], 0, `target ${i} picked: ${counts}`);
      assert.equal(counts.reduce((a, c) => a + c, 0), 5_000, 'every request got a target');
    });

    it('follows health flips, weight changes and avoid sets, and returns -1 exactly when nothing is pickable', () => {
      const n = 9;
      const random = seeded(7);
      const load = new FakeLoad(Array.from({ length: n }, () => 1 + Math.floor(random() * 5)));
      const b = build(v, load, n);
      const traffic = new Traffic(b, load);
      for (let step = 0; step < 20_000; step++) {
        const r = random();
        const t = Math.floor(random() * n);
        // Health flips and weight changes come with or without update(), latency changes with one.
        if (r < 0.05) load.usables[t] = !load.usables[t];
        else if (r < 0.08) {
          load.weights[t] = random() < 0.3 ? 0 : 1 + Math.floor(random() * 5);
          if (random() < 0.5) b.update(t);
        } else if (r < 0.1) {
          load.latencies[t] = random() * 50;
          b.update(t);
        }
        const avoid = new Set(Array.from({ length: Math.floor(random() * 3) }, () => Math.floor(random() * n)));
        const i = traffic.request(avoid);
        const any = load.weights.some((_, j) => load.pickable(j, avoid));
        if (i < 0) assert.ok(!any, `step ${step}: -1 although a target was pickable`);
        else assert.ok(load.pickable(i, avoid), `step ${step}: picked ${i}, not pickable`);
      }
    });

    it('returns -1 when all targets are unusable, weigh 0 or are avoided, and for no targets', () => {
      const down = FakeLoad.even(5);
      down.usables.fill(false);
      assert.equal(build(v, down, 5).pick({ key: 'k' }), -1);
      const empty = new FakeLoad([0, 0, 0]);
      assert.equal(build(v, empty, 3).pick({ key: 'k' }), -1);
      const up = FakeLoad.even(3);
      assert.equal(build(v, up, 3).pick({ key: 'k' }, new Set([0, 1, 2])), -1);
      assert.equal(build(v, FakeLoad.even(0), 0).pick({ key: 'k' }), -1);
    });

    it('takes a target back after it recovers, with no update() call', () => {
      const load = FakeLoad.even(6);
      const b = build(v, load, 6);
      const traffic = new Traffic(b, load);
      load.usables[0] = false;
      assert.equal(traffic.count(300)[0], 0);
      load.usables[0] = true;
      const back = v.hashing ? Array.from({ length: 600 }, (_, k) => pickOf(b, k)).filter((i) => i === 0).length : traffic.count(600)[0]!;
      assert.ok(back > 0, 'recovered target never picked');
    });

    // The data plane calls update() on load changes; a weight falls to 0 and comes back with the
    // backend's health, so a drop may be seen through the update() of a closing request and the
    // return through nothing at all.
    for (const [down, up] of [
      [true, true],
      [false, false],
      [true, false],
    ]) {
      it(`stops and resumes with a weight set to 0 ${down ? 'with' : 'without'} update() and back ${up ? 'with' : 'without'}`, () => {
        const load = FakeLoad.even(4);
        const b = build(v, load, 4);
        const traffic = new Traffic(b, load);
        traffic.count(100);
        load.weights[1] = 0;
        if (down) b.update(1);
        assert.equal(traffic.count(400)[1], 0);
        load.weights[1] = 1;
        if (up) b.update(1);
        const back = v.hashing ? Array.from({ length: 400 }, (_, k) => pickOf(b, k)).filter((i) => i === 1).length : traffic.count(400)[1]!;
        assert.ok(back > 0);
      });
    }

    // Weighted hashing takes its shares from the weights at construction, so there a target that
    // starts at weight 0 only ever gets the keys of targets that are down.
    if (!(v.hashing && v.weighted)) {
      it('gives a target that starts at weight 0 (not yet healthy) traffic once its weight rises, without update()', () => {
        const load = new FakeLoad([2, 2, 0, 2]);
        const b = build(v, load, 4);
        const traffic = new Traffic(b, load);
        assert.equal(traffic.count(200)[2], 0);
        load.weights[2] = 2;
        const later = v.hashing ? Array.from({ length: 400 }, (_, k) => pickOf(b, k)).filter((i) => i === 2).length : traffic.count(400)[2]!;
        assert.ok(later > 50, `${later} of 400 picks`);
      });
    }

    it('picks over 10,000 targets, a third of them down', () => {
      const n = 10_000;
      const load = FakeLoad.even(n);
      for (let i = 0; i < n; i += 3) load.usables[i] = false;
      const b = build(v, load, n);
      const counts = new Traffic(b, load, 1_000).count(30_000);
      let used = 0;
      counts.forEach((c, i) => {
        if (i % 3 === 0) assert.equal(c, 0, `down target ${i} picked`);
        if (c > 0) used++;
      });
      // 30,000 picks over 6,666 targets: anything fair reaches most of them.
      assert.ok(used > 5_000, `only ${used} targets used`);
    });
  });
}

describe('createBalancer', () => {
  it('rejects an algorithm it does not know', () => {
    const options = { algorithm: 'FASTEST' as never, weighted: false, powerOfTwoChoices: false, random: seeded(1) };
    assert.throws(() => createBalancer(targetsOf(2), FakeLoad.even(2), options), /unknown balancing algorithm: FASTEST/);
  });
});
