/**
 * The ACL API (seed 000 §8) through a running Fulcrum: create, list, get, patch, delete, with and
 * without a GeoIP database. What ACLs do to traffic is tested with the data plane.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertError, fieldsOf, ISO_SECONDS } from '../helpers/assertions.ts';
import { CertFactory } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, tempDir, type TestFulcrum } from '../helpers/fulcrum.ts';
import { writeCountryMmdb } from '../helpers/mmdb.ts';

const ACLS = '/api/v1/acls';
/** An expiry far ahead, in the API's form. */
const FUTURE = '2099-06-01T00:00:00Z';

/** The seed's example body, with an expiry still ahead (the seed's own, 2024-06-01, has passed). */
const seedBody = (countries: boolean) => ({
  name: 'Block Known Bad Actors',
  priority: 1,
  action: 'DENY',
  match: {
    source_ips: ['192.0.2.0/24', '198.51.100.0/24'],
    ...(countries ? { source_countries: ['XX', 'YY'] } : {}),
    user_agents: ['BadBot/*', 'Scrapy/*'],
  },
  response: { status_code: 403, body: '{"error": "forbidden"}' },
  logging: true,
  expires_at: FUTURE,
});

describe('ACL API without a GeoIP database', () => {
  let t: TestFulcrum;
  let lbId: string;
  let httpListener: string;
  let httpsListener: string;
  let tcpListener: string;
  let otherOrgListener: string;
  before(async () => {
    t = await startTestFulcrum();
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'acl tests' });
    assert.equal(lb.status, 201, JSON.stringify(lb.body));
    lbId = lb.body.lb_id;
    const listener = async (lb: string, name: string, protocol: string, extra: Record<string, unknown> = {}) => {
      // Disabled: no port is held, and the ACL checks only need the listener to exist.
      const res = await t.api.post(`/api/v1/load-balancers/${lb}/listeners`, {
        name, protocol, bind_address: '127.0.0.1', port: await freePort(), enabled: false, ...extra,
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.listener_id as string;
    };
    httpListener = await listener(lbId, 'web', 'HTTP');
    const certs = new CertFactory();
    try {
      const leaf = certs.leaf(['acl.example.test']);
      const cert = await t.api.post('/api/v1/certificates', { name: 'acl', certificate_pem: leaf.cert, private_key_pem: leaf.key });
      assert.equal(cert.status, 201, JSON.stringify(cert.body));
      httpsListener = await listener(lbId, 'secure', 'HTTPS', { tls: { certificate_ids: [cert.body.cert_id] } });
    } finally {
      certs.remove();
    }
    tcpListener = await listener(lbId, 'raw', 'TCP');
    const other = await t.api.post('/api/v1/load-balancers', { name: 'other tenant', org_id: 'acme' });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    otherOrgListener = await listener(other.body.lb_id, 'acme web', 'HTTP');
  });
  after(() => t.close());

  /** Every ACL there is, in list order. */
  const allIds = async () => (await t.api.get(`${ACLS}?per_page=500`)).body.acls.map((a: { acl_id: string }) => a.acl_id) as string[];
  const create = async (body: Record<string, unknown>) => {
    const res = await t.api.post(ACLS, body);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body;
  };
  const remove = async (...ids: string[]) => {
    for (const id of ids) assert.equal((await t.api.delete(`${ACLS}/${id}`)).status, 200);
  };

  it("creates the seed's example ACL (without countries): 201 with its id, status, count and every field", async () => {
    const res = await t.api.post(ACLS, seedBody(false));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const acl = res.body;
    assert.equal(acl.acl_id, 'acl-block-known-bad-actors');
    assert.equal(acl.name, 'Block Known Bad Actors');
    assert.equal(acl.status, 'ACTIVE');
    assert.equal(acl.matched_entries, 0);
    assert.match(acl.created_at, ISO_SECONDS);
    assert.equal(acl.updated_at, acl.created_at);
    assert.equal(typeof acl.version, 'number');
    assert.equal(res.headers.get('etag'), `"${acl.version}"`);
    // The seed's fields come first.
    assert.deepEqual(Object.keys(acl).slice(0, 5), ['acl_id', 'name', 'status', 'matched_entries', 'created_at']);
    assert.deepEqual(acl.match, { source_ips: ['192.0.2.0/24', '198.51.100.0/24'], user_agents: ['BadBot/*', 'Scrapy/*'] });
    assert.deepEqual(acl.response, { status_code: 403, body: '{"error": "forbidden"}', content_type: 'application/json' });
    assert.equal(acl.priority, 1);
    assert.equal(acl.action, 'DENY');
    assert.equal(acl.logging, true);
    assert.equal(acl.enabled, true);
    assert.equal(acl.expires_at, FUTURE);
    assert.equal(acl.description, null);
    assert.deepEqual(acl.tags, {});
    assert.equal(acl.org_id, 'default');
    assert.equal(acl.project_id, 'default');

    const got = await t.api.get(`${ACLS}/${acl.acl_id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, acl);
    assert.equal(got.headers.get('etag'), res.headers.get('etag'));
    await remove(acl.acl_id);
  });

  it('fills defaults: DENY answers 403 Forbidden as text/plain, no logging, enabled, never expires; ALLOW has no response', async () => {
    const deny = await create({ name: 'defaults deny', priority: 10, action: 'DENY', match: { user_agents: ['curl/*'] } });
    assert.deepEqual(deny.response, { status_code: 403, body: 'Forbidden', content_type: 'text/plain' });
    assert.equal(deny.logging, false);
    assert.equal(deny.enabled, true);
    assert.equal(deny.expires_at, null);
    const status = await create({ name: 'defaults status', priority: 10, action: 'DENY', match: { user_agents: ['x'] }, response: { status_code: 429 } });
    assert.deepEqual(status.response, { status_code: 429, body: 'Too Many Requests', content_type: 'text/plain' });
    const typed = await create({
      name: 'defaults type', priority: 10, action: 'DENY', match: { user_agents: ['y'] },
      response: { body: '<h1>no</h1>', content_type: 'text/html; charset=utf-8' },
    });
    assert.deepEqual(typed.response, { status_code: 403, body: '<h1>no</h1>', content_type: 'text/html; charset=utf-8' });
    const allow = await create({ name: 'defaults allow', priority: 10, action: 'ALLOW', match: { source_ips: ['10.0.0.0/8'] } });
    assert.equal(allow.response, null);
    await remove(deny.acl_id, status.acl_id, typed.acl_id, allow.acl_id);
  });

  it('stores networks canonical, trims them, and keeps IPv6 and IPv4-mapped ones; expires_at in UTC', async () => {
    const acl = await create({
      name: 'canonical',
      priority: 5,
      action: 'DENY',
      match: { source_ips: [' 192.0.2.7 ', '2001:DB8::/32', '::ffff:198.51.100.0/120', '2001:db8:1::5'] },
      expires_at: '2099-06-01T02:00:00+02:00',
    });
    assert.deepEqual(acl.match.source_ips, ['192.0.2.7/32', '2001:db8::/32', '198.51.100.0/24', '2001:db8:1::5/128']);
    assert.equal(acl.expires_at, FUTURE);
    await remove(acl.acl_id);
  });

  it('refuses source_countries without a GeoIP database, naming the field and the setting', async () => {
    const before = await allIds();
    const err = assertError(await t.api.post(ACLS, seedBody(true)), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(err), ['match.source_countries']);
    assert.match(err.details.fields[0].reason, /no GeoIP database is configured/);
    assert.match(err.details.fields[0].reason, /geoip\.database_path/);
    assert.deepEqual(await allIds(), before, 'nothing stored');
  });

  it('refuses each invalid request naming the field, and stores nothing', async () => {
    const before = await allIds();
    const base = { name: 'invalid', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] } };
    /** [what, body, fields named, a reason to find] */
    const cases: [string, Record<string, unknown>, string[], RegExp][] = [
      ['a CIDR that does not parse', { ...base, match: { source_ips: ['192.0.2.0/24', '300.1.2.3/8'] } }, ['match.source_ips[1]'], /not an IPv4 or IPv6 address or CIDR/],
      ['a prefix out of range', { ...base, match: { source_ips: ['2001:db8::/129'] } }, ['match.source_ips[0]'], /prefix length must be 0–128/],
      ['host bits set', { ...base, match: { source_ips: ['10.1.2.3/8'] } }, ['match.source_ips[0]'], /host bits set: the network is 10\.0\.0\.0\/8/],
      ['a network given twice', { ...base, match: { source_ips: ['192.0.2.7', '192.0.2.7/32'] } }, ['match.source_ips[1]'], /already given by match\.source_ips\[0\]/],
      ['a response on an ALLOW', { ...base, action: 'ALLOW', response: { status_code: 403 } }, ['response'], /only a DENY/],
      ['expires_at in the past', { ...base, expires_at: '2024-06-01T00:00:00Z' }, ['expires_at'], /in the past/],
      ['an unknown listener', { ...base, match: { user_agents: ['x'], listener_ids: ['listener-nope'] } }, ['match.listener_ids[0]'], /no listener 'listener-nope' in organisation 'default'/],
      ['a TCP listener', { ...base, match: { user_agents: ['x'], listener_ids: [httpListener, tcpListener] } }, ['match.listener_ids[1]'], /is a TCP listener: ACLs are checked on HTTP requests/],
      ["another organisation's listener", { ...base, match: { user_agents: ['x'], listener_ids: [otherOrgListener] } }, ['match.listener_ids[0]'], /in organisation 'default'/],
      ['an empty match', { ...base, match: {} }, ['match'], /at least one of source_ips, source_countries, user_agents/],
      ['a match of listeners only', { ...base, match: { listener_ids: [httpListener] } }, ['match'], /at least one of/],
      ['an unknown action', { ...base, action: 'REDIRECT' }, ['action'], /must be one of ALLOW, DENY/],
      ['a negative priority', { ...base, priority: -1 }, ['priority'], /./],
      ['a status that is not an error', { ...base, response: { status_code: 302 } }, ['response.status_code'], /./],
      ['an unknown field in match', { ...base, match: { source_ips: ['192.0.2.0/24'], paths: ['/x'] } }, ['match.paths'], /unknown field/],
      ['an empty list', { ...base, match: { source_ips: [] } }, ['match.source_ips'], /./],
      ['a missing action', { name: 'x', priority: 1, match: base.match }, ['action'], /is required/],
    ];
    for (const [what, body, fields, reason] of cases) {
      const err = assertError(await t.api.post(ACLS, body), 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(err), fields, what);
      assert.match(err.details.fields[0].reason, reason, what);
    }
    // Several problems: all reported at once.
    const many = assertError(
      await t.api.post(ACLS, { ...base, action: 'ALLOW', response: {}, expires_at: '2001-01-01T00:00:00Z', match: { source_ips: ['nope'], listener_ids: ['listener-nope'] } }),
      400,
      'VALIDATION_ERROR',
    );
    assert.deepEqual(fieldsOf(many).sort(), ['expires_at', 'match.listener_ids[0]', 'match.source_ips[0]', 'response']);
    assert.deepEqual(await allIds(), before, 'nothing stored');
  });

  it('accepts HTTP listeners in listener_ids', async () => {
    const acl = await create({ name: 'scoped', priority: 3, action: 'DENY', match: { user_agents: ['x'], listener_ids: [httpListener, httpsListener] } });
    assert.deepEqual(acl.match.listener_ids, [httpListener, httpsListener]);
    await remove(acl.acl_id);
  });

  it('lists in evaluation order (priority, then creation), paginated, with a summary and filters', async () => {
    const c = await create({ name: 'order c', priority: 30, action: 'DENY', match: { user_agents: ['c'] } });
    const a = await create({ name: 'order a', priority: 10, action: 'ALLOW', match: { user_agents: ['a'] } });
    const b = await create({ name: 'order b', priority: 20, action: 'DENY', match: { user_agents: ['b'], listener_ids: [httpListener] }, enabled: false });
    const b2 = await create({ name: 'order b2', priority: 20, action: 'DENY', match: { user_agents: ['b2'], listener_ids: [httpsListener] } });
    // created_at has whole seconds: b and b2 may share it, then the id decides (b before b2 either way).
    const ids = [a.acl_id, b.acl_id, b2.acl_id, c.acl_id];
    assert.deepEqual(await allIds(), ids);

    const page1 = await t.api.get(`${ACLS}?per_page=3`);
    assert.equal(page1.status, 200);
    assert.deepEqual(page1.body.acls.map((x: { acl_id: string }) => x.acl_id), ids.slice(0, 3));
    assert.deepEqual(page1.body.pagination, { page: 1, per_page: 3, total: 4, total_pages: 2 });
    assert.deepEqual(page1.body.summary, { total: 4, active: 3, disabled: 1, expired: 0 });
    const page2 = await t.api.get(`${ACLS}?per_page=3&page=2`);
    assert.deepEqual(page2.body.acls.map((x: { acl_id: string }) => x.acl_id), ids.slice(3));
    assert.deepEqual((await t.api.get(`${ACLS}?per_page=3&page=3`)).body.acls, []);
    // Listed ACLs are whole views, as GET shows them.
    assert.deepEqual(page1.body.acls[0], (await t.api.get(`${ACLS}/${a.acl_id}`)).body);

    const disabled = await t.api.get(`${ACLS}?status=DISABLED`);
    assert.deepEqual(disabled.body.acls.map((x: { acl_id: string }) => x.acl_id), [b.acl_id]);
    assert.equal(disabled.body.acls[0].status, 'DISABLED');
    assert.equal(disabled.body.pagination.total, 1);
    assert.deepEqual(disabled.body.summary, page1.body.summary, 'the summary counts every ACL');
    // By listener: ACLs without listener_ids apply to every listener.
    const onWeb = await t.api.get(`${ACLS}?listener_id=${httpListener}`);
    assert.deepEqual(onWeb.body.acls.map((x: { acl_id: string }) => x.acl_id), [a.acl_id, b.acl_id, c.acl_id]);
    const onWebActive = await t.api.get(`${ACLS}?listener_id=${httpListener}&status=ACTIVE`);
    assert.deepEqual(onWebActive.body.acls.map((x: { acl_id: string }) => x.acl_id), [a.acl_id, c.acl_id]);

    assertError(await t.api.get(`${ACLS}?status=GONE`), 400, 'INVALID_PARAMETER');
    assertError(await t.api.get(`${ACLS}?per_page=0`), 400, 'INVALID_PARAMETER');
    assertError(await t.api.get(`${ACLS}?colour=red`), 400, 'INVALID_PARAMETER');
    await remove(...ids);
  });

  it('shows EXPIRED once expires_at has passed, whatever enabled says', async () => {
    // The API keeps whole seconds; two seconds ahead is at least one second ahead.
    const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + 2000).toISOString().replace('.000Z', 'Z');
    const acl = await create({ name: 'short lived', priority: 1, action: 'DENY', match: { user_agents: ['z'] }, expires_at: at });
    assert.equal(acl.status, 'ACTIVE');
    assert.equal(acl.expires_at, at);
    await sleep(Date.parse(at) - Date.now() + 50);
    const got = await t.api.get(`${ACLS}/${acl.acl_id}`);
    assert.equal(got.body.status, 'EXPIRED');
    assert.deepEqual((await t.api.get(`${ACLS}?status=EXPIRED`)).body.acls.map((x: { acl_id: string }) => x.acl_id), [acl.acl_id]);
    assert.equal((await t.api.get(ACLS)).body.summary.expired, 1);
    const disabled = await t.api.patch(`${ACLS}/${acl.acl_id}`, { enabled: false });
    assert.equal(disabled.body.status, 'EXPIRED');
    // An expiry may not be set in the past, but it may be moved ahead or cleared.
    assertError(await t.api.patch(`${ACLS}/${acl.acl_id}`, { expires_at: at }), 400, 'VALIDATION_ERROR');
    const revived = await t.api.patch(`${ACLS}/${acl.acl_id}`, { expires_at: null, enabled: true });
    assert.equal(revived.status, 200, JSON.stringify(revived.body));
    assert.equal(revived.body.status, 'ACTIVE');
    assert.equal(revived.body.expires_at, null);
    await remove(acl.acl_id);
  });

  it('PATCH changes the given fields, bumps the version and ETag, and keeps the rest', async () => {
    const acl = await create({ ...seedBody(false), name: 'patch me', description: 'first' });
    const url = `${ACLS}/${acl.acl_id}`;

    const off = await t.api.patch(url, { enabled: false }, { 'if-match': `"${acl.version}"` });
    assert.equal(off.status, 200, JSON.stringify(off.body));
    assert.equal(off.body.status, 'DISABLED');
    assert.equal(off.body.enabled, false);
    assert.equal(off.body.version, acl.version + 1);
    assert.equal(off.headers.get('etag'), `"${acl.version + 1}"`);
    assert.equal(off.body.created_at, acl.created_at);
    assert.deepEqual(off.body.match, acl.match);

    const on = await t.api.patch(url, { enabled: true, version: off.body.version });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    assert.equal(on.body.status, 'ACTIVE');

    // Priority moves it in the list.
    const other = await create({ name: 'patch neighbour', priority: 50, action: 'ALLOW', match: { user_agents: ['n'] } });
    assert.deepEqual(await allIds(), [acl.acl_id, other.acl_id]);
    const moved = await t.api.patch(url, { priority: 99 });
    assert.equal(moved.body.priority, 99);
    assert.deepEqual(await allIds(), [other.acl_id, acl.acl_id]);

    // match and response are replaced whole; null clears description and expires_at.
    const replaced = await t.api.patch(url, {
      match: { source_ips: ['2001:DB8::/48'] },
      response: { status_code: 410, body: 'gone' },
      description: null,
      expires_at: null,
      logging: false,
      tags: { team: 'edge' },
      name: 'patched',
    });
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
    assert.deepEqual(replaced.body.match, { source_ips: ['2001:db8::/48'] });
    assert.deepEqual(replaced.body.response, { status_code: 410, body: 'gone', content_type: 'text/plain' });
    assert.equal(replaced.body.description, null);
    assert.equal(replaced.body.expires_at, null);
    assert.equal(replaced.body.logging, false);
    assert.deepEqual(replaced.body.tags, { team: 'edge' });
    assert.equal(replaced.body.name, 'patched');
    assert.equal(replaced.body.acl_id, acl.acl_id, 'the id stays');

    // DENY → ALLOW drops the response; a response on the ALLOW is refused; ALLOW → DENY gets the default one.
    const allow = await t.api.patch(url, { action: 'ALLOW' });
    assert.equal(allow.body.action, 'ALLOW');
    assert.equal(allow.body.response, null);
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, { response: { status_code: 403 } }), 400, 'VALIDATION_ERROR')), ['response']);
    const deny = await t.api.patch(url, { action: 'DENY' });
    assert.deepEqual(deny.body.response, { status_code: 403, body: 'Forbidden', content_type: 'text/plain' });
    const backToAllow = await t.api.patch(url, { action: 'ALLOW', response: null });
    assert.equal(backToAllow.status, 200);
    assert.equal(backToAllow.body.response, null);

    // The same checks as a create, naming the field; nothing written.
    const version = (await t.api.get(url)).body.version;
    const refusals: [Record<string, unknown>, string][] = [
      [{ match: { source_ips: ['10.1.2.3/8'] } }, 'match.source_ips[0]'],
      [{ match: { source_countries: ['FR'] } }, 'match.source_countries'],
      [{ match: { user_agents: ['x'], listener_ids: [tcpListener] } }, 'match.listener_ids[0]'],
      [{ match: {} }, 'match'],
      [{ expires_at: '2020-01-01T00:00:00Z' }, 'expires_at'],
      [{}, '(body)'],
      [{ acl_id: 'acl-other' }, 'acl_id'],
    ];
    for (const [body, field] of refusals) {
      assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, body), 400, 'VALIDATION_ERROR')), [field], JSON.stringify(body));
    }
    assert.equal((await t.api.get(url)).body.version, version, 'nothing written');
    await remove(acl.acl_id, other.acl_id);
  });

  it('a stale If-Match or version is 409 VERSION_CONFLICT and changes nothing', async () => {
    const acl = await create({ name: 'conflict', priority: 1, action: 'DENY', match: { user_agents: ['q'] } });
    const url = `${ACLS}/${acl.acl_id}`;
    const first = await t.api.patch(url, { priority: 2 }, { 'if-match': `"${acl.version}"` });
    assert.equal(first.status, 200);
    const stale = assertError(await t.api.patch(url, { priority: 3 }, { 'if-match': `"${acl.version}"` }), 409, 'VERSION_CONFLICT');
    assert.equal(stale.details.resource_id, acl.acl_id);
    assert.equal(stale.details.current_version, first.body.version);
    assertError(await t.api.patch(url, { priority: 3, version: acl.version }), 409, 'VERSION_CONFLICT');
    assertError(await t.api.delete(url, { 'if-match': `"${acl.version}"` }), 409, 'VERSION_CONFLICT');
    assertError(await t.api.patch(url, { priority: 3 }, { 'if-match': 'yesterday' }), 400, 'INVALID_PARAMETER');
    const now = await t.api.get(url);
    assert.equal(now.body.priority, 2);
    assert.equal(now.body.version, first.body.version);
    const deleted = await t.api.delete(url, { 'if-match': `"${first.body.version}"` });
    assert.equal(deleted.status, 200);
  });

  it('DELETE removes the ACL and its count; an unknown ACL is 404 ACL_NOT_FOUND', async () => {
    const acl = await create({ name: 'Counted', priority: 1, action: 'DENY', match: { user_agents: ['counted/*'] } });
    const url = `${ACLS}/${acl.acl_id}`;
    // matched_entries shows what the data plane counted (this process's counters).
    t.fulcrum.policies.aclCounters.cell(acl.acl_id).value += 7;
    assert.equal((await t.api.get(url)).body.matched_entries, 7);
    assert.equal((await t.api.patch(url, { priority: 4 })).body.matched_entries, 7, 'a change keeps the count');

    const res = await t.api.delete(url);
    assert.equal(res.status, 200);
    assert.equal(res.body.acl_id, acl.acl_id);
    assert.equal(res.body.status, 'DELETED');
    assert.match(res.body.deleted_at, ISO_SECONDS);

    const gone = assertError(await t.api.get(url), 404, 'ACL_NOT_FOUND');
    assert.deepEqual(gone.details, { acl_id: acl.acl_id });
    assertError(await t.api.patch(url, { priority: 1 }), 404, 'ACL_NOT_FOUND');
    assertError(await t.api.delete(url), 404, 'ACL_NOT_FOUND');
    assert.ok(!(await allIds()).includes(acl.acl_id));

    // Made again under the same id: it starts from 0.
    const again = await create({ name: 'Counted', priority: 1, action: 'DENY', match: { user_agents: ['counted/*'] } });
    assert.equal(again.acl_id, acl.acl_id);
    assert.equal(again.matched_entries, 0);
    await remove(again.acl_id);
  });

  it('a second ACL of the same name gets an id of its own', async () => {
    const one = await create({ name: 'twin', priority: 1, action: 'DENY', match: { user_agents: ['t'] } });
    const two = await create({ name: 'twin', priority: 1, action: 'DENY', match: { user_agents: ['t'] } });
    assert.equal(one.acl_id, 'acl-twin');
    assert.match(two.acl_id, /^acl-twin-[a-z0-9]{5}$/);
    await remove(one.acl_id, two.acl_id);
  });
});

describe('ACL API with a GeoIP database', () => {
  let t: TestFulcrum;
  let dir: { path: string; remove: () => void };
  before(async () => {
    dir = tempDir('fulcrum-acl-geoip-');
    const path = writeCountryMmdb(join(dir.path, 'country.mmdb'), { '192.0.2.0/24': 'FR', '2001:db8::/32': 'NL' });
    t = await startTestFulcrum({ geoipDatabasePath: path });
  });
  after(async () => {
    await t.close();
    dir.remove();
  });

  it("accepts the seed's example with its countries, upper-cased", async () => {
    const res = await t.api.post(ACLS, { ...seedBody(true), match: { ...seedBody(true).match, source_countries: ['xx', 'YY', 'fr'] } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual(res.body.match.source_countries, ['XX', 'YY', 'FR']);
    assert.equal(res.body.status, 'ACTIVE');
    assert.equal(res.body.matched_entries, 0);
  });

  it('refuses a country code that is not two letters, and one given twice, naming the item', async () => {
    const base = { name: 'countries', priority: 2, action: 'DENY' };
    const three = assertError(await t.api.post(ACLS, { ...base, match: { source_countries: ['FRA'] } }), 400, 'VALIDATION_ERROR');
    assert.deepEqual([...new Set(fieldsOf(three))], ['match.source_countries.0']);
    const digits = assertError(await t.api.post(ACLS, { ...base, match: { source_countries: ['FR', 'F1'] } }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(digits), ['match.source_countries.1']);
    const twice = assertError(await t.api.post(ACLS, { ...base, match: { source_countries: ['fr', 'FR'] } }), 400, 'VALIDATION_ERROR');
    assert.deepEqual(fieldsOf(twice), ['match.source_countries[1]']);
    assert.match(twice.details.fields[0].reason, /FR is already given by match\.source_countries\[0\]/);
  });

  it('a country-only ACL is a valid match, and PATCH may set countries', async () => {
    const acl = await t.api.post(ACLS, { name: 'only countries', priority: 3, action: 'ALLOW', match: { source_countries: ['NL'] } });
    assert.equal(acl.status, 201, JSON.stringify(acl.body));
    const patched = await t.api.patch(`${ACLS}/${acl.body.acl_id}`, { match: { source_countries: ['de', 'NL'], source_ips: ['192.0.2.0/24'] } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body.match, { source_ips: ['192.0.2.0/24'], source_countries: ['DE', 'NL'] });
  });
});
