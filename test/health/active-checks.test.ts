/**
 * Active health checks against real peers: a backend under a check waits for `healthy_threshold`
 * passes before it takes traffic, leaves rotation after `unhealthy_threshold` failures, and comes
 * back when it passes again. Intervals are whole seconds, so these tests take a few seconds each.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { setupLb, startBackend } from '../helpers/http-lb.ts';

let fulcrum: TestFulcrum;
before(async () => {
  fulcrum = await startTestFulcrum();
});
after(() => fulcrum.close());

const FAST = { interval_seconds: 1, timeout_seconds: 1, healthy_threshold: 2, unhealthy_threshold: 2, jitter_percent: 0 };

/** Polls the backend until `status`, for at most `ms`; returns the last view and the time it took. */
async function waitForStatus(path: string, status: string, ms: number): Promise<{ view: any; waited: number }> {
  const t0 = Date.now();
  let view = (await fulcrum.api.get(path)).body;
  while (view.status !== status && Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    view = (await fulcrum.api.get(path)).body;
  }
  return { view, waited: Date.now() - t0 };
}

describe('active health checks', () => {
  it('TCP: STARTING with no traffic until 2 passes, then HEALTHY; a stopped backend turns UNHEALTHY within interval × threshold + timeout', async (t) => {
    const a = await startBackend('a');
    const b = await startBackend('b');
    t.after(() => Promise.all([a.close(), b.close()]));
    const lb = await setupLb([a, b], { fulcrum, pool: { health_check: { protocol: 'TCP', ...FAST } } });
    const pathA = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    const pathB = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[1]}`;

    const starting = (await fulcrum.api.get(pathA)).body;
    assert.equal(starting.status, 'STARTING');
    assert.equal(starting.effective_weight, 0);
    const early = await fetch(lb.url);
    assert.equal(early.status, 503, 'no backend has passed its checks yet');
    await early.text();

    const healthy = await waitForStatus(pathA, 'HEALTHY', 5000);
    assert.equal(healthy.view.status, 'HEALTHY');
    assert.equal(healthy.view.health_check_status, 'HEALTHY');
    assert.equal(healthy.view.effective_weight, 100);
    assert.ok(healthy.view.last_health_check, 'the last check time is shown');
    await waitForStatus(pathB, 'HEALTHY', 5000);
    const served = await fetch(lb.url);
    assert.equal(served.status, 200);
    await served.text();

    await a.close(); // port closed: connects are refused
    const killedAt = Date.now();
    const down = await waitForStatus(pathA, 'UNHEALTHY', 6000);
    assert.equal(down.view.status, 'UNHEALTHY');
    assert.equal(down.view.effective_weight, 0);
    // interval 1 s × 2 failures + 1 s timeout, and a scheduling margin.
    assert.ok(Date.now() - killedAt <= 3500, `out of rotation after ${Date.now() - killedAt} ms`);
    for (let i = 0; i < 6; i++) {
      const r = await fetch(lb.url);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), 'b', 'only the healthy backend answers');
    }
  });

  it('HTTP: expected status and body regex decide; a backend that recovers comes back after healthy_threshold passes', async (t) => {
    let healthy = false;
    const b = await startBackend('web', {
      handler: (req, res, name) => {
        if (req.url !== '/healthz') return void res.end(name);
        res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(healthy ? 'status: ok' : 'status: starting');
      },
    });
    t.after(() => b.close());
    const lb = await setupLb([b], {
      fulcrum,
      pool: { health_check: { protocol: 'HTTP', path: '/healthz', expected_status_codes: [200], expected_body_regex: 'status: ok', ...FAST } },
    });
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    const down = await waitForStatus(path, 'UNHEALTHY', 5000);
    assert.equal(down.view.status, 'UNHEALTHY', '503 twice in a row');
    const refused = await fetch(lb.url);
    assert.equal(refused.status, 503);
    await refused.text();

    healthy = true;
    const up = await waitForStatus(path, 'HEALTHY', 5000);
    assert.equal(up.view.status, 'HEALTHY');
    assert.ok(up.waited >= 900, `needs two passes a second apart (${up.waited} ms)`);
    const r = await fetch(lb.url);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'web');
    const seen = b.seen.filter((s) => s.url === '/healthz');
    assert.ok(seen.length >= 4);
    assert.equal(seen[0]!.headers['user-agent'], 'fulcrum-health-check');
  });

  it('removing the check makes the backend HEALTHY at once; the body regex alone can fail a 200', async (t) => {
    const b = await startBackend('plain'); // answers 200 "plain" everywhere
    t.after(() => b.close());
    const lb = await setupLb([b], { fulcrum, pool: { health_check: { protocol: 'HTTP', path: '/', expected_body_regex: '^ok$', ...FAST } } });
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    const down = await waitForStatus(path, 'UNHEALTHY', 5000);
    assert.equal(down.view.status, 'UNHEALTHY', 'a 200 whose body does not match fails');
    const cleared = await fulcrum.api.patch(`/api/v1/pools/${lb.poolId}`, { health_check: null });
    assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
    const now = (await fulcrum.api.get(path)).body;
    assert.equal(now.status, 'HEALTHY');
    assert.equal(now.health_check_status, 'NOT_CONFIGURED');
    const r = await fetch(lb.url);
    assert.equal(r.status, 200);
    await r.text();
  });
});

describe('a backend killed under load', () => {
  it('leaves the rotation within the threshold window with no client-visible error; it comes back after healthy_threshold passes', async (t) => {
    const a = await startBackend('a');
    let b = await startBackend('b');
    t.after(() => Promise.all([a.close(), b.close()]));
    const lb = await setupLb([a, b], { fulcrum, pool: { health_check: { protocol: 'TCP', ...FAST } } });
    const pathB = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[1]}`;
    await waitForStatus(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`, 'HEALTHY', 5000);
    await waitForStatus(pathB, 'HEALTHY', 5000);

    // ~100 GETs a second, each on its own schedule, for the whole test.
    const failures: string[] = [];
    const answers: { at: number; body: string }[] = [];
    const inflight: Promise<void>[] = [];
    const load = setInterval(() => {
      inflight.push(
        fetch(lb.url).then(
          async (r) => {
            const body = await r.text();
            if (r.status !== 200) failures.push(`${r.status} ${body}`);
            else answers.push({ at: Date.now(), body });
          },
          (err: Error) => void failures.push(err.message),
        ),
      );
    }, 10);
    try {
      await new Promise((r) => setTimeout(r, 300));
      await b.close(); // killed: in-flight requests end, new connects are refused
      const killedAt = Date.now();
      const down = await waitForStatus(pathB, 'UNHEALTHY', 6000);
      assert.equal(down.view.status, 'UNHEALTHY');
      const outAt = Date.now();
      assert.ok(outAt - killedAt <= 3500, `out of rotation after ${outAt - killedAt} ms (interval 1 s × 2 + timeout 1 s)`);

      // It comes back (on a new port, which the operator points the backend at): two passes return it.
      b = await startBackend('b2');
      const moved = await fulcrum.api.patch(pathB, { port: b.port });
      assert.equal(moved.status, 200);
      assert.equal(moved.body.status, 'UNHEALTHY', 'a new address starts counting afresh from the state reached');
      const up = await waitForStatus(pathB, 'HEALTHY', 6000);
      assert.equal(up.view.status, 'HEALTHY');
      const backAt = Date.now();
      await new Promise((r) => setTimeout(r, 300));
      clearInterval(load);
      await Promise.all(inflight);
      assert.deepEqual(failures, [], 'connect failures were retried on the live backend: no client saw an error');
      assert.ok(answers.some((x) => x.at > backAt && x.body === 'b2'), 'the revived backend takes traffic again');
    } finally {
      clearInterval(load);
      await Promise.all(inflight);
    }
  });
});

describe('flapping', () => {
  it('a backend whose checks alternate pass and fail does not flap: thresholds hold its state', async (t) => {
    let n = 0;
    let flapping = false;
    const b = await startBackend('flap', {
      handler: (req, res, name) => {
        if (req.url !== '/hc') return void res.end(name);
        const pass = !flapping || n++ % 2 === 0;
        res.writeHead(pass ? 200 : 500).end();
      },
    });
    t.after(() => b.close());
    const lb = await setupLb([b], { fulcrum, pool: { health_check: { protocol: 'HTTP', path: '/hc', ...FAST } } });
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    assert.equal((await waitForStatus(path, 'HEALTHY', 5000)).view.status, 'HEALTHY');
    flapping = true;
    const resultsPath = `/api/v1/pools/${lb.poolId}/health-check/results`;
    const before = (await fulcrum.api.get(resultsPath)).body.results[0];
    // Six alternating checks (a second apart): never two failures in a row.
    const start = Date.now();
    while (Date.now() - start < 6000) {
      const view = (await fulcrum.api.get(path)).body;
      assert.equal(view.status, 'HEALTHY', 'alternating results never reach unhealthy_threshold (2) failures in a row');
      const r = await fetch(lb.url);
      assert.equal(r.status, 200);
      await r.text();
      await new Promise((r) => setTimeout(r, 200));
    }
    const afterResults = (await fulcrum.api.get(resultsPath)).body.results[0];
    assert.ok(n >= 5, `the backend was checked while flapping (${n} checks)`);
    assert.equal(afterResults.transitions.length, before.transitions.length, 'no transition was recorded while flapping');
  });
});
