/** The circuit breaker's rules, with an injected clock. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { POOL_DEFAULTS } from '../../src/model/pool.ts';
import { type BreakerSettings, CircuitBreakerState } from '../../src/runtime/circuit-breaker.ts';

const settings = (over: Partial<BreakerSettings> = {}): BreakerSettings => ({ ...POOL_DEFAULTS.circuit_breaker, enabled: true, ...over }) as BreakerSettings;
const T0 = Date.UTC(2026, 10, 21, 12, 0, 0);

/** Lets a request through and records how it ended. */
function run(b: CircuitBreakerState, at: number, outcome: 'success' | 'failure' | 'neutral', ms = 5): void {
  const ticket = b.allow(at);
  assert.ok(ticket, `allowed at +${at - T0} ms`);
  b.record(at, ticket, outcome, ms);
}

describe('circuit breaker', () => {
  it('stays CLOSED below min_request_volume, whatever the error rate', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 10 }));
    for (let i = 0; i < 9; i++) run(b, T0 + i, 'failure');
    assert.equal(b.state(T0 + 10), 'CLOSED');
    run(b, T0 + 10, 'failure');
    assert.equal(b.state(T0 + 11), 'OPEN');
    assert.equal(b.allow(T0 + 12), null);
  });

  it('opens on the slow-call rate alone', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 5, slow_call_threshold_ms: 100, slow_call_rate_percent: 60, error_threshold_percent: 100 }));
    run(b, T0, 'success', 10);
    run(b, T0, 'success', 10);
    run(b, T0, 'success', 150);
    run(b, T0, 'success', 150);
    assert.equal(b.state(T0), 'CLOSED', 'under the volume');
    run(b, T0, 'success', 150); // 3 of 5 slow: 60 %
    assert.equal(b.state(T0), 'OPEN');
    assert.equal(b.view(T0).slow_call_rate_percent, 60);
  });

  it('forgets outcomes older than the evaluation window; clients that left are not counted', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 4, evaluation_window_seconds: 10, error_threshold_percent: 50 }));
    run(b, T0, 'failure');
    run(b, T0, 'failure');
    run(b, T0 + 11_000, 'success');
    run(b, T0 + 11_000, 'success');
    run(b, T0 + 11_000, 'neutral');
    assert.equal(b.state(T0 + 11_000), 'CLOSED', 'the two old failures fell out of the window');
    assert.equal(b.view(T0 + 11_000).requests, 2);
  });

  it('OPEN refuses; HALF_OPEN after recovery lets half_open_requests through; their successes close it', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 1, recovery_timeout_seconds: 30, half_open_requests: 2 }));
    run(b, T0, 'failure');
    assert.equal(b.allow(T0 + 29_999), null);
    const p1 = b.allow(T0 + 30_000);
    assert.equal(p1?.admission, 'probe');
    assert.equal(b.state(T0 + 30_000), 'HALF_OPEN');
    const p2 = b.allow(T0 + 30_001);
    assert.ok(p2);
    assert.equal(b.allow(T0 + 30_002), null, 'only two probes at a time');
    b.record(T0 + 30_010, p1!, 'success', 5);
    assert.equal(b.state(T0 + 30_010), 'HALF_OPEN');
    b.record(T0 + 30_020, p2!, 'success', 5);
    assert.equal(b.state(T0 + 30_020), 'CLOSED');
    assert.equal(b.allow(T0 + 30_021)?.admission, 'request');
  });

  it('a probe that ends without an outcome gives its slot back; a request let in while CLOSED does not count as a probe', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 2, recovery_timeout_seconds: 1, half_open_requests: 1 }));
    const early = b.allow(T0)!; // let in while CLOSED, ends later
    run(b, T0, 'failure');
    run(b, T0, 'failure');
    assert.equal(b.state(T0), 'OPEN');
    const probe = b.allow(T0 + 1_000)!;
    assert.equal(probe.admission, 'probe');
    b.record(T0 + 1_001, early, 'success', 5);
    assert.equal(b.state(T0 + 1_001), 'HALF_OPEN', 'the early request is not a probe');
    b.record(T0 + 1_002, probe, 'neutral', 5);
    assert.ok(b.allow(T0 + 1_003), 'the slot came back');
  });

  it('a HALF_OPEN whose probes never report starts a new round after the recovery timeout', () => {
    const b = new CircuitBreakerState(settings({ min_request_volume: 1, recovery_timeout_seconds: 1, half_open_requests: 1 }));
    run(b, T0, 'failure');
    assert.ok(b.allow(T0 + 1_000)); // a probe that is never recorded
    assert.equal(b.allow(T0 + 1_500), null);
    const again = b.allow(T0 + 2_000);
    assert.equal(again?.admission, 'probe', 'a lost probe does not hold the pool shut');
    b.record(T0 + 2_001, again!, 'success', 5);
    assert.equal(b.state(T0 + 2_001), 'CLOSED');
  });
});
