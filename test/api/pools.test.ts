import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

/** The create request of seed 000 §2, verbatim. */
const SEED_POOL = {
  name: 'API Production Pool',
  algorithm: 'LEAST_CONNECTIONS',
  algorithm_config: { weighted: true, power_of_two_choices: true, slow_start_duration_seconds: 30 },
  health_check: {
    protocol: 'HTTP', path: '/health', port: 8080, interval_seconds: 5, timeout_seconds: 2,
    unhealthy_threshold: 3, healthy_threshold: 2, expected_status_codes: [200],
  },
  session_persistence: { enabled: true, type: 'COOKIE', cookie_name: 'SERVERID', ttl_seconds: 3600 },
  connection_limits: { max_connections_per_backend: 10000, connection_timeout_ms: 5000, idle_timeout_seconds: 300 },
  circuit_breaker: { enabled: true, error_threshold_percent: 50, evaluation_window_seconds: 30, recovery_timeout_seconds: 60 },
};

describe('pools API', () => {
  let t: TestFulcrum;
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  it("creates the seed's pool: 201, readable id, every request field stored and returned", async () => {
    const res = await t.api.post('/api/v1/pools', SEED_POOL);
    assert.equal(res.status, 201);
    const p = res.body;
    assert.equal(p.pool_id, 'pool-api-production');
    assert.equal(p.status, 'UNAVAILABLE', 'no backends yet: it would answer 503');
    assert.match(p.status_message, /no backends/);
    assert.equal(p.backend_count, 0);
    assert.match(p.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(p.version, 1);
    assert.equal(res.headers.get('etag'), '"1"');
    assert.equal(p.org_id, 'default');
    assert.equal(p.project_id, 'default');
    for (const key of ['name', 'algorithm', 'algorithm_config'] as const) assert.deepEqual(p[key], SEED_POOL[key]);
    for (const key of ['health_check', 'session_persistence', 'connection_limits', 'circuit_breaker'] as const) {
      for (const [k, v] of Object.entries(SEED_POOL[key])) assert.deepEqual(p[key][k], v, `${key}.${k}`);
    }
    const again = await t.api.get('/api/v1/pools/pool-api-production');
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, p);
  });

  it('gives a second pool of the same name a short suffix', async () => {
    const res = await t.api.post('/api/v1/pools', { name: 'API Production Pool' });
    assert.equal(res.status, 201);
    assert.match(res.body.pool_id, /^pool-api-production-[a-z0-9]{5}$/);
    assert.equal(res.body.algorithm, 'ROUND_ROBIN');
    assert.equal(res.body.retries, 2);
    assert.equal(res.body.health_check, null);
  });

  it('keeps a tenant scope when given', async () => {
    const res = await t.api.post('/api/v1/pools', { name: 'scoped', org_id: 'acme', project_id: 'shop' });
    assert.equal(res.status, 201);
    assert.equal(res.body.org_id, 'acme');
    assert.equal(res.body.project_id, 'shop');
  });

  it('lists pools in pages with a pagination block; past the end is empty, not 404', async () => {
    for (let i = 0; i < 3; i++) await t.api.post('/api/v1/pools', { name: `page pool ${i}` });
    const all = await t.api.get('/api/v1/pools?per_page=500');
    const total = all.body.pagination.total;
    assert.ok(total >= 3);
    const page = await t.api.get('/api/v1/pools?page=2&per_page=2');
    assert.equal(page.status, 200);
    assert.deepEqual(page.body.pagination, { page: 2, per_page: 2, total, total_pages: Math.ceil(total / 2) });
    assert.deepEqual(page.body.pools.map((p: { pool_id: string }) => p.pool_id), all.body.pools.slice(2, 4).map((p: { pool_id: string }) => p.pool_id));
    const beyond = await t.api.get('/api/v1/pools?page=999');
    assert.equal(beyond.status, 200);
    assert.deepEqual(beyond.body.pools, []);
    const bad = await t.api.get('/api/v1/pools?per_page=0');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'INVALID_PARAMETER');
    assert.equal(bad.body.error.details.fields[0].field, 'per_page');
  });

  it('PATCH merges nested objects, bumps the version and honours If-Match', async () => {
    const { body: p } = await t.api.post('/api/v1/pools', { ...SEED_POOL, name: 'patch me' });
    const res = await t.api.patch(`/api/v1/pools/${p.pool_id}`, { circuit_breaker: { error_threshold_percent: 25 }, retries: 1 }, { 'if-match': '"1"' });
    assert.equal(res.status, 200);
    assert.equal(res.body.version, 2);
    assert.equal(res.body.retries, 1);
    assert.equal(res.body.circuit_breaker.error_threshold_percent, 25);
    assert.equal(res.body.circuit_breaker.evaluation_window_seconds, 30, 'untouched nested fields stay');
    const stale = await t.api.patch(`/api/v1/pools/${p.pool_id}`, { retries: 3 }, { 'if-match': '"1"' });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error.code, 'VERSION_CONFLICT');
    assert.equal(stale.body.error.details.current_version, 2);
    const staleField = await t.api.patch(`/api/v1/pools/${p.pool_id}`, { retries: 3, version: 1 });
    assert.equal(staleField.status, 409);
    const ok = await t.api.patch(`/api/v1/pools/${p.pool_id}`, { retries: 3, version: 2 });
    assert.equal(ok.status, 200);
    const removeCheck = await t.api.patch(`/api/v1/pools/${p.pool_id}`, { health_check: null });
    assert.equal(removeCheck.body.health_check, null);
  });

  it("PUT /algorithm answers with the seed's previous_algorithm", async () => {
    const { body: p } = await t.api.post('/api/v1/pools', { ...SEED_POOL, name: 'algo' });
    const res = await t.api.put(`/api/v1/pools/${p.pool_id}/algorithm`, {
      algorithm: 'WEIGHTED_ROUND_ROBIN',
      algorithm_config: { weighted: true, slow_start_duration_seconds: 60 },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.pool_id, p.pool_id);
    assert.equal(res.body.algorithm, 'WEIGHTED_ROUND_ROBIN');
    assert.equal(res.body.previous_algorithm, 'LEAST_CONNECTIONS');
    assert.match(res.body.updated_at, /Z$/);
    assert.equal(res.body.message, 'Algorithm change applied. Traffic distribution will adjust gradually.');
    assert.equal((await t.api.get(`/api/v1/pools/${p.pool_id}`)).body.algorithm_config.slow_start_duration_seconds, 60);
    const bad = await t.api.put(`/api/v1/pools/${p.pool_id}/algorithm`, { algorithm: 'FASTEST' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.details.fields[0].field, 'algorithm');
  });

  it('refuses what the schema cannot: persistence without a type, hash_key off CONSISTENT_HASH', async () => {
    const res = await t.api.post('/api/v1/pools', {
      name: 'rules',
      session_persistence: { enabled: true },
      algorithm_config: { hash_key: { header: 'X-User' } },
      health_check: { interval_seconds: 2, timeout_seconds: 5 },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'VALIDATION_ERROR');
    assert.deepEqual(
      res.body.error.details.fields.map((f: { field: string }) => f.field).sort(),
      ['algorithm_config.hash_key', 'health_check.timeout_seconds', 'session_persistence.type'],
    );
    const ok = await t.api.post('/api/v1/pools', { name: 'hash', algorithm: 'CONSISTENT_HASH', algorithm_config: { hash_key: { cookie: 'sid' } } });
    assert.equal(ok.status, 201);
  });

  it('DELETE: 409 POOL_NOT_EMPTY while it has backends, force removes them; then 404', async () => {
    const { body: p } = await t.api.post('/api/v1/pools', { name: 'to delete' });
    await t.api.post(`/api/v1/pools/${p.pool_id}/backends`, { ip_address: '127.0.0.1', port: 9001 });
    const refused = await t.api.delete(`/api/v1/pools/${p.pool_id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'POOL_NOT_EMPTY');
    assert.equal(refused.body.error.details.backend_count, 1);
    assert.equal((await t.api.get(`/api/v1/pools/${p.pool_id}`)).body.backend_count, 1, 'nothing was lost');
    const forced = await t.api.delete(`/api/v1/pools/${p.pool_id}?force=true`);
    assert.equal(forced.status, 200);
    assert.equal(forced.body.backends_removed, 1);
    const gone = await t.api.get(`/api/v1/pools/${p.pool_id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'POOL_NOT_FOUND');
    assert.deepEqual(gone.body.error.details, { pool_id: p.pool_id });
    assert.equal((await t.api.delete(`/api/v1/pools/${p.pool_id}`)).status, 404);
  });

  it('every pool route answers 404 POOL_NOT_FOUND for an unknown pool', async () => {
    const calls: [string, string, unknown?][] = [
      ['GET', '/api/v1/pools/pool-nope'],
      ['PATCH', '/api/v1/pools/pool-nope', { retries: 1 }],
      ['DELETE', '/api/v1/pools/pool-nope'],
      ['PUT', '/api/v1/pools/pool-nope/algorithm', { algorithm: 'RANDOM' }],
      ['GET', '/api/v1/pools/pool-nope/health-check'],
      ['PUT', '/api/v1/pools/pool-nope/health-check', { protocol: 'TCP' }],
      ['GET', '/api/v1/pools/pool-nope/backends'],
      ['POST', '/api/v1/pools/pool-nope/backends', { ip_address: '127.0.0.1', port: 1 }],
    ];
    for (const [method, path, body] of calls) {
      const res = await t.api.request(method, path, body);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.body.error.code, 'POOL_NOT_FOUND', `${method} ${path}`);
    }
  });
});
