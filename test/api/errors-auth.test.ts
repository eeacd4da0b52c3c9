import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiClient, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { PoolCreate } from '../../src/model/pool.ts';
import { assertErrorBody } from '../helpers/assertions.ts';

describe('authentication', () => {
  let t: TestFulcrum;
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  it('401 AUTHENTICATION_REQUIRED without a token, with a wrong token, and with a non-bearer scheme', async () => {
    const anonymous = new ApiClient(t.api.base, null);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token-000000000' }, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }]) {
      for (const path of ['/api/v1/pools', '/api/v1/load-balancers', '/api/v1/openapi.json', '/api/v1/no-such-route']) {
        const res = await anonymous.get(path, headers);
        assert.equal(res.status, 401, `${path} ${JSON.stringify(headers)}`);
        assertErrorBody(res.body, 'AUTHENTICATION_REQUIRED');
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="fulcrum"');
      }
    }
    const write = await anonymous.post('/api/v1/pools', { name: 'sneaky' });
    assert.equal(write.status, 401);
    assert.equal((await t.api.get('/api/v1/pools')).body.pagination.total, 0, 'an unauthenticated write changes nothing');
  });

  it('/health and /ready need no token', async () => {
    const anonymous = new ApiClient(t.api.base, null);
    assert.deepEqual((await anonymous.get('/health')).body, { status: 'ok' });
    assert.equal((await anonymous.get('/ready')).status, 200);
  });

  it('stores only a hash of the admin token', async () => {
    const keys = await t.fulcrum.store.listApiKeys();
    assert.equal(keys.length, 1);
    assert.notEqual(keys[0]!.token_hash, 'test-admin-token-0123456789');
    assert.match(keys[0]!.token_hash, /^[0-9a-f]{64}$/);
  });
});

describe('request errors', () => {
  let t: TestFulcrum;
  before(async () => {
    t = await startTestFulcrum({ apiBodyLimitBytes: 4096 });
  });
  after(() => t.close());

  it('400 MALFORMED_JSON for a body that is not JSON or tries prototype poisoning', async () => {
    for (const body of ['{"name":', '[1,2', 'nul', '{"name":"x","__proto__":{"admin":true}}']) {
      const res = await t.api.post('/api/v1/pools', body);
      assert.equal(res.status, 400, body);
      assertErrorBody(res.body, 'MALFORMED_JSON');
    }
  });

  it('an empty body with a JSON content type counts as no body', async () => {
    const empty = await t.api.request('POST', '/api/v1/pools', '', { 'content-type': 'application/json' });
    assert.equal(empty.status, 400);
    assertErrorBody(empty.body, 'VALIDATION_ERROR');
    assert.deepEqual(empty.body.error.details.fields, [{ field: 'name', reason: 'is required' }]);
    const { body: pool } = await t.api.post('/api/v1/pools', { name: 'del' });
    const del = await t.api.request('DELETE', `/api/v1/pools/${pool.pool_id}`, '', { 'content-type': 'application/json' });
    assert.equal(del.status, 200);
  });

  it('an id of up to 128 characters that does not exist is a clean 404; longer ones are 400', async () => {
    const res = await t.api.get(`/api/v1/pools/pool-${'x'.repeat(120)}`);
    assert.equal(res.status, 404);
    assertErrorBody(res.body, 'POOL_NOT_FOUND');
    for (const length of [200, 1000]) {
      const long = await t.api.get(`/api/v1/pools/pool-${'x'.repeat(length)}`);
      assert.equal(long.status, 400, `${length} characters`);
      assertErrorBody(long.body, 'INVALID_PARAMETER');
    }
  });

  it('415 UNSUPPORTED_MEDIA_TYPE for a body that is not application/json', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await t.api.post('/api/v1/pools', 'name=x', { 'content-type': type });
      assert.equal(res.status, 415, type);
      assertErrorBody(res.body, 'UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it('413 PAYLOAD_TOO_LARGE for a body over the limit', async () => {
    const res = await t.api.post('/api/v1/pools', { name: 'big', description: 'x'.repeat(8000) });
    assert.equal(res.status, 413);
    assertErrorBody(res.body, 'PAYLOAD_TOO_LARGE');
    assert.equal(res.body.error.details.limit_bytes, 4096);
  });

  it('400 VALIDATION_ERROR names every bad field at once, unknown and nested ones included', async () => {
    const res = await t.api.post('/api/v1/pools', {
      algorithm: 'FASTEST',
      colour: 'red',
      health_check: { interval_seconds: 0, protocl: 'HTTP' },
      retries: '2',
    });
    assert.equal(res.status, 400);
    assertErrorBody(res.body, 'VALIDATION_ERROR');
    const fields = res.body.error.details.fields as { field: string; reason: string }[];
    const byField = Object.fromEntries(fields.map((f) => [f.field, f.reason]));
    assert.equal(byField.name, 'is required');
    assert.equal(byField.colour, 'unknown field');
    assert.equal(byField['health_check.protocl'], 'unknown field');
    assert.match(byField['health_check.interval_seconds']!, />= 1/);
    assert.match(byField.algorithm!, /must be one of ROUND_ROBIN/);
    assert.equal(byField.retries, 'must be integer', 'no silent coercion of body types');
    for (const f of ['name', 'colour', 'algorithm']) assert.match(res.body.error.message, new RegExp(f));
  });

  it('400 for a JSON body that is not an object, and for a PATCH with nothing in it', async () => {
    const arr = await t.api.post('/api/v1/pools', [1]);
    assert.equal(arr.status, 400);
    assertErrorBody(arr.body, 'VALIDATION_ERROR');
    const { body: pool } = await t.api.post('/api/v1/pools', { name: 'p' });
    const emptyPatch = await t.api.patch(`/api/v1/pools/${pool.pool_id}`, {});
    assert.equal(emptyPatch.status, 400);
    assert.equal(emptyPatch.body.error.details.fields[0].reason, 'give at least one field to change');
  });

  it('404 NOT_FOUND in the standard body for an unknown route', async () => {
    const res = await t.api.get('/api/v1/widgets');
    assert.equal(res.status, 404);
    assertErrorBody(res.body, 'NOT_FOUND');
  });

  it('carries the request id: honoured from X-Request-ID, returned in the header and error body', async () => {
    const res = await t.api.get('/api/v1/pools/pool-nope', { 'x-request-id': 'trace-42' });
    assert.equal(res.headers.get('x-request-id'), 'trace-42');
    assert.equal(res.body.error.request_id, 'trace-42');
    const generated = await t.api.get('/api/v1/pools/pool-nope');
    assert.match(generated.headers.get('x-request-id')!, /^req-[0-9a-f-]{36}$/);
    assert.equal(generated.body.error.request_id, generated.headers.get('x-request-id'));
  });
});

describe('shutdown', () => {
  it('a request that arrives after shutdown began gets 503 SERVICE_UNAVAILABLE and Connection: close', async () => {
    const t = await startTestFulcrum();
    const stopping = t.close();
    // inject() reaches the router without a socket: a client on an already-open keep-alive
    // connection would be answered the same way.
    const res = await t.fulcrum.api.inject({ method: 'GET', url: '/api/v1/pools', headers: { authorization: 'Bearer test-admin-token-0123456789' } });
    await stopping;
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers.connection, 'close');
    assertErrorBody(JSON.parse(res.body), 'SERVICE_UNAVAILABLE');
  });
});

describe('OpenAPI document', () => {
  let t: TestFulcrum;
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  it('is OpenAPI 3.1, lists every native route, and uses the validating schemas', async () => {
    const res = await t.api.get('/api/v1/openapi.json');
    assert.equal(res.status, 200);
    const doc = res.body;
    assert.equal(doc.openapi, '3.1.0');
    const expected: Record<string, string[]> = {
      '/api/v1/pools': ['get', 'post'],
      '/api/v1/pools/{pool_id}': ['delete', 'get', 'patch'],
      '/api/v1/pools/{pool_id}/algorithm': ['put'],
      '/api/v1/pools/{pool_id}/health-check': ['get', 'put'],
      '/api/v1/pools/{pool_id}/backends': ['get', 'post'],
      '/api/v1/pools/{pool_id}/backends/{server_id}': ['delete', 'get', 'patch'],
      '/api/v1/pools/{pool_id}/backends/{server_id}/drain': ['post'],
      '/api/v1/load-balancers': ['get', 'post'],
      '/api/v1/load-balancers/{lb_id}': ['delete', 'get', 'patch'],
      '/api/v1/load-balancers/{lb_id}/listeners': ['get', 'post'],
      '/api/v1/load-balancers/{lb_id}/listeners/{listener_id}': ['delete', 'get', 'patch'],
    };
    for (const [path, methods] of Object.entries(expected)) {
      assert.ok(doc.paths[path], `missing ${path}`);
      assert.deepEqual(Object.keys(doc.paths[path]).sort(), methods, path);
    }
    const create = doc.paths['/api/v1/pools'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(create.required, PoolCreate.required);
    assert.equal(create.additionalProperties, false);
    assert.deepEqual(Object.keys(create.properties).sort(), Object.keys(PoolCreate.properties).sort());
  });
});
