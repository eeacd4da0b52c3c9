/** The circuit breaker's rules, with an injected clock. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { POOL_DEFAULTS } from '../../src/model/pool.ts';
import { type BreakerSettings, CircuitBreakerState } from '../../src/runtime/circuit-breaker.ts';

const settings = (over: Partial<BreakerSettings> = {}): BreakerSettings => ({ ...POOL_DEFAULTS.circuit_breaker, enabled: true, ...over }) as BreakerSettings;
const T0 = Date.UTC(2026, 10, 21, 12, 0, 0);

describe('circuit breaker', () => {
  it('stays CLOSED below min_request_volume, whatever the error rate', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 10 }));
    for (let i = 0; i < 9; i++) b.record(T0 + i, true, 5);
    assert.equal(b.state(T0 + 10), 'CLOSED');
    b.record(T0 + 10, true, 5);
    assert.equal(b.state(T0 + 11), 'OPEN');
  });

  it('opens on the slow-call rate alone', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 5, slow_call_threshold_ms: 100, slow_call_rate_percent: 60, error_threshold_percent: 100 }));
    b.record(T0, false, 10);
    b.record(T0, false, 10);
    b.record(T0, false, 150);
    b.record(T0, false, 150);
    assert.equal(b.state(T0), 'CLOSED', 'under the volume');
    b.record(T0, false, 150); // 3 of 5 slow: 60 %
    assert.equal(b.state(T0), 'OPEN');
    assert.equal(b.view(T0).slow_call_rate_percent, 60);
  });

  it('forgets outcomes older than the evaluation window', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 4, evaluation_window_seconds: 10, error_threshold_percent: 50 }));
    b.record(T0, true, 5);
    b.record(T0, true, 5);
    b.record(T0 + 11_000, false, 5);
    b.record(T0 + 11_000, false, 5);
    assert.equal(b.state(T0 + 11_000), 'CLOSED', 'the two old failures fell out of the window');
    assert.equal(b.view(T0 + 11_000).requests, 2);
  });

  it('OPEN refuses; HALF_OPEN after recovery lets half_open_requests through; their successes close it', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 1, recovery_timeout_seconds: 30, half_open_requests: 2 }));
    b.record(T0, true, 5);
    assert.equal(b.allow(T0 + 29_999), false);
    assert.equal(b.allow(T0 + 30_000), true);
    assert.equal(b.state(T0 + 30_000), 'HALF_OPEN');
    assert.equal(b.allow(T0 + 30_001), true);
    assert.equal(b.allow(T0 + 30_002), false, 'only two probes at a time');
    b.record(T0 + 30_010, false, 5);
    assert.equal(b.state(T0 + 30_010), 'HALF_OPEN');
    b.record(T0 + 30_020, false, 5);
    assert.equal(b.state(T0 + 30_020), 'CLOSED');
    assert.equal(b.allow(T0 + 30_021), true);
  });
});
