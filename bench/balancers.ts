/**
 * Micro-benchmark of the balancing algorithms: ns per pick over 10 to 10,000 targets. Each pick
 * is followed by what the data plane does — active + 1 and update() on the picked target, and
 * once 64 requests are open, active - 1 and update() on the oldest — so the heap-based
 * algorithms pay for their repositioning. A flat ratio between 10,000 and 10 targets shows O(1),
 * a small one O(log n). Each figure is the best of several rounds, which filters out collections
 * and a busy machine. Run: node_modules/.bin/node bench/balancers.ts
 */
import { build, FakeLoad, keyOf, seeded, VARIANTS, type Variant } from '../test/balancing/fake-load.ts';

const SIZES = [10, 100, 1_000, 10_000];
const WARMUP = 50_000;
const ROUNDS = 5;
const PICKS = 40_000;
const OPEN = 64;
const KEYS = Array.from({ length: 4_096 }, (_, k) => keyOf(k * 7919));

function measure(v: Variant, n: number): { nsPerPick: number; buildMs: number } {
  const random = seeded(n);
  const load = new FakeLoad(Array.from({ length: n }, (_, i) => 1 + (i % 4)));
  load.latencies.forEach((_, i) => (load.latencies[i] = 5 + random() * 45));
  const started = process.hrtime.bigint();
  const balancer = build(v, load, n);
  const buildMs = Number(process.hrtime.bigint() - started) / 1e6;
  const open = new Int32Array(OPEN);
  let made = 0;
  const run = (count: number) => {
    for (let k = 0; k < count; k++, made++) {
      const i = balancer.pick({ key: KEYS[made & 4095]! });
      const slot = made % OPEN;
      if (made >= OPEN) {
        load.actives[open[slot]!]!--;
        balancer.update(open[slot]!);
      }
      open[slot] = i;
      load.actives[i]!++;
      balancer.update(i);
    }
  };
  run(WARMUP);
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    run(PICKS);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / PICKS);
  }
  return { nsPerPick: best, buildMs };
}

const header = ['algorithm', ...SIZES.map((n) => `n=${n}`), '10k/10', 'build@10k'];
const rows = VARIANTS.map((v) => {
  const results = SIZES.map((n) => measure(v, n));
  const ns = results.map((r) => r.nsPerPick);
  return [
    v.name,
    ...ns.map((x) => x.toFixed(0)),
    `${(ns.at(-1)! / ns[0]!).toFixed(2)}x`,
    `${results.at(-1)!.buildMs.toFixed(1)} ms`,
  ];
});
const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
const line = (cells: string[]) => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
console.log(`ns per pick: best of ${ROUNDS} rounds of ${PICKS.toLocaleString('en')} picks after ${WARMUP.toLocaleString('en')} to warm up; 2 update() calls per pick\n`);
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
