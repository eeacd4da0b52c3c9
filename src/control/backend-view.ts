import type { Backend, BackendStatus } from '../model/backend.ts';
import { isoSeconds } from '../model/common.ts';
import type { HealthCheck } from '../model/health-check.ts';
import type { Pool } from '../model/pool.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import type { TrafficSummary } from '../runtime/traffic-window.ts';
import { effectiveWeight, healthStatus, healthySince, type WeightPlan } from '../runtime/weight.ts';
import { resolveHealthCheck } from './health-checks.ts';

/** The check that applies to a backend: the pool's, overridden field by field by its own. */
export function effectiveHealthCheck(pool: Pool, backend: Backend): HealthCheck | null {
  if (backend.health_check) return resolveHealthCheck(backend.health_check, pool.health_check ?? undefined);
  return pool.health_check;
}

/** The configuration half of a backend's effective weight. */
export function weightPlan(pool: Pool, backend: Backend): WeightPlan {
  const check = effectiveHealthCheck(pool, backend);
  return {
    weight: backend.weight,
    checked: check !== null && check.enabled,
    rampMs: (backend.slow_start_seconds ?? pool.algorithm_config.slow_start_duration_seconds ?? 0) * 1000,
    createdAtMs: Date.parse(backend.created_at),
  };
}

export interface BackendLive extends TrafficSummary {
  status: BackendStatus;
  health_check_status: 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'NOT_CONFIGURED';
  effective_weight: number;
  active_connections: number;
  last_health_check: string | null;
  uptime_seconds: number | null;
}

/**
 * Folds admin intent, health, slow start and measured traffic into what the API reports. Pure:
 * the clock comes in. Uses the same weight rules as the data plane's picks (runtime/weight.ts).
 */
export function liveView(pool: Pool, backend: Backend, state: BackendState, now: number): BackendLive {
  const plan = weightPlan(pool, backend);
  const record = state.record(backend.server_id);
  const facts = record.health;
  const health = healthStatus(plan, record, now);
  const since = healthySince(plan, record, now);

  let status: BackendStatus;
  if (backend.admin_status === 'DISABLED') status = 'DISABLED';
  else if (backend.admin_status === 'DRAINING') status = 'DRAINING';
  else status = health;

  return {
    status,
    health_check_status: !plan.checked ? 'NOT_CONFIGURED' : health === 'STARTING' ? 'UNKNOWN' : health === 'OFFLINE' ? 'UNHEALTHY' : health,
    effective_weight: status === 'HEALTHY' ? effectiveWeight(plan, record, now) : 0,
    active_connections: record.active,
    ...record.traffic.summary(now),
    last_health_check: facts?.lastCheck ? isoSeconds(facts.lastCheck) : null,
    uptime_seconds: status === 'HEALTHY' && since !== null ? Math.floor(Math.max(0, now - since) / 1000) : null,
  };
}
