import type { Backend, BackendStatus } from '../model/backend.ts';
import { isoSeconds } from '../model/common.ts';
import type { HealthCheck } from '../model/health-check.ts';
import type { Pool } from '../model/pool.ts';
import type { BackendState } from '../runtime/backend-state.ts';
import { resolveHealthCheck } from './health-checks.ts';

/** The check that applies to a backend: the pool's, overridden field by field by its own. */
export function effectiveHealthCheck(pool: Pool, backend: Backend): HealthCheck | null {
  if (backend.health_check) return resolveHealthCheck(backend.health_check, pool.health_check ?? undefined);
  return pool.health_check;
}

export interface BackendLive {
  status: BackendStatus;
  health_check_status: 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'NOT_CONFIGURED';
  effective_weight: number;
  active_connections: number;
  last_health_check: string | null;
  uptime_seconds: number | null;
}

/**
 * Folds admin intent, health and slow start into what the API reports. Pure: the clock comes in.
 * A backend with no check is healthy from its creation; one with a check starts at weight 0 and
 * gets traffic after passing. Slow start ramps the weight linearly over the configured seconds.
 */
export function liveView(pool: Pool, backend: Backend, state: BackendState, now: number): BackendLive {
  const check = effectiveHealthCheck(pool, backend);
  const checked = check !== null && check.enabled;
  const facts = state.health(backend.server_id);
  const healthState = facts?.state ?? (checked ? 'UNKNOWN' : 'HEALTHY');
  const healthySince = facts?.state === 'HEALTHY' ? facts.since : !checked ? Date.parse(backend.created_at) : null;

  let status: BackendStatus;
  if (backend.admin_status === 'DISABLED') status = 'DISABLED';
  else if (backend.admin_status === 'DRAINING') status = 'DRAINING';
  else if (healthState === 'UNKNOWN') status = 'STARTING';
  else status = healthState;

  let effective = 0;
  if (status === 'HEALTHY') {
    effective = backend.weight;
    const ramp = backend.slow_start_seconds ?? pool.algorithm_config.slow_start_duration_seconds ?? 0;
    if (ramp > 0 && healthySince !== null) {
      const elapsed = Math.max(0, now - healthySince) / 1000;
      if (elapsed < ramp) effective = Math.floor((backend.weight * elapsed) / ramp);
    }
  }
  return {
    status,
    health_check_status: !checked ? 'NOT_CONFIGURED' : healthState === 'OFFLINE' ? 'UNHEALTHY' : healthState,
    effective_weight: effective,
    active_connections: state.activeConnections(backend.server_id),
    last_health_check: facts?.lastCheck ? isoSeconds(facts.lastCheck) : null,
    uptime_seconds: status === 'HEALTHY' && healthySince !== null ? Math.floor(Math.max(0, now - healthySince) / 1000) : null,
  };
}
