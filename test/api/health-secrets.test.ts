/**
 * Probe secrets (redis_password, ldap_password) are write-only: every API answer shows them as
 * REDACTED, and writing REDACTED back keeps the stored secret.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

let t: TestFulcrum;
before(async () => {
  t = await startTestFulcrum();
});
after(() => t.close());

describe('health-check secrets', () => {
  it('are never returned, and a read-modify-write keeps them', async () => {
    const check = { protocol: 'REDIS', redis_password: 's3cret-pw', interval_seconds: 30 };
    const created = await t.api.post('/api/v1/pools', { name: 'cache', health_check: check });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.pool_id;
    for (const body of [created.body.health_check, (await t.api.get(`/api/v1/pools/${id}`)).body.health_check, (await t.api.get(`/api/v1/pools/${id}/health-check`)).body.health_check]) {
      assert.equal(body.redis_password, '********');
    }
    assert.ok(!JSON.stringify((await t.api.get('/api/v1/pools')).body).includes('s3cret-pw'));

    const shown = (await t.api.get(`/api/v1/pools/${id}/health-check`)).body.health_check;
    const put = await t.api.put(`/api/v1/pools/${id}/health-check`, { ...shown, interval_seconds: 20 });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.health_check.redis_password, '********');
    const stored = await t.fulcrum.store.get<{ health_check: { redis_password: string; interval_seconds: number } }>('pool', id);
    assert.equal(stored!.body.health_check.redis_password, 's3cret-pw', 'the stored secret survived the round trip');
    assert.equal(stored!.body.health_check.interval_seconds, 20);

    const backend = await t.api.post(`/api/v1/pools/${id}/backends`, { ip_address: '127.0.0.1', port: 6390, health_check: { ldap_password: 'other-secret' } });
    assert.equal(backend.status, 201, JSON.stringify(backend.body));
    assert.equal(backend.body.health_check.ldap_password, '********');
    assert.ok(!JSON.stringify((await t.api.get(`/api/v1/pools/${id}/backends`)).body).includes('other-secret'));
  });
});
