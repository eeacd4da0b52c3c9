import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { liveView } from '../../src/control/backend-view.ts';
import { checkHealthCheck, resolveHealthCheck, slowerDetectionWarning } from '../../src/control/health-checks.ts';
import type { Backend } from '../../src/model/backend.ts';
import type { Pool } from '../../src/model/pool.ts';
import { BackendState } from '../../src/runtime/backend-state.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function pool(extra: Partial<Pool> = {}): Pool {
  return {
    pool_id: 'pool-p', name: 'p', description: null, algorithm: 'ROUND_ROBIN', algorithm_config: {}, health_check: null,
    session_persistence: {}, connection_limits: {}, circuit_breaker: {}, retries: 2, load_balancer_id: null,
    org_id: 'default', project_id: 'default', created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', version: 1, ...extra,
  };
}

function backend(extra: Partial<Backend> = {}): Backend {
  return {
    server_id: 'backend-b', pool_id: 'pool-p', name: 'b', hostname: null, ip_address: '127.0.0.1', port: 80, weight: 100,
    max_connections: null, metadata: {}, health_check: null, tls: null, slow_start_seconds: null, admin_status: 'ENABLED', drain: null,
    org_id: 'default', project_id: 'default', created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', version: 1, ...extra,
  };
}

describe('health check rules', () => {
  it('fills defaults and keeps what was given', () => {
    const hc = resolveHealthCheck({ protocol: 'HTTP', path: '/health', interval_seconds: 5 });
    assert.equal(hc.protocol, 'HTTP');
    assert.equal(hc.interval_seconds, 5);
    assert.equal(hc.timeout_seconds, 10);
    assert.equal(hc.healthy_threshold, 2);
    assert.equal(hc.unhealthy_threshold, 3);
    assert.deepEqual(hc.expected_status_codes, [200]);
  });

  it('names every field a schema cannot check', () => {
    const hc = resolveHealthCheck({ interval_seconds: 5, timeout_seconds: 6, expected_body_regex: '([', headers: { 'bad header': 'x' } });
    assert.deepEqual(
      checkHealthCheck(hc, 'health_check.').map((p) => p.field),
      ['health_check.timeout_seconds', 'health_check.expected_body_regex', 'health_check.headers.bad header'],
    );
  });

  it("warns as the seed does when detection gets slower, and only then", () => {
    const before = resolveHealthCheck({ interval_seconds: 10, timeout_seconds: 2, unhealthy_threshold: 3 });
    const after = resolveHealthCheck({ interval_seconds: 10, timeout_seconds: 5, unhealthy_threshold: 5 });
    assert.equal(slowerDetectionWarning(before, after), 'Increasing unhealthy_threshold to 5 means backends will take 50s to be marked unhealthy (was 30s).');
    assert.equal(slowerDetectionWarning(after, before), undefined);
    assert.equal(slowerDetectionWarning(null, after), undefined);
  });
});

describe('backend live view', () => {
  it('is HEALTHY at full weight at once when no check is configured', () => {
    const v = liveView(pool(), backend(), new BackendState(), T0 + 1000);
    assert.equal(v.status, 'HEALTHY');
    assert.equal(v.health_check_status, 'NOT_CONFIGURED');
    assert.equal(v.effective_weight, 100);
  });

  it('is STARTING at weight 0 until a check passes when one is configured', () => {
    const p = pool({ health_check: resolveHealthCheck({ protocol: 'TCP' }) });
    const state = new BackendState();
    assert.deepEqual([liveView(p, backend(), state, T0).status, liveView(p, backend(), state, T0).effective_weight], ['STARTING', 0]);
    state.setHealth('backend-b', 'HEALTHY', T0 + 5000);
    const v = liveView(p, backend(), state, T0 + 6000);
    assert.equal(v.status, 'HEALTHY');
    assert.equal(v.effective_weight, 100);
    assert.equal(v.uptime_seconds, 1);
  });

  it('ramps the weight linearly over slow start, backend setting over pool setting', () => {
    const p = pool({ algorithm_config: { slow_start_duration_seconds: 100 } });
    const state = new BackendState();
    assert.equal(liveView(p, backend(), state, T0 + 25_000).effective_weight, 25);
    assert.equal(liveView(p, backend(), state, T0 + 100_000).effective_weight, 100);
    assert.equal(liveView(p, backend({ slow_start_seconds: 50 }), state, T0 + 25_000).effective_weight, 50);
  });

  it('admin intent wins over health: DISABLED and DRAINING get no weight', () => {
    for (const admin of ['DISABLED', 'DRAINING'] as const) {
      const v = liveView(pool(), backend({ admin_status: admin }), new BackendState(), T0);
      assert.equal(v.status, admin);
      assert.equal(v.effective_weight, 0);
    }
  });

  it('counts tracked connections and terminates them on request', () => {
    const state = new BackendState();
    let closed = 0;
    const release = state.track('backend-b', () => closed++);
    state.track('backend-b', () => closed++);
    assert.equal(state.activeConnections('backend-b'), 2);
    release();
    assert.equal(state.activeConnections('backend-b'), 1);
    assert.equal(state.terminateAll('backend-b'), 1);
    assert.equal(closed, 1);
  });
});
