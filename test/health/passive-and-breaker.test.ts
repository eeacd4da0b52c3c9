/**
 * Passive health (live traffic as the probe) and the pool's circuit breaker, through real traffic
 * to real backends; and the pool's status saying when it cannot serve.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { setupLb, startBackend } from '../helpers/http-lb.ts';

let fulcrum: TestFulcrum;
before(async () => {
  fulcrum = await startTestFulcrum();
});
after(() => fulcrum.close());

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(url);
  return { status: r.status, body: await r.text() };
}

/** A port on which nothing listens (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('passive health', () => {
  it('three refused connections in a row mark a backend OFFLINE; traffic stops trying it', async (t) => {
    const live = await startBackend('live');
    t.after(() => live.close());
    const dead = { name: 'dead', port: await deadPort() };
    const lb = await setupLb([live, dead], { fulcrum });
    const deadPath = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[1]}`;
    // Every request succeeds (refused connects are retried on 'live') until 'dead' is OFFLINE.
    for (let i = 0; i < 12; i++) assert.deepEqual(await get(lb.url), { status: 200, body: 'live' });
    const view = (await fulcrum.api.get(deadPath)).body;
    assert.equal(view.status, 'OFFLINE');
    assert.equal(view.effective_weight, 0);
    const pool = (await fulcrum.api.get(`/api/v1/pools/${lb.poolId}`)).body;
    assert.equal(pool.status, 'ACTIVE');
    assert.equal(pool.usable_backends, 1);
  });

  it('a backend answering 503 three times in a row goes OFFLINE; with none left the pool is UNAVAILABLE and answers 503', async (t) => {
    const b = await startBackend('busy', { handler: (_req, res) => void res.writeHead(503).end('busy') });
    t.after(() => b.close());
    const lb = await setupLb([b], { fulcrum });
    for (let i = 0; i < 3; i++) assert.equal((await get(lb.url)).status, 503);
    assert.equal(b.seen.length, 3);
    const after = await get(lb.url);
    assert.equal(after.status, 503);
    assert.match(after.body, /no usable backend/, "Fulcrum's own 503, the backend was not asked");
    assert.equal(b.seen.length, 3);
    const pool = (await fulcrum.api.get(`/api/v1/pools/${lb.poolId}`)).body;
    assert.equal(pool.status, 'UNAVAILABLE');
    assert.match(pool.status_message, /no backend is usable/);
  });

  it('a pool can turn passive detection off: failing answers then reach the client every time', async (t) => {
    const b = await startBackend('busy', { handler: (_req, res) => void res.writeHead(503).end('busy') });
    t.after(() => b.close());
    const lb = await setupLb([b], { fulcrum, pool: { passive_health: { enabled: false } } });
    assert.equal((await fulcrum.api.get(`/api/v1/pools/${lb.poolId}`)).body.passive_health.enabled, false);
    for (let i = 0; i < 5; i++) assert.deepEqual(await get(lb.url), { status: 503, body: 'busy' });
    assert.equal(b.seen.length, 5, 'every request reached the backend');
    assert.equal((await fulcrum.api.get(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`)).body.status, 'HEALTHY');
  });

  it('an active check that passes replaces a passive OFFLINE at once', async (t) => {
    let fail = true;
    const b = await startBackend('flaky', { handler: (req, res) => void (req.url === '/health' || !fail ? res.end('ok') : res.writeHead(503).end('no')) });
    t.after(() => b.close());
    const lb = await setupLb([b], {
      fulcrum,
      pool: { health_check: { protocol: 'HTTP', path: '/health', interval_seconds: 1, timeout_seconds: 1, healthy_threshold: 1, unhealthy_threshold: 3, jitter_percent: 0 } },
    });
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    for (let i = 0; i < 50 && (await fulcrum.api.get(path)).body.status !== 'HEALTHY'; i++) await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) assert.equal((await get(lb.url)).status, 503);
    assert.equal((await fulcrum.api.get(path)).body.status, 'OFFLINE');
    fail = false;
    let status = 'OFFLINE';
    const t0 = Date.now();
    for (let i = 0; i < 60 && status !== 'HEALTHY'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = (await fulcrum.api.get(path)).body.status;
    }
    assert.equal(status, 'HEALTHY');
    assert.ok(Date.now() - t0 < 2500, 'the next active check (1 s interval) brought it back, not the 60 s passive timeout');
    assert.deepEqual(await get(lb.url), { status: 200, body: 'ok' });
  });
});

describe('circuit breaker', () => {
  it('opens on the error rate, fails fast with 503, half-opens after the recovery timeout and closes on successful probes', async (t) => {
    let failing = true;
    const b = await startBackend('svc', { handler: (_req, res) => void (failing ? res.writeHead(500).end('boom') : res.end('fine')) });
    t.after(() => b.close());
    const lb = await setupLb([b], {
      fulcrum,
      pool: {
        circuit_breaker: { enabled: true, error_threshold_percent: 50, evaluation_window_seconds: 10, min_request_volume: 4, recovery_timeout_seconds: 1, half_open_requests: 2 },
      },
    });
    const poolPath = `/api/v1/pools/${lb.poolId}`;
    assert.equal((await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state, 'CLOSED');
    for (let i = 0; i < 4; i++) assert.equal((await get(lb.url)).status, 500, 'the backend answers for itself while closed');
    assert.equal(b.seen.length, 4);
    const open = await get(lb.url);
    assert.equal(open.status, 503);
    assert.match(open.body, /circuit breaker of pool .* is open/);
    assert.equal(b.seen.length, 4, 'failing fast: the backend is not asked');
    const view = (await fulcrum.api.get(poolPath)).body;
    assert.equal(view.status, 'UNAVAILABLE');
    assert.equal(view.circuit_breaker_state.state, 'OPEN');
    assert.equal(view.circuit_breaker_state.error_rate_percent, 100);
    const metrics = await (await fetch(`${fulcrum.api.base}/metrics`)).text();
    assert.match(metrics, new RegExp(`fulcrum_circuit_breaker_state\\{pool="${lb.poolId}"\\} 2`));

    failing = false;
    let state = 'OPEN';
    for (let i = 0; i < 40 && state === 'OPEN'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      state = (await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state;
    }
    assert.equal(state, 'HALF_OPEN');
    assert.deepEqual(await get(lb.url), { status: 200, body: 'fine' });
    assert.deepEqual(await get(lb.url), { status: 200, body: 'fine' });
    assert.equal((await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state, 'CLOSED', 'two successful probes close it');
    assert.equal((await get(lb.url)).status, 200);
  });

  it('a failed probe in HALF_OPEN opens it again', async (t) => {
    const b = await startBackend('down', { handler: (_req, res) => void res.writeHead(502).end('x') });
    t.after(() => b.close());
    const lb = await setupLb([b], {
      fulcrum,
      pool: { circuit_breaker: { enabled: true, error_threshold_percent: 50, min_request_volume: 2, recovery_timeout_seconds: 1, half_open_requests: 1 } },
    });
    const poolPath = `/api/v1/pools/${lb.poolId}`;
    for (let i = 0; i < 2; i++) await get(lb.url);
    assert.equal((await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state, 'OPEN');
    let state = 'OPEN';
    for (let i = 0; i < 40 && state === 'OPEN'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      state = (await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state;
    }
    assert.equal(state, 'HALF_OPEN');
    assert.equal((await get(lb.url)).status, 502, 'the probe request reaches the backend');
    assert.equal((await fulcrum.api.get(poolPath)).body.circuit_breaker_state.state, 'OPEN');
  });
});
