/**
 * API tests of the backend endpoints (seed 000 §1) against a real Fulcrum started in-process:
 * POST/GET/PATCH/DELETE /api/v1/pools/{pool_id}/backends[/{server_id}] and …/drain.
 * Each test makes its own pool, so no test depends on another's data.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, fieldsOf, ISO_SECONDS } from '../helpers/assertions.ts';
import { type ApiClient, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

/** The seed's registration body (seed 000 §1, "Register a Backend Server"). */
const SEED_BACKEND = {
  hostname: 'api-server-042.us-east-1a.internal',
  ip_address: '10.0.42.100',
  port: 8080,
  weight: 100,
  max_connections: 10000,
  metadata: {
    availability_zone: 'us-east-1a',
    instance_id: 'i-0abc123def456',
    version: 'v2.3.1',
  },
  health_check: {
    path: '/health',
    interval_seconds: 5,
    timeout_seconds: 2,
  },
  tls: {
    enabled: true,
    verify: true,
    sni_hostname: 'api.internal.example.com',
  },
  slow_start_seconds: 30,
};

/** The seed's pool health check (seed 000 §2, "Create a Server Pool"). */
const SEED_POOL_HEALTH_CHECK = {
  protocol: 'HTTP',
  path: '/health',
  port: 8080,
  interval_seconds: 5,
  timeout_seconds: 2,
  unhealthy_threshold: 3,
  healthy_threshold: 2,
  expected_status_codes: [200],
};


let t: TestFulcrum;
let api: ApiClient;

let poolSeq = 0;
let backendSeq = 0;

/** A fresh pool for one test; `extra` goes into the create body. */
async function newPool(extra: Record<string, unknown> = {}): Promise<string> {
  const res = await api.post('/api/v1/pools', { name: `backends test ${++poolSeq}`, ...extra });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.pool_id as string;
}

/** A backend at a unique name and port on loopback (nothing connects to it in this release). */
async function newBackend(poolId: string, extra: Record<string, unknown> = {}) {
  backendSeq++;
  const res = await api.post(`/api/v1/pools/${poolId}/backends`, {
    name: `be ${backendSeq}`,
    ip_address: '127.0.0.1',
    port: 20000 + backendSeq,
    ...extra,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

const backendsPath = (poolId: string) => `/api/v1/pools/${poolId}/backends`;
const backendPath = (poolId: string, serverId: string) => `/api/v1/pools/${poolId}/backends/${serverId}`;

describe('backends API', () => {
  before(async () => {
    t = await startTestFulcrum();
    api = t.api;
  });
  after(async () => {
    await t.close();
  });

  describe('POST /api/v1/pools/{pool_id}/backends', () => {
    it('registers the seed backend in a pool with a health check: 201 STARTING, UNKNOWN, weight 0', async () => {
      const poolId = await newPool({ health_check: SEED_POOL_HEALTH_CHECK });
      const res = await api.post(backendsPath(poolId), SEED_BACKEND);

      assert.equal(res.status, 201, JSON.stringify(res.body));
      const b = res.body;
      assert.equal(b.server_id, 'backend-api-server-042-us-east-1a-internal');
      assert.equal(b.pool_id, poolId);
      assert.equal(b.status, 'STARTING');
      assert.equal(b.health_check_status, 'UNKNOWN');
      assert.equal(b.effective_weight, 0);
      assert.match(b.created_at, ISO_SECONDS);
      assert.equal(b.message, 'Server registered. Will receive traffic after passing health checks.');
      for (const [key, value] of Object.entries(SEED_BACKEND)) {
        assert.deepEqual(b[key], value, `field ${key} is returned as given`);
      }
      assert.equal(Number.isInteger(b.version), true);
      assert.equal(res.headers.get('etag'), `"${b.version}"`);

      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('etag'), `"${b.version}"`);
      for (const [key, value] of Object.entries(SEED_BACKEND)) assert.deepEqual(got.body[key], value, `GET field ${key}`);
      assert.equal(got.body.status, 'STARTING');
    });

    it('a backend in a pool without a health check is HEALTHY at once with effective_weight = weight', async () => {
      const poolId = await newPool();
      const res = await api.post(backendsPath(poolId), { name: 'no check', ip_address: '127.0.0.1', port: 8081, weight: 40 });

      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.server_id, 'backend-no-check');
      assert.equal(res.body.pool_id, poolId);
      assert.equal(res.body.status, 'HEALTHY');
      assert.equal(res.body.weight, 40);
      assert.equal(res.body.effective_weight, 40);
      assert.equal(typeof res.body.health_check_status, 'string');
      assert.notEqual(res.body.health_check_status, 'UNKNOWN');
      assert.equal(typeof res.body.message, 'string');
      assert.ok(res.body.message.length > 0);
      assert.match(res.body.created_at, ISO_SECONDS);
      assert.equal(res.headers.get('etag'), `"${res.body.version}"`);
    });

    it('slow start: right after creation the effective weight is below the weight', async () => {
      const poolId = await newPool();
      const own = await api.post(backendsPath(poolId), { name: 'slow own', ip_address: '127.0.0.1', port: 8082, weight: 100, slow_start_seconds: 30 });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      assert.equal(own.body.status, 'HEALTHY');
      assert.equal(own.body.slow_start_seconds, 30);
      assert.ok(own.body.effective_weight >= 0 && own.body.effective_weight < 100, `effective_weight ${own.body.effective_weight}`);

      const got = await api.get(backendPath(poolId, own.body.server_id));
      assert.ok(got.body.effective_weight < 100, `GET effective_weight ${got.body.effective_weight}`);

      // The pool's slow start applies to a backend that states none of its own.
      const rampPool = await newPool({ algorithm_config: { slow_start_duration_seconds: 60 } });
      const inherited = await newBackend(rampPool, { weight: 200 });
      assert.equal(inherited.status, 'HEALTHY');
      assert.ok(inherited.effective_weight >= 0 && inherited.effective_weight < 200, `effective_weight ${inherited.effective_weight}`);
    });

    it("a backend's own health_check makes it STARTING even in a pool without one", async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { health_check: { path: '/health', interval_seconds: 5, timeout_seconds: 2 } });
      assert.equal(b.status, 'STARTING');
      assert.equal(b.health_check_status, 'UNKNOWN');
      assert.equal(b.effective_weight, 0);
      assert.deepEqual(b.health_check, { path: '/health', interval_seconds: 5, timeout_seconds: 2 });
    });

    it('admin_status DISABLED at creation: status DISABLED, effective_weight 0', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { admin_status: 'DISABLED', weight: 70 });
      assert.equal(b.status, 'DISABLED');
      assert.equal(b.admin_status, 'DISABLED');
      assert.equal(b.effective_weight, 0);
      assert.equal(b.weight, 70);
    });

    it('id collisions get a short suffix', async () => {
      const poolId = await newPool();
      const first = await api.post(backendsPath(poolId), { name: 'collide me', ip_address: '127.0.0.1', port: 9001 });
      const second = await api.post(backendsPath(poolId), { name: 'collide me', ip_address: '127.0.0.1', port: 9002 });
      assert.equal(first.status, 201, JSON.stringify(first.body));
      assert.equal(second.status, 201, JSON.stringify(second.body));
      assert.equal(first.body.server_id, 'backend-collide-me');
      assert.match(second.body.server_id, /^backend-collide-me-[a-z0-9]{3,8}$/);

      // The same name in another pool does not take over the first backend's id either.
      const otherPool = await newPool();
      const third = await api.post(backendsPath(otherPool), { name: 'collide me', ip_address: '127.0.0.1', port: 9001 });
      assert.equal(third.status, 201, JSON.stringify(third.body));
      assert.notEqual(third.body.server_id, first.body.server_id);
      assert.notEqual(third.body.server_id, second.body.server_id);
      assert.match(third.body.server_id, /^backend-collide-me(-[a-z0-9]{3,8})?$/);

      for (const [pool, id, port] of [
        [poolId, first.body.server_id, 9001],
        [poolId, second.body.server_id, 9002],
        [otherPool, third.body.server_id, 9001],
      ] as const) {
        const got = await api.get(backendPath(pool, id));
        assert.equal(got.status, 200);
        assert.equal(got.body.port, port);
      }
    });

    it('DUPLICATE_BACKEND 409 for the same address:port in one pool', async () => {
      const poolId = await newPool();
      const first = await newBackend(poolId, { ip_address: '10.0.42.100', port: 9000 });
      const dup = await api.post(backendsPath(poolId), { name: 'dup', ip_address: '10.0.42.100', port: 9000 });
      const err = assertError(dup, 409, 'DUPLICATE_BACKEND');
      assert.equal(err.details.pool_id, poolId);
      assert.equal(err.details.server_id, first.server_id);

      // Same address on another port, or the same address:port in another pool, is fine.
      const otherPort = await api.post(backendsPath(poolId), { name: 'other port', ip_address: '10.0.42.100', port: 9001 });
      assert.equal(otherPort.status, 201, JSON.stringify(otherPort.body));
      const otherPool = await newPool();
      const elsewhere = await api.post(backendsPath(otherPool), { name: 'elsewhere', ip_address: '10.0.42.100', port: 9000 });
      assert.equal(elsewhere.status, 201, JSON.stringify(elsewhere.body));

      // Hostname targets collide the same way.
      await newBackend(poolId, { ip_address: undefined, hostname: 'api.internal.example.com', port: 443 });
      const dupHost = await api.post(backendsPath(poolId), { name: 'dup host', hostname: 'api.internal.example.com', port: 443 });
      assertError(dupHost, 409, 'DUPLICATE_BACKEND');

      // Moving a backend onto a taken address:port by PATCH is refused too.
      const moved = await api.patch(backendPath(poolId, otherPort.body.server_id), { port: 9000 });
      assertError(moved, 409, 'DUPLICATE_BACKEND');

      const list = await api.get(backendsPath(poolId));
      assert.equal(list.body.summary.total_backends, 3);
    });

    it('no address (neither ip_address nor hostname) → 400 VALIDATION_ERROR naming the field', async () => {
      const poolId = await newPool();
      const res = await api.post(backendsPath(poolId), { name: 'nowhere', port: 8080 });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      const fields = fieldsOf(err);
      assert.ok(fields.includes('ip_address') || fields.includes('hostname'), JSON.stringify(fields));
      const list = await api.get(backendsPath(poolId));
      assert.deepEqual(list.body.backends, []);
    });

    it('a bad ip_address → 400 VALIDATION_ERROR naming ip_address', async () => {
      const poolId = await newPool();
      for (const bad of ['10.0.42.300', 'not-an-ip', '10.0.42']) {
        const res = await api.post(backendsPath(poolId), { name: 'bad ip', ip_address: bad, port: 8080 });
        const err = assertError(res, 400, 'VALIDATION_ERROR');
        assert.deepEqual(fieldsOf(err), ['ip_address'], `for ${bad}`);
      }
      const v6 = await api.post(backendsPath(poolId), { name: 'v6', ip_address: '::1', port: 8080 });
      assert.equal(v6.status, 201, JSON.stringify(v6.body));
    });

    it('an unknown field → 400 naming it; a missing port → 400 naming port', async () => {
      const poolId = await newPool();
      const unknown = await api.post(backendsPath(poolId), { ip_address: '127.0.0.1', port: 8080, colour: 'red' });
      const err = assertError(unknown, 400, 'VALIDATION_ERROR');
      assert.ok(fieldsOf(err).includes('colour'), JSON.stringify(err.details));
      assert.match(err.message, /colour/);

      const nested = await api.post(backendsPath(poolId), { ip_address: '127.0.0.1', port: 8080, tls: { enabled: true, verfy: true } });
      assert.ok(fieldsOf(assertError(nested, 400, 'VALIDATION_ERROR')).includes('tls.verfy'));

      const noPort = await api.post(backendsPath(poolId), { ip_address: '127.0.0.1' });
      assert.ok(fieldsOf(assertError(noPort, 400, 'VALIDATION_ERROR')).includes('port'));

      const list = await api.get(backendsPath(poolId));
      assert.deepEqual(list.body.backends, []);
    });

    it('an unknown pool → 404 POOL_NOT_FOUND', async () => {
      const res = await api.post(backendsPath('pool-does-not-exist'), { ip_address: '127.0.0.1', port: 8080 });
      const err = assertError(res, 404, 'POOL_NOT_FOUND');
      assert.equal(err.details.pool_id, 'pool-does-not-exist');
    });
  });

  describe('GET /api/v1/pools/{pool_id}/backends', () => {
    it('filters by status and reports the whole pool in summary', async () => {
      const poolId = await newPool();
      const h1 = await newBackend(poolId);
      const h2 = await newBackend(poolId);
      const disabled = await newBackend(poolId, { admin_status: 'DISABLED' });
      const draining = await newBackend(poolId);
      const starting = await newBackend(poolId, { health_check: { protocol: 'TCP', interval_seconds: 5, timeout_seconds: 2 } });
      const unhealthy = await newBackend(poolId, { health_check: { protocol: 'TCP', interval_seconds: 5, timeout_seconds: 2 } });
      // An open connection keeps the drain going (a drain with none left completes at once).
      const release = t.fulcrum.state.track(draining.server_id, () => {});
      assert.equal((await api.post(`${backendPath(poolId, draining.server_id)}/drain`, {})).status, 202);
      // Stands in for the active health checker, which does not exist yet in this release:
      // the checker would record this result in the same runtime state.
      t.fulcrum.state.setHealth(unhealthy.server_id, 'UNHEALTHY', Date.now());

      const all = await api.get(backendsPath(poolId));
      assert.equal(all.status, 200);
      assert.equal(all.body.backends.length, 6);
      assert.deepEqual(all.body.summary, { total_backends: 6, healthy: 2, unhealthy: 1, starting: 1, draining: 1, disabled: 1 });
      assert.deepEqual(all.body.pagination, { page: 1, per_page: 50, total: 6, total_pages: 1 });
      for (const b of all.body.backends) {
        for (const key of ['server_id', 'hostname', 'ip_address', 'port', 'weight', 'effective_weight', 'status', 'admin_status', 'active_connections', 'last_health_check', 'uptime_seconds']) {
          assert.ok(key in b, `list entry has ${key}`);
        }
      }

      const expect: Record<string, string[]> = {
        HEALTHY: [h1.server_id, h2.server_id],
        DISABLED: [disabled.server_id],
        DRAINING: [draining.server_id],
        STARTING: [starting.server_id],
        UNHEALTHY: [unhealthy.server_id],
        OFFLINE: [],
      };
      for (const [status, ids] of Object.entries(expect)) {
        const res = await api.get(`${backendsPath(poolId)}?status=${status}`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.deepEqual(res.body.backends.map((b: { server_id: string }) => b.server_id).sort(), [...ids].sort(), `?status=${status}`);
        for (const b of res.body.backends) assert.equal(b.status, status);
        assert.equal(res.body.pagination.total, ids.length, `?status=${status} total`);
        assert.equal(res.body.summary.total_backends, 6, 'summary covers the whole pool, not the filter');
      }

      const healthy = await api.get(`${backendsPath(poolId)}?status=HEALTHY`);
      for (const b of healthy.body.backends) assert.equal(b.effective_weight, b.weight);

      assertError(await api.get(`${backendsPath(poolId)}?status=BOGUS`), 400, 'INVALID_PARAMETER');
      release();
    });

    it('pages with page/per_page and the pagination block', async () => {
      const poolId = await newPool();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await newBackend(poolId)).server_id);

      const seen: string[] = [];
      for (const [page, count] of [
        [1, 2],
        [2, 2],
        [3, 1],
      ] as const) {
        const res = await api.get(`${backendsPath(poolId)}?page=${page}&per_page=2`);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(res.body.backends.length, count, `page ${page}`);
        assert.deepEqual(res.body.pagination, { page, per_page: 2, total: 5, total_pages: 3 });
        assert.equal(res.body.summary.total_backends, 5);
        seen.push(...res.body.backends.map((b: { server_id: string }) => b.server_id));
      }
      assert.deepEqual([...seen].sort(), [...ids].sort(), 'the pages cover every backend exactly once');

      const beyond = await api.get(`${backendsPath(poolId)}?page=4&per_page=2`);
      assert.equal(beyond.status, 200);
      assert.deepEqual(beyond.body.backends, []);
      assert.deepEqual(beyond.body.pagination, { page: 4, per_page: 2, total: 5, total_pages: 3 });

      const filtered = await api.get(`${backendsPath(poolId)}?status=HEALTHY&page=1&per_page=50`);
      assert.deepEqual(filtered.body.pagination, { page: 1, per_page: 50, total: 5, total_pages: 1 });
    });

    it('a bad per_page or page → 400 INVALID_PARAMETER', async () => {
      const poolId = await newPool();
      for (const bad of ['0', '501', 'abc', '-1', '2.5']) {
        const res = await api.get(`${backendsPath(poolId)}?per_page=${bad}`);
        const err = assertError(res, 400, 'INVALID_PARAMETER');
        assert.ok(fieldsOf(err).includes('per_page'), `per_page=${bad}: ${JSON.stringify(err.details)}`);
      }
      const page0 = await api.get(`${backendsPath(poolId)}?page=0`);
      assert.ok(fieldsOf(assertError(page0, 400, 'INVALID_PARAMETER')).includes('page'));
      const ok = await api.get(`${backendsPath(poolId)}?per_page=500`);
      assert.equal(ok.status, 200);
    });

    it('an empty pool lists [] (never 404 for an existing pool); an unknown pool is 404', async () => {
      const poolId = await newPool();
      const res = await api.get(backendsPath(poolId));
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.backends, []);
      assert.deepEqual(res.body.pagination, { page: 1, per_page: 50, total: 0, total_pages: 0 });
      assert.deepEqual(res.body.summary, { total_backends: 0, healthy: 0, unhealthy: 0, starting: 0, draining: 0, disabled: 0 });

      const filtered = await api.get(`${backendsPath(poolId)}?status=HEALTHY`);
      assert.equal(filtered.status, 200);
      assert.deepEqual(filtered.body.backends, []);

      assertError(await api.get(backendsPath('pool-nope')), 404, 'POOL_NOT_FOUND');
    });
  });

  describe('GET /api/v1/pools/{pool_id}/backends/{server_id}', () => {
    it('returns the backend with its ETag', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 25, metadata: { zone: 'a' } });
      const res = await api.get(backendPath(poolId, b.server_id));
      assert.equal(res.status, 200);
      assert.equal(res.body.server_id, b.server_id);
      assert.equal(res.body.pool_id, poolId);
      assert.equal(res.body.weight, 25);
      assert.deepEqual(res.body.metadata, { zone: 'a' });
      assert.equal(res.body.status, 'HEALTHY');
      assert.equal(res.body.active_connections, 0);
      assert.equal(res.headers.get('etag'), `"${b.version}"`);
    });

    it('an unknown backend → 404 BACKEND_NOT_FOUND with the seed details {pool_id, server_id}', async () => {
      const poolId = await newPool();
      const res = await api.get(backendPath(poolId, 'backend-xyz'));
      const err = assertError(res, 404, 'BACKEND_NOT_FOUND');
      assert.deepEqual(err.details, { pool_id: poolId, server_id: 'backend-xyz' });
      assert.equal(err.message, `Backend server 'backend-xyz' not found in pool '${poolId}'`);
    });

    it('a backend of another pool is not found under the wrong pool, for every verb', async () => {
      const poolA = await newPool();
      const poolB = await newPool();
      const b = await newBackend(poolA);

      const got = await api.get(backendPath(poolB, b.server_id));
      assert.deepEqual(assertError(got, 404, 'BACKEND_NOT_FOUND').details, { pool_id: poolB, server_id: b.server_id });
      assertError(await api.patch(backendPath(poolB, b.server_id), { weight: 1 }), 404, 'BACKEND_NOT_FOUND');
      assertError(await api.post(`${backendPath(poolB, b.server_id)}/drain`, {}), 404, 'BACKEND_NOT_FOUND');
      assertError(await api.delete(backendPath(poolB, b.server_id)), 404, 'BACKEND_NOT_FOUND');

      const still = await api.get(backendPath(poolA, b.server_id));
      assert.equal(still.status, 200);
      assert.equal(still.body.weight, b.weight);
      assert.equal(still.body.status, 'HEALTHY');
      assert.equal(still.body.version, b.version);
    });

    it('an unknown pool → 404 POOL_NOT_FOUND', async () => {
      const err = assertError(await api.get(backendPath('pool-nope', 'backend-xyz')), 404, 'POOL_NOT_FOUND');
      assert.equal(err.details.pool_id, 'pool-nope');
    });
  });

  describe('PATCH /api/v1/pools/{pool_id}/backends/{server_id}', () => {
    it('changes weight and max_connections: 200 with previous_weight, version bumped', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 100, max_connections: 10000 });
      const res = await api.patch(backendPath(poolId, b.server_id), { weight: 50, max_connections: 5000 });

      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.server_id, b.server_id);
      assert.equal(res.body.weight, 50);
      assert.equal(res.body.previous_weight, 100);
      assert.equal(res.body.max_connections, 5000);
      assert.match(res.body.updated_at, ISO_SECONDS);
      assert.equal(res.body.effective_weight, 50);
      assert.equal(res.body.version, b.version + 1);
      assert.equal(res.headers.get('etag'), `"${b.version + 1}"`);

      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.body.weight, 50);
      assert.equal(got.body.max_connections, 5000);
      assert.equal(got.headers.get('etag'), `"${b.version + 1}"`);

      const again = await api.patch(backendPath(poolId, b.server_id), { weight: 10 });
      assert.equal(again.body.previous_weight, 50);
      assert.equal(again.body.version, b.version + 2);
    });

    it('If-Match: the current version passes, a stale one → 409 VERSION_CONFLICT', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 100 });
      const v = b.version as number;

      const ok = await api.patch(backendPath(poolId, b.server_id), { weight: 60 }, { 'if-match': `"${v}"` });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.headers.get('etag'), `"${v + 1}"`);

      const stale = await api.patch(backendPath(poolId, b.server_id), { weight: 70 }, { 'if-match': `"${v}"` });
      const err = assertError(stale, 409, 'VERSION_CONFLICT');
      assert.equal(err.details.current_version, v + 1);

      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.body.weight, 60, 'the refused change did not apply');
      assert.equal(got.body.version, v + 1);
    });

    it('a stale `version` field in the body → 409 VERSION_CONFLICT; the current one passes', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 100 });
      const v = b.version as number;

      assert.equal((await api.patch(backendPath(poolId, b.server_id), { weight: 80, version: v })).status, 200);
      assertError(await api.patch(backendPath(poolId, b.server_id), { weight: 90, version: v }), 409, 'VERSION_CONFLICT');
      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.body.weight, 80);
    });

    it('a malformed If-Match → 400 INVALID_PARAMETER', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 100 });
      const res = await api.patch(backendPath(poolId, b.server_id), { weight: 5 }, { 'if-match': 'not-a-version' });
      assertError(res, 400, 'INVALID_PARAMETER');
      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.body.weight, 100);
    });

    it('an empty body {} → 400; an unknown field → 400 naming it', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      assertError(await api.patch(backendPath(poolId, b.server_id), {}), 400, 'VALIDATION_ERROR');
      const unknown = await api.patch(backendPath(poolId, b.server_id), { wieght: 5 });
      assert.ok(fieldsOf(assertError(unknown, 400, 'VALIDATION_ERROR')).includes('wieght'));
      const badIp = await api.patch(backendPath(poolId, b.server_id), { ip_address: '300.1.1.1' });
      assert.ok(fieldsOf(assertError(badIp, 400, 'VALIDATION_ERROR')).includes('ip_address'));
      const got = await api.get(backendPath(poolId, b.server_id));
      assert.equal(got.body.version, b.version, 'refused patches change nothing');
    });

    it('admin_status DISABLED → status DISABLED, effective_weight 0; ENABLED brings it back', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId, { weight: 30 });
      const off = await api.patch(backendPath(poolId, b.server_id), { admin_status: 'DISABLED' });
      assert.equal(off.status, 200, JSON.stringify(off.body));
      assert.equal(off.body.status, 'DISABLED');
      assert.equal(off.body.admin_status, 'DISABLED');
      assert.equal(off.body.effective_weight, 0);
      assert.equal(off.body.weight, 30);

      const list = await api.get(backendsPath(poolId));
      assert.equal(list.body.summary.disabled, 1);
      assert.equal(list.body.summary.healthy, 0);

      const on = await api.patch(backendPath(poolId, b.server_id), { admin_status: 'ENABLED' });
      assert.equal(on.body.status, 'HEALTHY');
      assert.equal(on.body.effective_weight, 30);
    });

    it('an unknown backend → 404 BACKEND_NOT_FOUND', async () => {
      const poolId = await newPool();
      const err = assertError(await api.patch(backendPath(poolId, 'backend-xyz'), { weight: 1 }), 404, 'BACKEND_NOT_FOUND');
      assert.deepEqual(err.details, { pool_id: poolId, server_id: 'backend-xyz' });
    });
  });

  describe('POST /api/v1/pools/{pool_id}/backends/{server_id}/drain', () => {
    it('drains with the seed body: 202 with status DRAINING and the estimate; GET and the summary show it', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      // Stands in for a connection the data plane would hold: the forwarding path does not exist
      // yet, so the test registers one in the runtime state the data plane will write to.
      const release = t.fulcrum.state.track(b.server_id, () => {});
      try {
        const res = await api.post(`${backendPath(poolId, b.server_id)}/drain`, {
          timeout_seconds: 300,
          close_idle_connections: true,
          reason: 'Scheduled maintenance window',
        });
        assert.equal(res.status, 202, JSON.stringify(res.body));
        assert.equal(res.body.server_id, b.server_id);
        assert.equal(res.body.status, 'DRAINING');
        assert.equal(res.body.active_connections, 1);
        assert.match(res.body.drain_started_at, ISO_SECONDS);
        assert.match(res.body.estimated_completion, ISO_SECONDS);
        assert.equal(Date.parse(res.body.estimated_completion) - Date.parse(res.body.drain_started_at), 300_000);
        assert.match(res.body.drain_id, /^drain-[a-z0-9]+$/);

        const got = await api.get(backendPath(poolId, b.server_id));
        assert.equal(got.status, 200);
        assert.equal(got.body.status, 'DRAINING');
        assert.equal(got.body.admin_status, 'DRAINING');
        assert.equal(got.body.effective_weight, 0);

        const list = await api.get(backendsPath(poolId));
        assert.equal(list.body.summary.draining, 1);
        assert.equal(list.body.summary.healthy, 0);
        const draining = await api.get(`${backendsPath(poolId)}?status=DRAINING`);
        assert.deepEqual(draining.body.backends.map((x: { server_id: string }) => x.server_id), [b.server_id]);
      } finally {
        release();
      }
    });

    it('drain with no body at all uses the defaults (timeout 300)', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      const res = await api.post(`${backendPath(poolId, b.server_id)}/drain`);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res.body.status, 'DRAINING');
      assert.equal(res.body.active_connections, 0);
      assert.equal(Date.parse(res.body.estimated_completion) - Date.parse(res.body.drain_started_at), 300_000);
      assert.match(res.body.drain_id, /^drain-/);
      // No connection to wait for: the drain completes at once and the backend is removed.
      let status = 200;
      for (let i = 0; i < 50 && status === 200; i++) {
        status = (await api.get(backendPath(poolId, b.server_id))).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(status, 404);
    });

    it('estimated_completion follows timeout_seconds; bad drain bodies → 400', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      const res = await api.post(`${backendPath(poolId, b.server_id)}/drain`, { timeout_seconds: 60 });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(Date.parse(res.body.estimated_completion) - Date.parse(res.body.drain_started_at), 60_000);

      const unknown = await api.post(`${backendPath(poolId, b.server_id)}/drain`, { timeout: 60 });
      assert.ok(fieldsOf(assertError(unknown, 400, 'VALIDATION_ERROR')).includes('timeout'));
      const negative = await api.post(`${backendPath(poolId, b.server_id)}/drain`, { timeout_seconds: -1 });
      assert.ok(fieldsOf(assertError(negative, 400, 'VALIDATION_ERROR')).includes('timeout_seconds'));
    });

    it('an unknown backend → 404 BACKEND_NOT_FOUND', async () => {
      const poolId = await newPool();
      assertError(await api.post(`${backendPath(poolId, 'backend-xyz')}/drain`, {}), 404, 'BACKEND_NOT_FOUND');
    });
  });

  describe('DELETE /api/v1/pools/{pool_id}/backends/{server_id}', () => {
    it('removes the backend: 200 REMOVED, then GET → 404', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      const keep = await newBackend(poolId);
      const res = await api.delete(`${backendPath(poolId, b.server_id)}?force=false`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.server_id, b.server_id);
      assert.equal(res.body.status, 'REMOVED');
      assert.equal(res.body.connections_terminated, 0);
      assert.match(res.body.removed_at, ISO_SECONDS);

      assertError(await api.get(backendPath(poolId, b.server_id)), 404, 'BACKEND_NOT_FOUND');
      const list = await api.get(backendsPath(poolId));
      assert.deepEqual(list.body.backends.map((x: { server_id: string }) => x.server_id), [keep.server_id]);
      assert.equal(list.body.summary.total_backends, 1);

      assertError(await api.delete(backendPath(poolId, b.server_id)), 404, 'BACKEND_NOT_FOUND');
    });

    it('with live connections: 409 BACKEND_HAS_CONNECTIONS unless ?force=true, which terminates them', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      let terminated = 0;
      // Stands in for a connection the data plane would hold: the forwarding path does not exist
      // yet, so the test registers one in the runtime state, with the callback the data plane
      // would use to cut it.
      const release = t.fulcrum.state.track(b.server_id, () => {
        terminated++;
      });
      try {
        const seen = await api.get(backendPath(poolId, b.server_id));
        assert.equal(seen.body.active_connections, 1);

        for (const path of [`${backendPath(poolId, b.server_id)}?force=false`, backendPath(poolId, b.server_id)]) {
          const refused = await api.delete(path);
          const err = assertError(refused, 409, 'BACKEND_HAS_CONNECTIONS');
          assert.equal(err.details.active_connections, 1);
          assert.equal(err.details.server_id, b.server_id);
          assert.equal(err.details.pool_id, poolId);
        }
        assert.equal(terminated, 0, 'a refused delete cuts no connection');
        const still = await api.get(backendPath(poolId, b.server_id));
        assert.equal(still.status, 200);

        const forced = await api.delete(`${backendPath(poolId, b.server_id)}?force=true`);
        assert.equal(forced.status, 200, JSON.stringify(forced.body));
        assert.equal(forced.body.server_id, b.server_id);
        assert.equal(forced.body.status, 'REMOVED');
        assert.equal(forced.body.connections_terminated, 1);
        assert.match(forced.body.removed_at, ISO_SECONDS);
        assert.equal(terminated, 1, 'the connection was terminated');

        assertError(await api.get(backendPath(poolId, b.server_id)), 404, 'BACKEND_NOT_FOUND');
      } finally {
        release();
      }
    });

    it('a bad force value → 400 INVALID_PARAMETER; unknown pool → 404 POOL_NOT_FOUND', async () => {
      const poolId = await newPool();
      const b = await newBackend(poolId);
      assertError(await api.delete(`${backendPath(poolId, b.server_id)}?force=maybe`), 400, 'INVALID_PARAMETER');
      assert.equal((await api.get(backendPath(poolId, b.server_id))).status, 200);
      assertError(await api.delete(backendPath('pool-nope', b.server_id)), 404, 'POOL_NOT_FOUND');
    });
  });
});
