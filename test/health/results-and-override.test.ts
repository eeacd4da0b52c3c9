/**
 * GET /pools/{id}/health-check/results and the health override (seed 000 §3), against real checks
 * of real backends.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertError } from '../helpers/assertions.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { setupLb, startBackend } from '../helpers/http-lb.ts';

let fulcrum: TestFulcrum;
before(async () => {
  fulcrum = await startTestFulcrum();
});
after(() => fulcrum.close());

const FAST = { interval_seconds: 1, timeout_seconds: 1, healthy_threshold: 1, unhealthy_threshold: 2, jitter_percent: 0 };

async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const t0 = Date.now();
  let v = await read();
  while (!ok(v) && Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    v = await read();
  }
  return v;
}

describe('health-check results', () => {
  it('shows consecutive counts, the last check, transitions with reasons, and history aggregates', async (t) => {
    let up = true;
    const b = await startBackend('r', { handler: (req, res) => void (req.url === '/hc' ? res.writeHead(up ? 200 : 500).end(up ? 'ok' : 'down') : res.end('r')) });
    t.after(() => b.close());
    const lb = await setupLb([b], { fulcrum, pool: { health_check: { protocol: 'HTTP', path: '/hc', expected_body_regex: 'ok', ...FAST } } });
    const path = `/api/v1/pools/${lb.poolId}/health-check/results?include_history=true&history_minutes=5`;
    const healthy = await until(
      () => fulcrum.api.get(path),
      (r) => r.body.results[0]?.consecutive_successes >= 2,
    );
    assert.equal(healthy.status, 200);
    const r0 = healthy.body.results[0];
    assert.equal(r0.server_id, lb.backendIds[0]);
    assert.equal(r0.status, 'HEALTHY');
    assert.equal(r0.consecutive_failures, 0);
    assert.equal(r0.last_check.status_code, 200);
    assert.equal(r0.last_check.body_match, true);
    assert.equal(r0.last_check.passed, true);
    assert.ok(r0.last_check.duration_ms >= 0);
    assert.equal(r0.transitions.at(-1).to, 'HEALTHY');
    assert.match(r0.transitions.at(-1).reason, /consecutive health check successes/);

    up = false;
    const down = await until(
      () => fulcrum.api.get(path),
      (r) => r.body.results[0]?.status === 'UNHEALTHY',
    );
    const r1 = down.body.results[0];
    assert.equal(r1.status, 'UNHEALTHY');
    assert.ok(r1.consecutive_failures >= 2);
    assert.equal(r1.consecutive_successes, 0);
    assert.equal(r1.last_check.status_code, 500);
    assert.equal(r1.transitions.at(-1).to, 'UNHEALTHY');
    assert.match(r1.transitions.at(-1).reason, /2 consecutive health check failures/);
    assert.equal(r1.transitions.at(-1).error, 'status 500');
    const h = r1.history;
    assert.equal(h.checks_total, h.checks_passed + h.checks_failed);
    assert.ok(h.checks_passed >= 2 && h.checks_failed >= 2, JSON.stringify(h));
    assert.equal(h.availability_percent, Math.round((h.checks_passed * 10000) / h.checks_total) / 100);
    assert.ok(h.avg_response_time_ms > 0 && h.p99_response_time_ms > 0, JSON.stringify(h));

    const noHistory = await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/health-check/results`);
    assert.equal('history' in noHistory.body.results[0], false);
    const stats = (await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/health-check`)).body.stats;
    assert.match(stats.last_check_time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(stats.unhealthy_backends, 1);
    assert.ok(stats.avg_check_duration_ms >= 0);

    assertError(await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/health-check/results?history_minutes=0`), 400, 'INVALID_PARAMETER');
    assertError(await fulcrum.api.get('/api/v1/pools/pool-nope/health-check/results'), 404, 'POOL_NOT_FOUND');
  });
});

describe('health override', () => {
  it('forcing UNHEALTHY takes the backend out of rotation while its open request finishes; DELETE brings it back', async (t) => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    const a = await startBackend('a', { handler: (req, res, name) => void (req.url === '/hold' ? held.then(() => res.end('held')) : res.end(name)) });
    const b = await startBackend('b');
    t.after(() => Promise.all([a.close(), b.close()]));
    const lb = await setupLb([a, b], { fulcrum, pool: { algorithm: 'LEAST_CONNECTIONS' } });
    const [idA] = lb.backendIds;
    const overridePath = `/api/v1/pools/${lb.poolId}/backends/${idA}/health-override`;

    // Hold one request on 'a' (least connections sends the first to either; retry until 'a' holds one).
    let holding: Promise<Response> | undefined;
    for (let i = 0; i < 6 && !holding; i++) {
      const p = fetch(`${lb.url}/hold`);
      await until(
        () => fulcrum.api.get(`/api/v1/pools/${lb.poolId}/backends/${idA}`),
        (r) => r.body.active_connections === 1,
        300,
      );
      if ((await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/backends/${idA}`)).body.active_connections === 1) holding = p;
      else await (await p).text();
    }
    assert.ok(holding, 'a request is held on a');

    const res = await fulcrum.api.post(overridePath, { status: 'UNHEALTHY', reason: 'maintenance', duration_seconds: 60, operator: 'oncall@example.com' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'UNHEALTHY');
    assert.equal(res.body.override_active, true);
    assert.equal(res.body.connections_draining, 1);
    assert.ok(Date.parse(res.body.override_expires) - Date.now() > 55_000);

    const view = (await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/backends/${idA}`)).body;
    assert.equal(view.status, 'UNHEALTHY');
    assert.equal(view.effective_weight, 0);
    for (let i = 0; i < 6; i++) assert.equal(await (await fetch(lb.url)).text(), 'b');
    release();
    assert.equal(await (await holding!).text(), 'held', 'the open request finished on the overridden backend');

    const results = (await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/health-check/results`)).body.results.find((r: any) => r.server_id === idA);
    assert.equal(results.override.operator, 'oncall@example.com');
    assert.match(results.transitions.at(-1).reason, /override by oncall@example.com: maintenance/);

    const cleared = await fulcrum.api.delete(overridePath);
    assert.equal(cleared.status, 200);
    assert.equal(cleared.body.override_active, false);
    assert.equal(cleared.body.status, 'HEALTHY');
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await (await fetch(lb.url)).text());
    assert.ok(seen.has('a'), 'back in rotation');
  });

  it('an override expires on its own; bad bodies are refused', async (t) => {
    const a = await startBackend('a');
    t.after(() => a.close());
    const lb = await setupLb([a], { fulcrum });
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}/health-override`;
    assert.equal((await fulcrum.api.post(path, { status: 'UNHEALTHY', duration_seconds: 1 })).status, 200);
    assert.equal((await fetch(lb.url)).status, 503);
    const back = await until(
      () => fetch(lb.url).then(async (r) => ({ status: r.status, body: await r.text() })),
      (r) => r.status === 200,
      3000,
    );
    assert.deepEqual(back, { status: 200, body: 'a' });
    assertError(await fulcrum.api.post(path, { status: 'DRAINING' }), 400, 'VALIDATION_ERROR');
    assertError(await fulcrum.api.post(path, { status: 'HEALTHY', duration_seconds: 0 }), 400, 'VALIDATION_ERROR');
    assertError(await fulcrum.api.post(`/api/v1/pools/${lb.poolId}/backends/backend-nope/health-override`, { status: 'HEALTHY' }), 404, 'BACKEND_NOT_FOUND');
  });
});
