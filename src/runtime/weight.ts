/**
 * How health, admin intent and slow start fold into the weight a backend takes traffic with.
 * Shared by the data plane (at pick time) and the API (what it reports), so the two never
 * disagree. Pure: the clock comes in.
 */
import type { HealthFacts } from './backend-state.ts';

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

export function healthStatus(plan: WeightPlan, facts: HealthFacts | undefined): HealthStatus {
  const state = facts?.state ?? (plan.checked ? 'UNKNOWN' : 'HEALTHY');
  return state === 'UNKNOWN' ? 'STARTING' : state;
}

/** Since when the backend has been healthy; a backend without checks is healthy from its creation. */
export function healthySince(plan: WeightPlan, facts: HealthFacts | undefined): number | null {
  if (facts?.state === 'HEALTHY') return facts.since;
  if (!plan.checked && (facts === undefined || facts.state === 'UNKNOWN')) return plan.createdAtMs;
  return null;
}

/** 0 unless healthy; ramps linearly from 0 to the weight over the slow start period. */
export function effectiveWeight(plan: WeightPlan, facts: HealthFacts | undefined, now: number): number {
  const since = healthySince(plan, facts);
  if (since === null) return 0;
  if (plan.rampMs > 0) {
    const elapsed = now - since;
    if (elapsed < plan.rampMs) return Math.floor((plan.weight * Math.max(0, elapsed)) / plan.rampMs);
  }
  return plan.weight;
}
