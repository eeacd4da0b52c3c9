/**
 * The weighted choice behind a WEIGHTED_ROUTE (src/policy/routing/weighted.ts): exact boundaries of
 * `indexAt`, weights of 0, errors, and the canary split the issue asks for — within ±2 percentage
 * points over 10,000 requests — with a seeded generator so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileWeightedRoute, WeightedChoice } from '../../src/policy/routing/weighted.ts';
import { seeded } from '../balancing/fake-load.ts';

/** The largest double below 1, and the one just below a given u. */
const BELOW_ONE = 1 - 2 ** -53;
const below = (u: number) => u - Number.EPSILON * Math.max(1, u);

describe('WeightedChoice.indexAt', () => {
  it('two equal weights: [0, 0.5) → 0, [0.5, 1) → 1', () => {
    const c = new WeightedChoice(['a', 'b'], [1, 1]);
    assert.equal(c.indexAt(0), 0);
    assert.equal(c.indexAt(below(0.5)), 0);
    assert.equal(c.indexAt(0.5), 1);
    assert.equal(c.indexAt(BELOW_ONE), 1);
  });

  it('10 / 90: [0, 0.1) → canary, [0.1, 1) → stable', () => {
    const c = compileWeightedRoute([
      { pool_id: 'canary', weight: 10 },
      { pool_id: 'stable', weight: 90 },
    ]);
    assert.equal(c.indexAt(0), 0);
    assert.equal(c.indexAt(below(0.1)), 0);
    assert.equal(c.indexAt(0.1), 1);
    assert.equal(c.indexAt(BELOW_ONE), 1);
    assert.equal(c.total, 100);
  });

  it('1 / 2 / 1 over four quarters', () => {
    const c = new WeightedChoice(['a', 'b', 'c'], [1, 2, 1]);
    const table: [number, number][] = [
      [0, 0],
      [below(0.25), 0],
      [0.25, 1],
      [0.5, 1],
      [below(0.75), 1],
      [0.75, 2],
      [BELOW_ONE, 2],
    ];
    for (const [u, i] of table) assert.equal(c.indexAt(u), i, `u=${u}`);
  });

  it('items of weight 0 are never picked, wherever they stand', () => {
    const c = new WeightedChoice(['z0', 'a', 'z1', 'z2', 'b', 'z3'], [0, 3, 0, 0, 1, 0]);
    const seen = new Set<string>();
    for (let k = 0; k <= 1000; k++) seen.add(c.items[c.indexAt(Math.min(k / 1000, BELOW_ONE))]!);
    assert.deepEqual([...seen].sort(), ['a', 'b']);
    assert.equal(c.indexAt(0), 1, 'u = 0 skips a leading weight 0');
    assert.equal(c.indexAt(below(0.75)), 1);
    assert.equal(c.indexAt(0.75), 4, 'the weights of 0 in between are skipped');
    assert.equal(c.indexAt(BELOW_ONE), 4, 'the trailing weight 0 is never reached');
    assert.equal(c.indexAt(1), 4, 'even by a draw that rounds up to the total');
  });

  it('a single item takes every draw', () => {
    const c = new WeightedChoice(['only'], [7]);
    for (const u of [0, 0.3, BELOW_ONE]) assert.equal(c.pick(() => u), 'only');
  });

  it('share(i) is weight / total', () => {
    const c = new WeightedChoice(['a', 'b', 'c'], [0, 1, 3]);
    assert.deepEqual([0, 1, 2].map((i) => c.share(i)), [0, 0.25, 0.75]);
    assert.equal(c.share(3), 0, 'out of range');
    assert.equal(c.share(-1), 0, 'out of range');
  });

  it('refuses mismatched lengths, negative, non-finite and all-zero weights', () => {
    assert.throws(() => new WeightedChoice(['a', 'b'], [1]), /2 items but 1 weights/);
    assert.throws(() => new WeightedChoice(['a'], [-1]), /weight 0 is -1/);
    assert.throws(() => new WeightedChoice(['a', 'b'], [1, Number.NaN]), /weight 1 is NaN/);
    assert.throws(() => new WeightedChoice(['a'], [Infinity]), /finite/);
    assert.throws(() => new WeightedChoice(['a', 'b'], [0, 0]), /every weight is 0/);
    assert.throws(() => new WeightedChoice([], []), /every weight is 0/);
  });

  it('the items are copied', () => {
    const items = ['a', 'b'];
    const c = new WeightedChoice(items, [1, 1]);
    items[0] = 'changed';
    assert.equal(c.items[0], 'a');
  });
});

describe('WeightedChoice: shares over 10,000 picks (seeded)', () => {
  function shares(c: WeightedChoice<string>, seed: number, picks = 10_000): Map<string, number> {
    const random = seeded(seed);
    const counts = new Map<string, number>(c.items.map((i) => [i, 0]));
    for (let k = 0; k < picks; k++) {
      const p = c.pick(random);
      counts.set(p, counts.get(p)! + 1);
    }
    return new Map([...counts].map(([k, n]) => [k, (n * 100) / picks]));
  }

  for (const seed of [1, 2, 3, 42, 2026]) {
    it(`canary(10) + stable(90), seed ${seed}: each within ±2 points`, () => {
      const c = compileWeightedRoute([
        { pool_id: 'canary', weight: 10 },
        { pool_id: 'stable', weight: 90 },
      ]);
      const s = shares(c, seed);
      assert.ok(Math.abs(s.get('canary')! - 10) <= 2, `canary ${s.get('canary')}%`);
      assert.ok(Math.abs(s.get('stable')! - 90) <= 2, `stable ${s.get('stable')}%`);
    });

    it(`a 3-way split 20 / 30 / 50 with a 0 in the middle, seed ${seed}: each within ±2 points`, () => {
      const c = new WeightedChoice(['a', 'off', 'b', 'c'], [2, 0, 3, 5]);
      const s = shares(c, seed);
      assert.equal(s.get('off'), 0);
      for (const [name, want] of [
        ['a', 20],
        ['b', 30],
        ['c', 50],
      ] as const) {
        assert.ok(Math.abs(s.get(name)! - want) <= 2, `${name} ${s.get(name)}%`);
      }
    });
  }
});
