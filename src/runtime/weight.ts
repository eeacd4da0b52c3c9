/**
 * How health, admin intent and slow start fold into the weight a backend takes traffic with.
 * Shared by the data plane (at pick time) and the API (what it reports), so the two never
 * disagree. Pure: the clock comes in.
 */
import type { HealthFacts, HealthOverride } from './backend-state.ts';

/** The configuration-side inputs, computed once per snapshot. */
export interface WeightPlan {
  weight: number;
  /** A health check applies: the backend waits for it before taking traffic. */
  checked: boolean;
  /** Slow start ramp, ms; 0 for none. */
  rampMs: number;
  createdAtMs: number;
}

export type HealthStatus = 'STARTING' | 'HEALTHY' | 'UNHEALTHY' | 'OFFLINE';

/** The runtime half: what checks, live traffic and the operator said (a BackendRecord fits). */
export interface HealthInputs {
  health: HealthFacts | undefined;
  override: HealthOverride | undefined;
}

/**
 * Precedence: an operator's override while it lasts; then the latest of active checks and passive
 * detection (each writes `health`, and an active result replaces a passive OFFLINE); a passive
 * OFFLINE ends by itself at `until`, after which live traffic may try the backend again.
 */
export function healthStatus(plan: WeightPlan, inputs: HealthInputs, now: number): HealthStatus {
  const o = inputs.override;
  if (o !== undefined && now < o.until) return o.state;
  const facts = inputs.health;
  if (facts?.state === 'OFFLINE' && facts.until !== undefined && now >= facts.until) return 'HEALTHY';
  const state = facts?.state ?? (plan.checked ? 'UNKNOWN' : 'HEALTHY');
  return state === 'UNKNOWN' ? 'STARTING' : state;
}

/** Since when the backend has been healthy; a backend without checks is healthy from its creation. */
export function healthySince(plan: WeightPlan, inputs: HealthInputs, now: number): number | null {
  const o = inputs.override;
  if (o !== undefined && now < o.until) return o.state === 'HEALTHY' ? o.createdAt : null;
  const facts = inputs.health;
  if (facts?.state === 'HEALTHY') return facts.since;
  if (facts?.state === 'OFFLINE' && facts.until !== undefined && now >= facts.until) return facts.until;
  if (!plan.checked && (facts === undefined || facts.state === 'UNKNOWN')) return plan.createdAtMs;
  return null;
}

/** 0 unless healthy; ramps linearly from 0 to the weight over the slow start period. */
export function effectiveWeight(plan: WeightPlan, inputs: HealthInputs, now: number): number {
  const since = healthySince(plan, inputs, now);
  if (since === null) return 0;
  if (plan.rampMs > 0) {
    const elapsed = now - since;
    if (elapsed < plan.rampMs) return Math.floor((plan.weight * Math.max(0, elapsed)) / plan.rampMs);
  }
  return plan.weight;
}
