/**
 * Every algorithm, end to end: real requests through a listener to real backends, counted by
 * which backend answered. The algorithms' exact properties are in test/balancing; here we check
 * that traffic follows the configuration and that changes apply to the next request.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';

const agent = new Agent({ connections: 8 });
after(() => agent.close());

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const r = await request(url, { dispatcher: agent, headers });
  return { status: r.statusCode, body: await r.body.text() };
}

/** Sends n requests (concurrency 4) and counts answers by body (the backend's name). */
async function distribution(url: string, n: number, headers: (i: number) => Record<string, string> = () => ({})): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const r = await get(url, headers(i));
      assert.equal(r.status, 200, r.body);
      counts[r.body] = (counts[r.body] ?? 0) + 1;
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return counts;
}

describe('balancing real traffic', () => {
  let backends: TestBackend[];
  let lb: LbSetup;

  before(async () => {
    backends = await Promise.all(['a', 'b', 'c'].map((n) => startBackend(n)));
    lb = await setupLb(backends, { backendFields: [{ weight: 60 }, { weight: 30 }, { weight: 10 }] });
  });
  after(async () => {
    await lb.close();
    await Promise.all(backends.map((b) => b.close()));
  });

  async function setAlgorithm(algorithm: string, algorithm_config: Record<string, unknown> = {}) {
    const r = await lb.api.put(`/api/v1/pools/${lb.poolId}/algorithm`, { algorithm, algorithm_config });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  it('ROUND_ROBIN cycles through the backends in turn, ignoring weights', async () => {
    await setAlgorithm('ROUND_ROBIN');
    const seq: string[] = [];
    for (let i = 0; i < 9; i++) seq.push((await get(lb.url)).body);
    assert.deepEqual(new Set(seq.slice(0, 3)), new Set(['a', 'b', 'c']));
    assert.deepEqual(seq.slice(3, 6), seq.slice(0, 3));
    assert.deepEqual(seq.slice(6, 9), seq.slice(0, 3));
  });

  it('WEIGHTED_ROUND_ROBIN follows the weights 60/30/10 exactly over a full cycle', async () => {
    await setAlgorithm('WEIGHTED_ROUND_ROBIN');
    const counts = await distribution(lb.url, 1000);
    assert.ok(Math.abs(counts.a! - 600) <= 10 && Math.abs(counts.b! - 300) <= 10 && Math.abs(counts.c! - 100) <= 10, JSON.stringify(counts));
  });

  it('RANDOM with weighted follows the weights within tolerance', async () => {
    await setAlgorithm('RANDOM', { weighted: true });
    const counts = await distribution(lb.url, 2000);
    assert.ok(Math.abs(counts.a! / 2000 - 0.6) < 0.06, JSON.stringify(counts));
    assert.ok(Math.abs(counts.c! / 2000 - 0.1) < 0.04, JSON.stringify(counts));
  });

  it('LEAST_CONNECTIONS spreads sequential requests over every backend', async () => {
    await setAlgorithm('LEAST_CONNECTIONS');
    const counts = await distribution(lb.url, 300);
    assert.deepEqual(Object.keys(counts).sort(), ['a', 'b', 'c'], JSON.stringify(counts));
  });

  it('CONSISTENT_HASH on a header keeps each key on one backend and spreads keys', async () => {
    await setAlgorithm('CONSISTENT_HASH', { hash_key: { header: 'X-User' } });
    const owner = new Map<string, string>();
    for (let u = 0; u < 60; u++) {
      for (let k = 0; k < 3; k++) {
        const r = await get(lb.url, { 'x-user': `user-${u}` });
        const prev = owner.get(`user-${u}`);
        if (prev) assert.equal(r.body, prev, `user-${u} moved`);
        owner.set(`user-${u}`, r.body);
      }
    }
    assert.ok(new Set(owner.values()).size >= 2, 'keys spread over backends');
  });

  it('CONSISTENT_HASH on a cookie and IP_HASH pin a client', async () => {
    await setAlgorithm('CONSISTENT_HASH', { hash_key: { cookie: 'sid' } });
    const first = (await get(lb.url, { cookie: 'theme=dark; sid=abc123' })).body;
    for (let i = 0; i < 10; i++) assert.equal((await get(lb.url, { cookie: `sid=abc123; n=${i}` })).body, first);
    await setAlgorithm('IP_HASH');
    const ip = (await get(lb.url)).body;
    for (let i = 0; i < 10; i++) assert.equal((await get(lb.url)).body, ip);
  });

  it('a DISABLED backend gets no traffic and an ENABLED one gets it back at once', async () => {
    await setAlgorithm('ROUND_ROBIN');
    const off = await lb.api.patch(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`, { admin_status: 'DISABLED' });
    assert.equal(off.status, 200);
    const counts = await distribution(lb.url, 60);
    assert.equal(counts.a, undefined, JSON.stringify(counts));
    const on = await lb.api.patch(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`, { admin_status: 'ENABLED' });
    assert.equal(on.status, 200);
    assert.ok((await distribution(lb.url, 30)).a! > 0);
  });

  it('traffic shows in the backend view: requests_per_second, avg_response_time_ms, error_rate_percent', async () => {
    const r = await lb.api.get(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[1]}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.requests_per_second > 0, JSON.stringify(r.body));
    assert.ok(r.body.avg_response_time_ms > 0);
    assert.equal(r.body.error_rate_percent, 0);
    assert.equal(r.body.active_connections, 0);
  });
});

describe('connection limits and slow start', () => {
  it('a backend at max_connections is skipped; all full answers 503', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived: () => void = () => {};
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const slow = await startBackend('slow', {
      handler: (_req, res) => {
        arrived();
        void held.then(() => res.end('slow'));
      },
    });
    const lb = await setupLb([slow], { backendFields: [{ max_connections: 1 }] });
    try {
      const first = get(lb.url);
      await arrival;
      const view = await lb.api.get(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`);
      assert.equal(view.body.active_connections, 1);
      const second = await get(lb.url);
      assert.equal(second.status, 503);
      assert.match(second.body, /no usable backend.*request id req-/);
      release();
      assert.equal((await first).status, 200);
      assert.equal((await get(lb.url)).status, 200, 'the slot is free again');
    } finally {
      release();
      await lb.close();
      await slow.close();
    }
  });

  it('slow start: effective_weight ramps from 0 towards the weight and the API shows it', async () => {
    const b = await startBackend('ramp');
    const lb = await setupLb([b], { backendFields: [{ weight: 100, slow_start_seconds: 2 }] });
    try {
      const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
      const early = (await lb.api.get(path)).body.effective_weight as number;
      assert.ok(early < 100, `at the start ${early}`);
      // Poll (bounded) until the ramp completes; each reading must not go down.
      let last = early;
      for (let i = 0; i < 60 && last < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const w = (await lb.api.get(path)).body.effective_weight as number;
        assert.ok(w >= last, `weight went down: ${last} -> ${w}`);
        last = w;
      }
      assert.equal(last, 100);
      assert.equal((await get(lb.url)).status, 200);
    } finally {
      await lb.close();
      await b.close();
    }
  });
});
