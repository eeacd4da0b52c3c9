/**
 * Active health checks: one loop per checked backend, never two checks of one backend at once
 * (the next is scheduled only when the previous has settled), spread over the interval by jitter
 * so a thousand backends are not probed in the same millisecond. Thresholds turn results into
 * states: `healthy_threshold` passes in a row make a backend HEALTHY, `unhealthy_threshold`
 * failures in a row make it UNHEALTHY; every change is recorded with its reason and last error.
 * Loops are kept by identity across configuration revisions: an edit that leaves a backend's
 * check and address alone does not restart it.
 */
import type { Logger } from 'pino';
import type { HealthCheck } from '../model/health-check.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import type { Probe, ProbeResult, ProbeTarget } from './probe.ts';

export interface CheckedBackend {
  serverId: string;
  target: ProbeTarget;
  check: HealthCheck;
}

export interface CheckerDeps {
  state: BackendState;
  probes: Partial<Record<HealthCheck['protocol'], Probe>>;
  now: () => number;
  random: () => number;
  log: Logger;
  /** A backend's health state changed: balancers that order by weight must hear of it. */
  changed(serverId: string): void;
}

class Loop {
  readonly key: string;
  readonly #deps: CheckerDeps;
  readonly #backend: CheckedBackend;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The check under way, so stop() can abort it. */
  #checking: AbortController | undefined;

  constructor(deps: CheckerDeps, backend: CheckedBackend, key: string) {
    this.#deps = deps;
    this.#backend = backend;
    this.key = key;
    // The first check soon, at a random point of a short window, so a new pool's backends spread.
    const first = this.#deps.random() * Math.min(1000, (backend.check.interval_seconds * 1000 * backend.check.jitter_percent) / 100 + 50);
    this.#timer = setTimeout(() => void this.#run(), first);
    this.#timer.unref();
  }

  /**
   * The next check, one interval after this one settled. Each loop keeps the phase jitter gave it
   * (a random offset of up to ±jitter_percent of the interval, drawn once), so the checks of many
   * backends stay spread over the interval; one timer per loop is re-armed, not re-created.
   */
  #scheduleNext(): void {
    if (this.#stopped) return;
    if (this.#periodic) {
      this.#periodic.refresh();
      return;
    }
    const { interval_seconds, jitter_percent } = this.#backend.check;
    const spread = (jitter_percent / 100) * (2 * this.#deps.random() - 1);
    this.#periodic = setTimeout(() => void this.#run(), interval_seconds * 1000 * (1 + spread));
    this.#periodic.unref();
  }

  #periodic: NodeJS.Timeout | undefined;

  async #run(): Promise<void> {
    const { serverId, target, check } = this.#backend;
    const probe = this.#deps.probes[check.protocol];
    const started = this.#deps.now();
    const t0 = performance.now();
    let result: ProbeResult;
    if (probe) {
      // A plain controller and timer: AbortSignal.timeout() registers every signal with a
      // FinalizationRegistry, a cost that shows at thousands of checks a second.
      const controller = new AbortController();
      this.#checking = controller;
      const timer = setTimeout(() => controller.abort(), check.timeout_seconds * 1000);
      try {
        result = await probe(target, check, controller.signal);
      } catch (err) {
        // A probe must not reject; if one does, the check failed — the loop and the process go on.
        result = { ok: false, error: `probe error: ${(err as Error).message}` };
      }
      clearTimeout(timer);
      this.#checking = undefined;
    } else result = { ok: false, error: `${check.protocol} checks are not available yet` };
    if (this.#stopped) return;
    const { state } = this.#deps;
    // Deleted while the check ran: the next sync stops this loop; do not bring its record back.
    const record = state.existing(serverId);
    if (record === undefined) return;
    record.checked({ at: started, durationMs: Math.round((performance.now() - t0) * 100) / 100, ...result });
    const now = this.#deps.now();
    let current = record.health?.state ?? 'UNKNOWN';
    if (current === 'OFFLINE' && record.health!.until !== undefined && now >= record.health!.until) {
      // A passive OFFLINE that ran out is HEALTHY again since it ended (slow start counts from then).
      state.setHealth(serverId, 'HEALTHY', record.health!.until, now);
      current = 'HEALTHY';
    }
    if (result.ok) {
      record.consecutiveSuccesses++;
      record.consecutiveFailures = 0;
      // An active pass replaces a passive OFFLINE at once (active results override passive ones)
      // when the checks had the backend HEALTHY before; otherwise healthy_threshold still applies.
      const overridesPassive = current === 'OFFLINE' && record.beforeOffline === 'HEALTHY';
      if (current !== 'HEALTHY' && (overridesPassive || record.consecutiveSuccesses >= check.healthy_threshold)) {
        const reason = overridesPassive ? 'an active health check passed (overrides passive OFFLINE)' : `${record.consecutiveSuccesses} consecutive health check successes`;
        state.setHealth(serverId, 'HEALTHY', now, now, reason);
        this.#deps.log.info({ server_id: serverId, from: current }, 'backend healthy');
        this.#deps.changed(serverId);
      } else state.setHealth(serverId, current, now, now, undefined, undefined, record.health?.until);
    } else {
      record.consecutiveFailures++;
      record.consecutiveSuccesses = 0;
      if (current !== 'UNHEALTHY' && record.consecutiveFailures >= check.unhealthy_threshold) {
        state.setHealth(serverId, 'UNHEALTHY', now, now, `${record.consecutiveFailures} consecutive health check failures`, result.error);
        this.#deps.log.warn({ server_id: serverId, from: current, error: result.error }, 'backend unhealthy');
        this.#deps.changed(serverId);
      } else state.setHealth(serverId, current, now, now, undefined, undefined, record.health?.until);
    }
    this.#scheduleNext();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#periodic);
    this.#checking?.abort();
  }
}

export class HealthChecker {
  readonly #deps: CheckerDeps;
  readonly #loops = new Map<string, Loop>();

  constructor(deps: CheckerDeps) {
    this.#deps = deps;
  }

  /** The checked backends of the revision just applied. */
  sync(backends: CheckedBackend[]): void {
    const wanted = new Map(backends.map((b) => [b.serverId, b]));
    for (const [id, loop] of this.#loops) {
      if (wanted.has(id)) continue;
      loop.stop();
      this.#loops.delete(id);
      // No longer checked: its configuration alone decides again (no check means healthy).
      this.#deps.state.clearHealth(id);
      this.#deps.changed(id);
    }
    for (const b of backends) {
      const key = JSON.stringify([b.target, b.check]);
      const loop = this.#loops.get(b.serverId);
      if (loop?.key === key) continue;
      loop?.stop();
      if (loop) {
        // A changed check starts counting afresh; the state it reached stays until the new one decides.
        const r = this.#deps.state.record(b.serverId);
        r.consecutiveSuccesses = 0;
        r.consecutiveFailures = 0;
      }
      this.#loops.set(b.serverId, new Loop(this.#deps, b, key));
    }
  }

  stop(): void {
    for (const loop of this.#loops.values()) loop.stop();
    this.#loops.clear();
  }
}
