/**
 * Health as it stands, per backend, and the operator's hand on it (seed 000 §3): the results of
 * active checks with consecutive counts, the last check, recorded transitions and history
 * aggregates; and overrides that force a status for a while.
 */
import { BACKEND_DEFAULTS, type Backend, type HealthOverrideRequest, type HealthResultsQuery } from '../model/backend.ts';
import { isoSeconds } from '../model/common.ts';
import type { Pool } from '../model/pool.ts';
import type { CheckOutcome } from '../runtime/backend-state.ts';
import type { CheckHistory } from '../runtime/check-history.ts';
import { liveView } from './backend-view.ts';
import type { ControlContext } from './context.ts';
import { notFound } from './errors.ts';

function lastCheck(c: CheckOutcome | undefined) {
  if (!c) return null;
  return {
    time: isoSeconds(c.at),
    duration_ms: c.durationMs,
    passed: c.ok,
    status_code: c.statusCode ?? null,
    body_match: c.bodyMatched ?? null,
    error: c.error ?? null,
  };
}

/** Aggregates over the kept checks of the last `history_minutes` (the history holds the last 600 checks). */
function history(h: CheckHistory, since: number) {
  const { oldest_at, ...aggregates } = h.aggregate(since);
  return { ...aggregates, since: oldest_at === null ? null : isoSeconds(oldest_at) };
}

export class HealthStatusService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  async #pool(poolId: string): Promise<Pool> {
    const found = await this.#ctx.store.get<Pool>('pool', poolId);
    if (!found) throw notFound.pool(poolId);
    return found.body;
  }

  async #backend(poolId: string, serverId: string): Promise<{ pool: Pool; backend: Backend }> {
    const pool = await this.#pool(poolId);
    const found = await this.#ctx.store.get<Backend>('backend', serverId);
    if (!found || found.body.pool_id !== poolId) throw notFound.backend(poolId, serverId);
    return { pool, backend: found.body };
  }

  async results(poolId: string, query: HealthResultsQuery) {
    const pool = await this.#pool(poolId);
    const backends = (await this.#ctx.store.list<Backend>('backend', { parentId: poolId })).items.map((r) => r.body);
    const now = this.#ctx.clock.now();
    const since = now - (query.history_minutes ?? 60) * 60_000;
    return {
      pool_id: poolId,
      results: backends.map((b) => {
        const record = this.#ctx.state.record(b.server_id);
        const live = liveView(pool, b, this.#ctx.state, now);
        const o = record.override;
        return {
          server_id: b.server_id,
          status: live.status,
          health_check_status: live.health_check_status,
          consecutive_successes: record.consecutiveSuccesses,
          consecutive_failures: record.consecutiveFailures,
          last_check: lastCheck(record.lastCheck),
          override:
            o && now < o.until ? { status: o.state, reason: o.reason, operator: o.operator, expires: isoSeconds(o.until) } : null,
          transitions: record.transitions.slice(-10).map((t) => ({
            time: isoSeconds(t.at),
            from: t.from,
            to: t.to,
            reason: t.reason,
            error: t.error ?? null,
          })),
          ...(query.include_history ? { history: history(record.history, since) } : {}),
        };
      }),
    };
  }

  async override(poolId: string, serverId: string, input: HealthOverrideRequest) {
    await this.#backend(poolId, serverId);
    const now = this.#ctx.clock.now();
    const until = now + (input.duration_seconds ?? BACKEND_DEFAULTS.override_seconds) * 1000;
    const record = this.#ctx.state.record(serverId);
    record.override = { state: input.status, until, createdAt: now, reason: input.reason ?? null, operator: input.operator ?? null };
    record.note({
      at: now,
      from: record.health?.state ?? 'UNKNOWN',
      to: input.status,
      reason: `override by ${input.operator ?? 'an operator'}${input.reason ? `: ${input.reason}` : ''}`,
    });
    this.#ctx.dataPlane.healthChanged(serverId);
    return {
      server_id: serverId,
      status: input.status,
      override_active: true,
      override_expires: isoSeconds(until),
      reason: input.reason ?? null,
      operator: input.operator ?? null,
      // Forced UNHEALTHY takes no new requests; the ones open now finish (they drain).
      connections_draining: input.status === 'UNHEALTHY' ? record.active : 0,
    };
  }

  async clearOverride(poolId: string, serverId: string) {
    const { pool, backend } = await this.#backend(poolId, serverId);
    const record = this.#ctx.state.record(serverId);
    const had = record.override !== undefined && this.#ctx.clock.now() < record.override.until;
    record.override = undefined;
    this.#ctx.dataPlane.healthChanged(serverId);
    const live = liveView(pool, backend, this.#ctx.state, this.#ctx.clock.now());
    return { server_id: serverId, override_active: false, override_cleared: had, status: live.status };
  }
}
