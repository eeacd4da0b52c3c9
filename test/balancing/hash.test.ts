import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashKey } from '../../src/balancing/index.ts';
import { keyOf } from './fake-load.ts';

const popcount = (x: number): number => {
  let bits = 0;
  for (; x !== 0; x >>>= 1) bits += x & 1;
  return bits;
};

describe('hashKey', () => {
  it('is a deterministic unsigned 32-bit value that the seed changes', () => {
    for (const s of ['', '10.0.0.1', 'session=abc', 'ünïcødé']) {
      const h = hashKey(s);
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32, `${s}: ${h}`);
      assert.equal(hashKey(s), h);
      assert.notEqual(hashKey(s, 1), h);
    }
  });

  it('spreads consecutive client addresses evenly over buckets', () => {
    const buckets = new Array<number>(256).fill(0);
    const keys = 256 * 400;
    for (let k = 0; k < keys; k++) buckets[hashKey(keyOf(k)) % 256]!++;
    // Chi-square with 255 degrees of freedom: mean 255, standard deviation about 22.6.
    const chi = buckets.reduce((sum, c) => sum + (c - 400) ** 2 / 400, 0);
    assert.ok(chi < 255 + 5 * 22.6, `chi-square ${chi.toFixed(1)}`);
  });

  it('changes about half the bits when the last character changes', () => {
    let flipped = 0;
    const pairs = 10_000;
    for (let k = 0; k < pairs; k++) flipped += popcount(hashKey(`${keyOf(k)}0`) ^ hashKey(`${keyOf(k)}1`));
    assert.ok(Math.abs(flipped / pairs - 16) < 0.5, `mean bits flipped ${flipped / pairs}`);
  });
});
