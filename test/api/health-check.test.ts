/**
 * API tests of a pool's health check (seed 000 §3) against a real Fulcrum started in-process:
 * GET and PUT /api/v1/pools/{pool_id}/health-check. Each test makes its own pool.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, fieldsOf, ISO_SECONDS } from '../helpers/assertions.ts';
import { type ApiClient, startTestFulcrum, tempDir, type TestFulcrum } from '../helpers/fulcrum.ts';

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

/** The seed's update body (seed 000 §3, "Update Health Check Configuration"). */
const SEED_UPDATE = {
  protocol: 'HTTP',
  path: '/health/deep',
  port: 8080,
  method: 'GET',
  interval_seconds: 10,
  timeout_seconds: 5,
  unhealthy_threshold: 5,
  healthy_threshold: 3,
  expected_status_codes: [200, 204],
  expected_body_regex: '"database":"connected"',
  headers: {
    Authorization: 'Bearer ${health_check_token}',
  },
};


let t: TestFulcrum;
let api: ApiClient;
let poolSeq = 0;

const hcPath = (poolId: string) => `/api/v1/pools/${poolId}/health-check`;

async function newPool(a: ApiClient, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await a.post('/api/v1/pools', { name: `health check test ${++poolSeq}`, ...extra });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.pool_id as string;
}

describe('health check API', () => {
  before(async () => {
    t = await startTestFulcrum();
    api = t.api;
  });
  after(async () => {
    await t.close();
  });

  describe('GET /api/v1/pools/{pool_id}/health-check', () => {
    it("returns the pool's check with defaults filled, a stats block and an ETag", async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const res = await api.get(hcPath(poolId));

      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.pool_id, poolId);
      const { tls_enabled: _tlsEnabled, ...hc } = res.body.health_check;
      assert.deepEqual(hc, {
        ...SEED_POOL_HEALTH_CHECK,
        method: 'GET',
        jitter_percent: 10,
        headers: {},
        enabled: true,
        tls_verify: true,
      });

      assert.deepEqual(Object.keys(res.body.stats).sort(), ['avg_check_duration_ms', 'healthy_backends', 'last_check_time', 'unhealthy_backends']);
      assert.equal(res.body.stats.healthy_backends, 0);
      assert.equal(res.body.stats.unhealthy_backends, 0);

      const pool = await api.get(`/api/v1/pools/${poolId}`);
      assert.equal(res.headers.get('etag'), pool.headers.get('etag'));
      assert.equal(res.headers.get('etag'), `"${pool.body.version}"`);
    });

    it('fills tls_enabled too, like tls_verify and every other field the stored check always has', async () => {
      // The seed's GET shows tls_enabled next to tls_verify; only port, host_header and the
      // regexes are optional in a stored check.
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const hc = (await api.get(hcPath(poolId))).body.health_check;
      assert.equal(typeof hc.tls_verify, 'boolean');
      assert.equal(typeof hc.tls_enabled, 'boolean', `tls_enabled is missing from ${JSON.stringify(hc)}`);
    });

    it('fills the defaults of a check given with no fields at all', async () => {
      const poolId = await newPool(api, { health_check: {} });
      const res = await api.get(hcPath(poolId));
      assert.equal(res.status, 200);
      const hc = res.body.health_check;
      assert.equal(hc.protocol, 'TCP');
      assert.equal(hc.interval_seconds, 30);
      assert.equal(hc.timeout_seconds, 10);
      assert.equal(hc.healthy_threshold, 2);
      assert.equal(hc.unhealthy_threshold, 3);
      assert.equal(hc.jitter_percent, 10);
      assert.equal(hc.enabled, true);
      assert.deepEqual(hc.headers, {});
    });

    it('a pool without a check returns health_check null', async () => {
      const poolId = await newPool(api);
      const res = await api.get(hcPath(poolId));
      assert.equal(res.status, 200);
      assert.equal(res.body.pool_id, poolId);
      assert.equal(res.body.health_check, null);
      assert.equal(typeof res.body.stats, 'object');
      assert.notEqual(res.body.stats, null);
    });

    it("stats count the pool's healthy and unhealthy backends", async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const b = await api.post(`/api/v1/pools/${poolId}/backends`, { name: `hc stats ${poolId} ${i}`, ip_address: '127.0.0.1', port: 7000 + i });
        assert.equal(b.status, 201, JSON.stringify(b.body));
        ids.push(b.body.server_id);
      }
      // Stands in for the active health checker, which does not exist yet in this release: it
      // would record these results in the same runtime state. The third backend stays unchecked.
      t.fulcrum.state.setHealth(ids[0]!, 'HEALTHY', Date.now());
      t.fulcrum.state.setHealth(ids[1]!, 'UNHEALTHY', Date.now());

      const res = await api.get(hcPath(poolId));
      assert.equal(res.body.stats.healthy_backends, 1);
      assert.equal(res.body.stats.unhealthy_backends, 1);
    });

    it('an unknown pool → 404 POOL_NOT_FOUND', async () => {
      const err = assertError(await api.get(hcPath('pool-nope')), 404, 'POOL_NOT_FOUND');
      assert.equal(err.details.pool_id, 'pool-nope');
    });
  });

  describe('PUT /api/v1/pools/{pool_id}/health-check', () => {
    it('applies the seed update: 200 with the check, updated_at, message and the slower-detection warning', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const before = await api.get(hcPath(poolId));
      const res = await api.put(hcPath(poolId), SEED_UPDATE);

      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.pool_id, poolId);
      for (const [key, value] of Object.entries(SEED_UPDATE)) {
        assert.deepEqual(res.body.health_check[key], value, `health_check.${key}`);
      }
      assert.equal(res.body.health_check.enabled, true);
      assert.equal(res.body.health_check.jitter_percent, 10);
      assert.match(res.body.updated_at, ISO_SECONDS);
      assert.equal(res.body.message, 'Health check updated. New configuration effective immediately.');
      assert.equal(
        res.body.warning,
        'Increasing unhealthy_threshold to 5 and interval_seconds to 10 means backends will take 50s to be marked unhealthy (was 15s).',
      );
      assert.match(res.body.warning, /50s/);

      const beforeVersion = Number(JSON.parse(before.headers.get('etag')!));
      assert.equal(res.headers.get('etag'), `"${beforeVersion + 1}"`);

      const got = await api.get(hcPath(poolId));
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.health_check, res.body.health_check);
      assert.equal(got.headers.get('etag'), `"${beforeVersion + 1}"`);
    });

    it('no warning when detection gets faster, stays the same, or the pool had no check', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      // 3 × 5s = 15s before, 2 × 5s = 10s after.
      const faster = await api.put(hcPath(poolId), { ...SEED_POOL_HEALTH_CHECK, unhealthy_threshold: 2 });
      assert.equal(faster.status, 200, JSON.stringify(faster.body));
      assert.equal('warning' in faster.body, false, JSON.stringify(faster.body));
      // 2 × 5s = 10s before, 1 × 10s = 10s after.
      const same = await api.put(hcPath(poolId), { ...SEED_POOL_HEALTH_CHECK, unhealthy_threshold: 1, interval_seconds: 10 });
      assert.equal(same.status, 200, JSON.stringify(same.body));
      assert.equal('warning' in same.body, false, JSON.stringify(same.body));

      const bare = await newPool(api);
      const first = await api.put(hcPath(bare), SEED_UPDATE);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal('warning' in first.body, false, JSON.stringify(first.body));
      assert.equal((await api.get(hcPath(bare))).body.health_check.path, '/health/deep');
    });

    it('replaces the whole check: fields not given fall back to defaults', async () => {
      const poolId = await newPool(api, { health_check: { ...SEED_POOL_HEALTH_CHECK, expected_body_regex: 'ok' } });
      const res = await api.put(hcPath(poolId), { protocol: 'TCP', interval_seconds: 10, timeout_seconds: 5 });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.health_check.protocol, 'TCP');
      assert.equal(res.body.health_check.path, '/');
      assert.equal('expected_body_regex' in res.body.health_check, false);
      assert.equal('port' in res.body.health_check, false);
      assert.equal(res.body.health_check.unhealthy_threshold, 3);
    });

    it('timeout_seconds greater than interval_seconds → 400 VALIDATION_ERROR naming timeout_seconds', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const before = await api.get(hcPath(poolId));
      const res = await api.put(hcPath(poolId), { ...SEED_UPDATE, interval_seconds: 5, timeout_seconds: 10 });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      // The PUT body is the check itself, so the field is named as the body names it.
      assert.deepEqual(fieldsOf(err), ['timeout_seconds']);

      const after = await api.get(hcPath(poolId));
      assert.deepEqual(after.body.health_check, before.body.health_check, 'a refused PUT changes nothing');
      assert.equal(after.headers.get('etag'), before.headers.get('etag'));
    });

    it('an invalid expected_body_regex → 400 VALIDATION_ERROR naming it', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const res = await api.put(hcPath(poolId), { ...SEED_UPDATE, expected_body_regex: '([' });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(err), ['expected_body_regex']);
      assert.equal((await api.get(hcPath(poolId))).body.health_check.path, '/health');
    });

    it('an unknown protocol → 400 VALIDATION_ERROR naming protocol', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const res = await api.put(hcPath(poolId), { ...SEED_UPDATE, protocol: 'SMTP' });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(err), ['protocol']);
    });

    it('an unknown field → 400 VALIDATION_ERROR naming it', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const res = await api.put(hcPath(poolId), { ...SEED_UPDATE, intervall_seconds: 10 });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      assert.ok(fieldsOf(err).includes('intervall_seconds'), JSON.stringify(err.details));
      assert.match(err.message, /intervall_seconds/);
    });

    it('If-Match: the current version passes, a stale one → 409 VERSION_CONFLICT', async () => {
      const poolId = await newPool(api, { health_check: SEED_POOL_HEALTH_CHECK });
      const etag = (await api.get(hcPath(poolId))).headers.get('etag')!;

      const ok = await api.put(hcPath(poolId), SEED_UPDATE, { 'if-match': etag });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.notEqual(ok.headers.get('etag'), etag);

      const stale = await api.put(hcPath(poolId), { ...SEED_UPDATE, path: '/stale' }, { 'if-match': etag });
      assertError(stale, 409, 'VERSION_CONFLICT');
      assert.equal((await api.get(hcPath(poolId))).body.health_check.path, '/health/deep', 'the stale write did not apply');

      assertError(await api.put(hcPath(poolId), SEED_UPDATE, { 'if-match': 'yesterday' }), 400, 'INVALID_PARAMETER');
    });

    it('an unknown pool → 404 POOL_NOT_FOUND', async () => {
      const err = assertError(await api.put(hcPath('pool-nope'), SEED_UPDATE), 404, 'POOL_NOT_FOUND');
      assert.equal(err.details.pool_id, 'pool-nope');
    });
  });

  describe('durability', () => {
    it('a PUT survives a restart on the same data dir', async () => {
      const dir = tempDir();
      let first: TestFulcrum | undefined;
      let second: TestFulcrum | undefined;
      try {
        first = await startTestFulcrum({ dataDir: dir.path });
        const poolId = await newPool(first.api, { health_check: SEED_POOL_HEALTH_CHECK });
        const put = await first.api.put(hcPath(poolId), SEED_UPDATE);
        assert.equal(put.status, 200, JSON.stringify(put.body));
        const before = await first.api.get(hcPath(poolId));
        await first.fulcrum.stop();

        second = await startTestFulcrum({ dataDir: dir.path });
        const after = await second.api.get(hcPath(poolId));
        assert.equal(after.status, 200, JSON.stringify(after.body));
        assert.deepEqual(after.body.health_check, put.body.health_check);
        assert.deepEqual(after.body.health_check, before.body.health_check);
        assert.equal(after.headers.get('etag'), put.headers.get('etag'));
        assert.equal(after.body.version, before.body.version);
      } finally {
        await first?.close();
        await second?.close();
        dir.remove();
      }
    });
  });
});
