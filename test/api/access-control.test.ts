import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, fieldsOf } from '../helpers/assertions.ts';
import { CertFactory } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

const ITEM_ID = /^ni-[a-z0-9]{5}$/;

describe('access list and connection throttle API', () => {
  let t: TestFulcrum;
  let lbId: string;
  before(async () => {
    t = await startTestFulcrum();
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'access control' });
    assert.equal(lb.status, 201);
    lbId = lb.body.lb_id;
  });
  after(() => t.close());

  /** Ports given to this file's listeners: a disabled listener holds no port, but its port is still its own. */
  const used = new Set<number>();
  async function unusedPort(): Promise<number> {
    for (;;) {
      const port = await freePort();
      if (!used.has(port)) {
        used.add(port);
        return port;
      }
    }
  }

  /** A listener of its own for each test; disabled unless asked, so no port is held. */
  async function listener(name: string, fields: Record<string, unknown> = {}) {
    const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
      name, protocol: 'HTTP', bind_address: '127.0.0.1', port: await unusedPort(), enabled: false, ...fields,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id = res.body.listener_id as string;
    const base = `/api/v1/load-balancers/${lbId}/listeners/${id}`;
    return { id, base, acl: `${base}/access-list`, throttle: `${base}/connection-throttle` };
  }

  const versionOf = async (base: string) => (await t.api.get(base)).body.version as number;

  it('GET of an untouched listener: an empty list and no throttle, with the listener version as ETag', async () => {
    const l = await listener('untouched');
    const acl = await t.api.get(l.acl);
    assert.equal(acl.status, 200);
    assert.deepEqual(acl.body, { listener_id: l.id, lb_id: lbId, network_items: [] });
    assert.equal(acl.headers.get('etag'), '"1"');
    const throttle = await t.api.get(l.throttle);
    assert.equal(throttle.status, 200);
    assert.deepEqual(throttle.body, { listener_id: l.id, lb_id: lbId, connection_throttle: null });
    assert.equal(throttle.headers.get('etag'), '"1"');
  });

  it('POST replaces the list with canonical addresses and fresh ids; the listener shows it and stays ACTIVE', async () => {
    const l = await listener('replace', { enabled: true });
    const res = await t.api.post(l.acl, {
      network_items: [
        { address: '0.0.0.0/0', type: 'DENY' },
        { address: '10.0.0.0/8', type: 'ALLOW' },
        { address: '192.0.2.7', type: 'DENY' },
        { address: '2001:DB8::/32', type: 'ALLOW' },
        { address: '::ffff:198.51.100.0/120', type: 'ALLOW' },
      ],
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.listener_id, l.id);
    assert.equal(res.body.lb_id, lbId);
    assert.deepEqual(
      res.body.network_items.map((i: { address: string; type: string }) => [i.address, i.type]),
      [['0.0.0.0/0', 'DENY'], ['10.0.0.0/8', 'ALLOW'], ['192.0.2.7/32', 'DENY'], ['2001:db8::/32', 'ALLOW'], ['198.51.100.0/24', 'ALLOW']],
    );
    for (const item of res.body.network_items) assert.match(item.id, ITEM_ID);
    assert.equal(new Set(res.body.network_items.map((i: { id: string }) => i.id)).size, 5);
    assert.equal(res.headers.get('etag'), '"2"');

    const view = await t.api.get(l.base);
    assert.equal(view.body.version, 2);
    assert.equal(view.body.status, 'ACTIVE');
    assert.deepEqual(view.body.access_list, res.body.network_items);
    assert.deepEqual((await t.api.get(l.acl)).body, res.body);

    const replaced = await t.api.post(l.acl, { network_items: [{ address: '203.0.113.0/24', type: 'DENY' }] });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.network_items.length, 1);
    assert.equal(replaced.body.network_items[0].address, '203.0.113.0/24');
    assert.ok(!res.body.network_items.some((i: { id: string }) => i.id === replaced.body.network_items[0].id), 'old ids are not reused');
    assert.equal(replaced.headers.get('etag'), '"3"');
  });

  it('PUT appends; a network already listed, or repeated in the body, is refused naming the item', async () => {
    const l = await listener('append');
    const first = await t.api.post(l.acl, { network_items: [{ address: '10.0.0.0/8', type: 'DENY' }] });
    const existingId = first.body.network_items[0].id;
    const appended = await t.api.put(l.acl, { network_items: [{ address: '192.0.2.0/24', type: 'ALLOW' }, { address: '::/0', type: 'DENY' }] });
    assert.equal(appended.status, 200);
    assert.deepEqual(appended.body.network_items.map((i: { address: string }) => i.address), ['10.0.0.0/8', '192.0.2.0/24', '::/0']);
    assert.equal(appended.body.network_items[0].id, existingId, 'existing items keep their ids');
    assert.equal(appended.headers.get('etag'), '"3"');

    const version = await versionOf(l.base);
    // The same network whatever the type or spelling: 10.0.0.0/8 is there as DENY.
    const dupExisting = assertError(await t.api.put(l.acl, { network_items: [{ address: '10.0.0.0/8', type: 'ALLOW' }] }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(dupExisting), ['network_items[0].address']);
    assert.match(dupExisting.details.fields[0].reason, new RegExp(`already in the access list as item ${existingId}`));
    const dupBody = assertError(
      await t.api.put(l.acl, { network_items: [{ address: '198.51.100.7', type: 'DENY' }, { address: '198.51.100.7/32', type: 'ALLOW' }] }),
      400,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(fieldsOf(dupBody), ['network_items[1].address']);
    assert.match(dupBody.details.fields[0].reason, /network_items\[0\]/);
    const dupPost = assertError(
      await t.api.post(l.acl, { network_items: [{ address: '2001:db8::/32', type: 'DENY' }, { address: '2001:0db8:0::/32', type: 'DENY' }] }),
      400,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(fieldsOf(dupPost), ['network_items[1].address']);
    assert.equal(await versionOf(l.base), version, 'nothing written');
    assert.equal((await t.api.get(l.acl)).body.network_items.length, 3);
  });

  it('refuses unparsable addresses, host bits and schema errors, every problem at once, writing nothing', async () => {
    const l = await listener('refusals');
    await t.api.post(l.acl, { network_items: [{ address: '10.0.0.0/8', type: 'DENY' }] });
    const before = await t.api.get(l.acl);
    for (const method of ['post', 'put'] as const) {
      const err = assertError(
        await t.api[method](l.acl, {
          network_items: [
            { address: 'not-an-ip', type: 'DENY' },
            { address: '192.0.2.0/24', type: 'ALLOW' },
            { address: '10.1.2.3/8', type: 'DENY' },
            { address: '192.0.2.0/33', type: 'DENY' },
            { address: '::ffff:1.2.3.4/64', type: 'DENY' },
          ],
        }),
        400,
        'VALIDATION_ERROR',
      );
      assert.deepEqual(fieldsOf(err), ['network_items[0].address', 'network_items[2].address', 'network_items[3].address', 'network_items[4].address'], method);
      assert.match(err.details.fields[1].reason, /host bits set: the network is 10\.0\.0\.0\/8/);
      const schema = assertError(await t.api[method](l.acl, { network_items: [{ address: '10.9.0.0/16', type: 'MAYBE', port: 80 }] }), 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(schema).sort(), ['network_items.0.port', 'network_items.0.type']);
      assert.deepEqual(fieldsOf(assertError(await t.api[method](l.acl, { network_items: [] }), 400, 'VALIDATION_ERROR')), ['network_items']);
      assert.deepEqual(fieldsOf(assertError(await t.api[method](l.acl, {}), 400, 'VALIDATION_ERROR')), ['network_items']);
    }
    const now = await t.api.get(l.acl);
    assert.deepEqual(now.body, before.body);
    assert.equal(now.headers.get('etag'), before.headers.get('etag'));
  });

  it('holds at most 10,000 items: POST of more is refused, and a PUT may not pass the total', async () => {
    const l = await listener('limits');
    const items = (n: number, third: number) => Array.from({ length: n }, (_, i) => ({ address: `10.${third}.${i >> 8}.${i & 255}`, type: 'DENY' }));
    const tooMany = [...items(10_000, 0), { address: '192.0.2.1', type: 'DENY' }];
    assert.deepEqual(fieldsOf(assertError(await t.api.post(l.acl, { network_items: tooMany }), 400, 'VALIDATION_ERROR')), ['network_items']);
    const full = await t.api.post(l.acl, { network_items: [...items(9_999, 0)] });
    assert.equal(full.status, 200);
    assert.equal(full.body.network_items.length, 9_999);
    const over = assertError(await t.api.put(l.acl, { network_items: items(2, 1) }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(over), ['network_items']);
    assert.match(over.details.fields[0].reason, /10001 items .*at most 10000/);
    const last = await t.api.put(l.acl, { network_items: items(1, 1) });
    assert.equal(last.status, 200);
    assert.equal(last.body.network_items.length, 10_000);
  });

  it('DELETE of one item, then of the whole list; an unknown item is 404 NETWORK_ITEM_NOT_FOUND', async () => {
    const l = await listener('deletes');
    const { body } = await t.api.post(l.acl, {
      network_items: [{ address: '10.0.0.0/8', type: 'DENY' }, { address: '192.0.2.0/24', type: 'DENY' }, { address: '2001:db8::/32', type: 'DENY' }],
    });
    const [a, b, c] = body.network_items;
    const one = await t.api.delete(`${l.acl}/${b.id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, { id: b.id, status: 'DELETED' });
    assert.equal(one.headers.get('etag'), '"3"');
    assert.deepEqual((await t.api.get(l.acl)).body.network_items, [a, c]);

    const gone = assertError(await t.api.delete(`${l.acl}/${b.id}`), 404, 'NETWORK_ITEM_NOT_FOUND');
    assert.deepEqual(gone.details, { lb_id: lbId, listener_id: l.id, item_id: b.id });
    assertError(await t.api.delete(`${l.acl}/ni-nope0`), 404, 'NETWORK_ITEM_NOT_FOUND');

    const all = await t.api.delete(l.acl);
    assert.equal(all.status, 200);
    assert.deepEqual(all.body, { listener_id: l.id, deleted: 2 });
    assert.equal(all.headers.get('etag'), '"4"');
    assert.deepEqual((await t.api.get(l.base)).body.access_list, []);
    // Nothing left to delete: answered, but not written (no new version).
    const again = await t.api.delete(l.acl);
    assert.deepEqual(again.body, { listener_id: l.id, deleted: 0 });
    assert.equal(again.headers.get('etag'), '"4"');
    assert.equal(await versionOf(l.base), 4);
  });

  it('PUT connection-throttle merges over the current settings (or the defaults); DELETE removes it', async () => {
    const l = await listener('throttle');
    const first = await t.api.put(l.throttle, { max_connections: 100 });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, {
      listener_id: l.id,
      lb_id: lbId,
      connection_throttle: { min_connections: 0, max_connections: 100, max_connection_rate: null, rate_interval_seconds: 60 },
    });
    assert.equal(first.headers.get('etag'), '"2"');
    const merged = await t.api.put(l.throttle, { min_connections: 10, max_connection_rate: 50, rate_interval_seconds: 30 });
    assert.deepEqual(merged.body.connection_throttle, { min_connections: 10, max_connections: 100, max_connection_rate: 50, rate_interval_seconds: 30 });
    assert.equal(merged.headers.get('etag'), '"3"');
    assert.deepEqual((await t.api.get(l.throttle)).body, merged.body);
    assert.deepEqual((await t.api.get(l.base)).body.connection_throttle, merged.body.connection_throttle);

    const deleted = await t.api.delete(l.throttle);
    assert.equal(deleted.status, 200);
    assert.deepEqual(deleted.body, { listener_id: l.id, lb_id: lbId, connection_throttle: null });
    assert.equal(deleted.headers.get('etag'), '"4"');
    assert.equal((await t.api.get(l.base)).body.connection_throttle, null);

    // After a DELETE the defaults are the base again: a rate alone is a throttle.
    const rateOnly = await t.api.put(l.throttle, { max_connection_rate: 5 });
    assert.deepEqual(rateOnly.body.connection_throttle, { min_connections: 0, max_connections: null, max_connection_rate: 5, rate_interval_seconds: 60 });
  });

  it('refuses a throttle that limits nothing, or whose min_connections is not below max_connections, writing nothing', async () => {
    const l = await listener('throttle refusals');
    for (const body of [{}, { rate_interval_seconds: 30 }, { min_connections: 5 }]) {
      const err = assertError(await t.api.put(l.throttle, body), 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(err), ['max_connections', 'max_connection_rate'], JSON.stringify(body));
    }
    for (const body of [{ min_connections: 10, max_connections: 10 }, { min_connections: 11, max_connections: 10 }]) {
      assert.deepEqual(fieldsOf(assertError(await t.api.put(l.throttle, body), 400, 'VALIDATION_ERROR')), ['min_connections']);
    }
    assert.equal(await versionOf(l.base), 1, 'nothing written');
    await t.api.put(l.throttle, { min_connections: 5, max_connections: 10 });
    // Merged, the stored min_connections (5) is not below the new cap.
    const lower = assertError(await t.api.put(l.throttle, { max_connections: 5 }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(lower), ['min_connections']);
    assert.match(lower.details.fields[0].reason, /max_connections \(5\)/);
    const schema = assertError(await t.api.put(l.throttle, { max_connections: 0, max_connection_rate: '5', min_connections: -1, rate_interval_seconds: 86_401, burst: 1 }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(schema).sort(), ['burst', 'max_connection_rate', 'max_connections', 'min_connections', 'rate_interval_seconds']);
    assert.deepEqual((await t.api.get(l.throttle)).body.connection_throttle, { min_connections: 5, max_connections: 10, max_connection_rate: null, rate_interval_seconds: 60 });
    assert.equal(await versionOf(l.base), 2);
  });

  it('every write honours If-Match with the listener version: 409 VERSION_CONFLICT and nothing written when stale', async () => {
    const l = await listener('if-match');
    const seeded = await t.api.post(l.acl, { network_items: [{ address: '10.0.0.0/8', type: 'DENY' }] }, { 'if-match': '"1"' });
    assert.equal(seeded.status, 200);
    const itemId = seeded.body.network_items[0].id;
    const stale = { 'if-match': '"1"' };
    const writes: [string, () => Promise<import('../helpers/fulcrum.ts').ApiResponse>][] = [
      ['POST access-list', () => t.api.post(l.acl, { network_items: [{ address: '192.0.2.0/24', type: 'DENY' }] }, stale)],
      ['PUT access-list', () => t.api.put(l.acl, { network_items: [{ address: '192.0.2.0/24', type: 'DENY' }] }, stale)],
      ['DELETE access-list', () => t.api.delete(l.acl, stale)],
      ['DELETE item', () => t.api.delete(`${l.acl}/${itemId}`, stale)],
      ['PUT connection-throttle', () => t.api.put(l.throttle, { max_connections: 3 }, stale)],
      ['DELETE connection-throttle (already none: still checked)', () => t.api.delete(l.throttle, stale)],
    ];
    for (const [what, write] of writes) {
      const err = assertError(await write(), 409, 'VERSION_CONFLICT');
      assert.equal(err.details.expected_version, 1, what);
      assert.equal(err.details.current_version, 2, what);
      assert.equal(err.details.resource_id, l.id, what);
    }
    assert.equal(await versionOf(l.base), 2);
    assert.deepEqual((await t.api.get(l.acl)).body.network_items, seeded.body.network_items);
    assert.equal((await t.api.get(l.throttle)).body.connection_throttle, null);

    const current = await t.api.put(l.throttle, { max_connections: 3 }, { 'if-match': seeded.headers.get('etag')! });
    assert.equal(current.status, 200);
    assert.equal(current.headers.get('etag'), '"3"');
    assert.equal((await t.api.put(l.acl, { network_items: [{ address: '192.0.2.0/24', type: 'DENY' }] }, { 'if-match': 'W/"3"' })).status, 200);
    assert.equal((await t.api.delete(l.acl, { 'if-match': '*' })).status, 200);
    const bad = assertError(await t.api.delete(l.throttle, { 'if-match': 'yesterday' }), 400, 'INVALID_PARAMETER');
    assert.equal(bad.details.header, 'If-Match');
  });

  it('404 for an unknown load balancer or listener on every route, and for a listener of another load balancer', async () => {
    const l = await listener('not found');
    const other = await t.api.post('/api/v1/load-balancers', { name: 'other lb' });
    const item = { network_items: [{ address: '10.0.0.0/8', type: 'DENY' }] };
    const routes = (base: string): [string, string, unknown][] => [
      ['GET', `${base}/access-list`, undefined],
      ['POST', `${base}/access-list`, item],
      ['PUT', `${base}/access-list`, item],
      ['DELETE', `${base}/access-list`, undefined],
      ['DELETE', `${base}/access-list/ni-abcde`, undefined],
      ['GET', `${base}/connection-throttle`, undefined],
      ['PUT', `${base}/connection-throttle`, { max_connections: 1 }],
      ['DELETE', `${base}/connection-throttle`, undefined],
    ];
    const cases: [string, string, string][] = [
      [`/api/v1/load-balancers/lb-missing/listeners/${l.id}`, 'LOAD_BALANCER_NOT_FOUND', 'lb_id'],
      [`/api/v1/load-balancers/${lbId}/listeners/listener-missing`, 'LISTENER_NOT_FOUND', 'listener_id'],
      [`/api/v1/load-balancers/${other.body.lb_id}/listeners/${l.id}`, 'LISTENER_NOT_FOUND', 'listener_id'],
    ];
    for (const [base, code, key] of cases) {
      for (const [method, path, body] of routes(base)) {
        const err = assertError(await t.api.request(method, path, body), 404, code);
        assert.ok(key in err.details, `${method} ${path}`);
      }
    }
    assert.equal(await versionOf(l.base), 1);
  });

  it('the routes are in the OpenAPI document, with the validating body schemas', async () => {
    const { body: doc } = await t.api.get('/api/v1/openapi.json');
    const base = '/api/v1/load-balancers/{lb_id}/listeners/{listener_id}';
    assert.deepEqual(Object.keys(doc.paths[`${base}/access-list`]).sort(), ['delete', 'get', 'post', 'put']);
    assert.deepEqual(Object.keys(doc.paths[`${base}/access-list/{item_id}`]).sort(), ['delete']);
    assert.deepEqual(Object.keys(doc.paths[`${base}/connection-throttle`]).sort(), ['delete', 'get', 'put']);
    const items = doc.paths[`${base}/access-list`].post.requestBody.content['application/json'].schema.properties.network_items;
    assert.equal(items.maxItems, 10_000);
    assert.deepEqual(items.items.required.sort(), ['address', 'type']);
  });

  it('every listener type takes an access list and a throttle; a listener PATCH keeps them', async () => {
    const certs = new CertFactory();
    try {
      const leaf = certs.leaf(['access.example.test']);
      const cert = await t.api.post('/api/v1/certificates', { name: 'access', certificate_pem: leaf.cert, private_key_pem: leaf.key });
      assert.equal(cert.status, 201, JSON.stringify(cert.body));
      const kinds: [string, Record<string, unknown>][] = [
        ['HTTP', {}],
        ['HTTPS', { tls: { certificate_ids: [cert.body.cert_id] } }],
        ['TCP', {}],
        ['UDP', {}],
        ['TLS_PASSTHROUGH', {}],
      ];
      for (const [protocol, extra] of kinds) {
        const l = await listener(`kind ${protocol}`, { protocol, ...extra });
        assert.equal((await t.api.post(l.acl, { network_items: [{ address: '0.0.0.0/0', type: 'DENY' }, { address: '127.0.0.1', type: 'ALLOW' }] })).status, 200, protocol);
        assert.equal((await t.api.put(l.throttle, { max_connections: 10, max_connection_rate: 20 })).status, 200, protocol);
        const patched = await t.api.patch(l.base, { name: `kind ${protocol} renamed` });
        assert.equal(patched.status, 200, protocol);
        assert.deepEqual(patched.body.access_list.map((i: { address: string }) => i.address), ['0.0.0.0/0', '127.0.0.1/32'], protocol);
        assert.deepEqual(patched.body.connection_throttle, { min_connections: 0, max_connections: 10, max_connection_rate: 20, rate_interval_seconds: 60 }, protocol);
      }
    } finally {
      certs.remove();
    }
  });
});
