import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

/** Resolves with the HTTP status a GET to the listener gets, or the connect error code. */
async function probe(port: number): Promise<number | string> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    await res.text();
    return res.status;
  } catch (err) {
    return ((err as { cause?: { code?: string } }).cause?.code) ?? 'ERROR';
  }
}

describe('load balancers and listeners API', () => {
  let t: TestFulcrum;
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  async function lb(name: string) {
    const res = await t.api.post('/api/v1/load-balancers', { name, description: 'edge', tags: { env: 'test' } });
    assert.equal(res.status, 201);
    return res.body.lb_id as string;
  }

  it('creates, reads, lists, patches and refuses duplicate names in a scope', async () => {
    const res = await t.api.post('/api/v1/load-balancers', { name: 'Public Edge', tags: { team: 'net' }, org_id: 'acme' });
    assert.equal(res.status, 201);
    assert.equal(res.body.lb_id, 'lb-public-edge');
    assert.equal(res.body.status, 'ACTIVE');
    assert.equal(res.body.org_id, 'acme');
    assert.deepEqual(res.body.listener_ids, []);
    assert.deepEqual((await t.api.get('/api/v1/load-balancers/lb-public-edge')).body, res.body);
    const dup = await t.api.post('/api/v1/load-balancers', { name: 'Public Edge', org_id: 'acme' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, 'DUPLICATE_NAME');
    const patched = await t.api.patch('/api/v1/load-balancers/lb-public-edge', { description: 'the edge', version: 1 });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.description, 'the edge');
    assert.equal(patched.body.version, 2);
    const list = await t.api.get('/api/v1/load-balancers');
    assert.ok(list.body.load_balancers.some((l: { lb_id: string }) => l.lb_id === 'lb-public-edge'));
    assert.equal(list.body.pagination.page, 1);
    const missing = await t.api.get('/api/v1/load-balancers/lb-nope');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'LOAD_BALANCER_NOT_FOUND');
  });

  it('an HTTP listener binds on create, moves on port change, and unbinds on disable and delete', async () => {
    const lbId = await lb('binding');
    const { body: pool } = await t.api.post('/api/v1/pools', { name: 'web pool' });
    const port = await freePort();
    const created = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
      name: 'web', protocol: 'HTTP', bind_address: '127.0.0.1', port, default_pool_id: pool.pool_id,
    });
    assert.equal(created.status, 201);
    const l = created.body;
    assert.equal(l.listener_id, 'listener-web');
    assert.equal(l.status, 'ACTIVE');
    assert.deepEqual(l.timeouts, { client_ms: 60000, backend_ms: 60000, connect_ms: 5000, idle_ms: 60000 });
    assert.equal(l.connection_limit, null);
    assert.equal(l.enabled, true);
    // Bound and answering (no forwarding yet, so no backend is usable).
    assert.equal(await probe(port), 503);
    assert.deepEqual((await t.api.get(`/api/v1/load-balancers/${lbId}`)).body.listener_ids, ['listener-web']);

    const newPort = await freePort();
    const moved = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${l.listener_id}`, { port: newPort, timeouts: { backend_ms: 1000 } });
    assert.equal(moved.status, 200);
    assert.equal(moved.body.timeouts.backend_ms, 1000);
    assert.equal(moved.body.timeouts.client_ms, 60000);
    assert.equal(await probe(newPort), 503);
    assert.equal(await probe(port), 'ECONNREFUSED');

    const disabled = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${l.listener_id}`, { enabled: false });
    assert.equal(disabled.body.status, 'DISABLED');
    assert.equal(await probe(newPort), 'ECONNREFUSED');
    assert.equal((await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${l.listener_id}`, { enabled: true })).body.status, 'ACTIVE');
    assert.equal(await probe(newPort), 503);

    const deleted = await t.api.delete(`/api/v1/load-balancers/${lbId}/listeners/${l.listener_id}`);
    assert.equal(deleted.status, 200);
    assert.equal(await probe(newPort), 'ECONNREFUSED');
    const gone = await t.api.get(`/api/v1/load-balancers/${lbId}/listeners/${l.listener_id}`);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'LISTENER_NOT_FOUND');
    assert.deepEqual((await t.api.get(`/api/v1/load-balancers/${lbId}/listeners`)).body.listeners, []);
  });

  it('409 LISTENER_PORT_CONFLICT for the same address and port, a wildcard overlap, or the API address', async () => {
    const lbA = await lb('conflict a');
    const lbB = await lb('conflict b');
    const port = await freePort();
    assert.equal((await t.api.post(`/api/v1/load-balancers/${lbA}/listeners`, { name: 'a', protocol: 'HTTP', bind_address: '127.0.0.1', port })).status, 201);
    const same = await t.api.post(`/api/v1/load-balancers/${lbB}/listeners`, { name: 'b', protocol: 'HTTP', bind_address: '127.0.0.1', port });
    assert.equal(same.status, 409);
    assert.equal(same.body.error.code, 'LISTENER_PORT_CONFLICT');
    assert.equal(same.body.error.details.conflicting_listener_id, 'listener-a');
    // 0.0.0.0 is every IPv4 address: it collides without binding anything.
    const wildcard = await t.api.post(`/api/v1/load-balancers/${lbB}/listeners`, { name: 'w', protocol: 'HTTP', port });
    assert.equal(wildcard.status, 409);
    const api = await t.api.post(`/api/v1/load-balancers/${lbB}/listeners`, {
      name: 'api', protocol: 'HTTP', bind_address: '127.0.0.1', port: t.fulcrum.apiAddress.port,
    });
    assert.equal(api.status, 409);
    assert.match(api.body.error.message, /management API/);
  });

  it('a port the OS refuses is an error that says so, and nothing is stored', async () => {
    const lbId = await lb('os refuses');
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
    const port = (squatter.address() as { port: number }).port;
    try {
      const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, { name: 'taken', protocol: 'HTTP', bind_address: '127.0.0.1', port });
      assert.equal(res.status, 422);
      assert.equal(res.body.error.code, 'LISTENER_BIND_FAILED');
      assert.match(res.body.error.message, /already in use/);
      assert.equal(res.body.error.details.os_error, 'EADDRINUSE');
      assert.deepEqual((await t.api.get(`/api/v1/load-balancers/${lbId}/listeners`)).body.listeners, []);
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });

  it('refuses a protocol Fulcrum does not know', async () => {
    const lbId = await lb('protocols');
    const bogus = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, { name: 'x', protocol: 'QUIC', port: 1 });
    assert.equal(bogus.status, 400);
    assert.equal(bogus.body.error.details.fields[0].field, 'protocol');
  });

  it('validates listener fields and references', async () => {
    const lbId = await lb('validation');
    const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, { name: 'v', protocol: 'HTTP', port: 70000, timeouts: { client_ms: 0 }, extra: true });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.error.details.fields.map((f: { field: string }) => f.field).sort(), ['extra', 'port', 'timeouts.client_ms']);
    const badAddr = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, { name: 'v', protocol: 'HTTP', bind_address: 'localhost', port: await freePort() });
    assert.equal(badAddr.status, 400);
    assert.equal(badAddr.body.error.details.fields[0].field, 'bind_address');
    const noPool = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
      name: 'v', protocol: 'HTTP', bind_address: '127.0.0.1', port: await freePort(), default_pool_id: 'pool-missing',
    });
    assert.equal(noPool.status, 404);
    assert.equal(noPool.body.error.code, 'POOL_NOT_FOUND');
    const noLb = await t.api.post('/api/v1/load-balancers/lb-missing/listeners', { name: 'v', protocol: 'HTTP', port: 1 });
    assert.equal(noLb.status, 404);
    assert.equal(noLb.body.error.code, 'LOAD_BALANCER_NOT_FOUND');
  });

  it('a pool used as a default pool cannot be deleted; deleting the LB removes its listeners and owned pools', async () => {
    const lbId = await lb('cascade');
    const owned = await t.api.post('/api/v1/pools', { name: 'owned', load_balancer_id: lbId });
    assert.equal(owned.status, 201);
    assert.equal(owned.body.load_balancer_id, lbId);
    await t.api.post(`/api/v1/pools/${owned.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: 9100 });
    const port = await freePort();
    await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
      name: 'cascade', protocol: 'HTTP', bind_address: '127.0.0.1', port, default_pool_id: owned.body.pool_id,
    });
    const inUse = await t.api.delete(`/api/v1/pools/${owned.body.pool_id}?force=true`);
    assert.equal(inUse.status, 409);
    assert.equal(inUse.body.error.code, 'POOL_IN_USE');
    assert.equal(await probe(port), 502, 'the listener forwards; nothing listens at its backend');
    const del = await t.api.delete(`/api/v1/load-balancers/${lbId}`);
    assert.equal(del.status, 200);
    assert.equal(del.body.listeners_removed, 1);
    assert.equal(del.body.pools_removed, 1);
    assert.equal(await probe(port), 'ECONNREFUSED');
    assert.equal((await t.api.get(`/api/v1/pools/${owned.body.pool_id}`)).status, 404);
    assert.equal((await t.api.get(`/api/v1/load-balancers/${lbId}`)).status, 404);
  });

  it('a rename may not take another load balancer\'s name in the same scope', async () => {
    await lb('rename target');
    const other = await lb('rename source');
    const res = await t.api.patch(`/api/v1/load-balancers/${other}`, { name: 'rename target' });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'DUPLICATE_NAME');
    assert.equal((await t.api.get(`/api/v1/load-balancers/${other}`)).body.name, 'rename source');
    assert.equal((await t.api.patch(`/api/v1/load-balancers/${other}`, { name: 'rename source' })).status, 200, 'keeping its own name is fine');
  });

  it('deleting a load balancer refuses while its backends hold connections, unless forced', async () => {
    const lbId = await lb('busy');
    const { body: pool } = await t.api.post('/api/v1/pools', { name: 'busy pool', load_balancer_id: lbId });
    const { body: backend } = await t.api.post(`/api/v1/pools/${pool.pool_id}/backends`, { ip_address: '127.0.0.1', port: 9200 });
    // Stands in for a connection the data plane would hold: the forwarding path does not exist yet.
    let closed = 0;
    t.fulcrum.state.track(backend.server_id, () => closed++);
    const refused = await t.api.delete(`/api/v1/load-balancers/${lbId}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'BACKEND_HAS_CONNECTIONS');
    assert.deepEqual(refused.body.error.details.server_ids, [backend.server_id]);
    assert.equal((await t.api.get(`/api/v1/pools/${pool.pool_id}`)).status, 200, 'nothing was deleted');
    const forced = await t.api.delete(`/api/v1/load-balancers/${lbId}?force=true`);
    assert.equal(forced.status, 200);
    assert.equal(forced.body.backends_removed, 1);
    assert.equal(forced.body.connections_terminated, 1);
    assert.equal(closed, 1);
  });

  it('/ready reports every enabled listener bound', async () => {
    const ready = await fetch(`${t.api.base}/ready`);
    const body = (await ready.json()) as { status: string; checks: { store: string; listeners: { bound: number; expected: number } } };
    assert.equal(ready.status, 200);
    assert.equal(body.status, 'ready');
    assert.equal(body.checks.store, 'ok');
    assert.equal(body.checks.listeners.bound, body.checks.listeners.expected);
  });
});
