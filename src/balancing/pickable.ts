import type { LoadSource } from './balancer.ts';

/** Whether target i may take this request: usable now, weight above 0, not already failed by it. */
export function pickable(load: LoadSource, i: number, avoid: ReadonlySet<number> | undefined): boolean {
  return load.usable(i) && load.weight(i) > 0 && (avoid === undefined || !avoid.has(i));
}

/**
 * Random probes before `sample` stops relying on luck: with half the targets pickable, all 16
 * miss once in 65,536 picks.
 */
const PROBES = 16;

/**
 * A uniformly random pickable target other than `except`, or -1 when there is none. Random probes
 * make it O(1) while most targets are pickable; when they all miss, counting the pickable targets
 * and taking a random one of them keeps the answer exact (and uniform) in a mostly-down pool.
 */
export function sample(
  n: number,
  load: LoadSource,
  random: () => number,
  avoid: ReadonlySet<number> | undefined,
  except = -1,
): number {
  for (let k = 0; k < PROBES; k++) {
    const i = Math.floor(random() * n);
    if (i !== except && pickable(load, i, avoid)) return i;
  }
  let count = 0;
  for (let i = 0; i < n; i++) if (i !== except && pickable(load, i, avoid)) count++;
  let k = Math.floor(random() * count);
  for (let i = 0; i < n; i++) if (i !== except && pickable(load, i, avoid) && k-- === 0) return i;
  return -1;
}
