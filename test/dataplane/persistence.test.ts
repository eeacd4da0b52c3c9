/**
 * Session persistence through real traffic: COOKIE (Fulcrum's cookie names the backend),
 * APP_COOKIE (the application's cookie is followed) and SOURCE_IP (a table by client address) —
 * across adding, disabling, failing and draining backends.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { StickyTable } from '../../src/runtime/sticky.ts';

let t: TestFulcrum;
let backends: TestBackend[];
const held: (() => void)[] = [];
before(async () => {
  t = await startTestFulcrum();
  backends = await Promise.all(
    ['a', 'b', 'c', 'd'].map((n) =>
      startBackend(n, {
        handler: (req, res, name) => {
          // A request that holds its backend busy until the test lets it go (keeps a drain open).
          if (req.url === '/hold') {
            held.push(() => res.end(name));
            return;
          }
          const headers: Record<string, string> = { 'content-type': 'text/plain' };
          // The application's own session cookie, set on a login.
          if (req.url === '/login') headers['set-cookie'] = `APPSESSION=${name}-${Math.random().toString(36).slice(2)}; Path=/`;
          res.writeHead(200, headers);
          res.end(name);
        },
      }),
    ),
  );
});
after(async () => {
  await t.close();
  await Promise.all(backends.map((b) => b.close()));
});

/** One request; the backend that answered and the cookies set. */
function get(port: number, path = '/', cookie?: string, localAddress = '127.0.0.1'): Promise<{ body: string; setCookie: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, localAddress, agent: false, headers: cookie ? { cookie } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ body, setCookie: res.headers['set-cookie'] ?? [] }));
    });
    req.on('error', reject);
    req.end();
  });
}

const cookiePair = (setCookie: string[], name: string) => setCookie.map((c) => c.split(';')[0]!).find((c) => c.startsWith(`${name}=`));

/** The id of the backend named `name` in the load balancer's pool. */
async function backendId(lb: LbSetup, name: string): Promise<string> {
  const list = (await t.api.get(`/api/v1/pools/${lb.poolId}/backends`)).body.backends as { name: string; server_id: string }[];
  return list.find((b) => b.name === name)!.server_id;
}

describe('COOKIE persistence', () => {
  let lb: LbSetup;
  before(async () => {
    lb = await setupLb(backends.slice(0, 3), { fulcrum: t, pool: { session_persistence: { enabled: true, type: 'COOKIE', cookie_name: 'LB', ttl_seconds: 600 } } });
  });

  it('pins a client with a cookie naming its backend (not by id), and keeps it there', async () => {
    const first = await get(lb.port);
    const pair = cookiePair(first.setCookie, 'LB');
    assert.ok(pair, `a pinning cookie: ${first.setCookie}`);
    assert.match(first.setCookie[0]!, /Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/);
    assert.ok(!pair.includes('backend-'), 'the value does not expose the backend id');
    for (let i = 0; i < 9; i++) {
      const r = await get(lb.port, '/', pair);
      assert.equal(r.body, first.body);
      assert.deepEqual(r.setCookie, [], 'no new cookie while pinned');
    }
    // Without the cookie, round robin spreads.
    const spread = new Set<string>();
    for (let i = 0; i < 6; i++) spread.add((await get(lb.port)).body);
    assert.equal(spread.size, 3);
  });

  it('adding backends moves no pinned client; a disabled or unhealthy backend is replaced and the client re-pinned', async () => {
    const first = await get(lb.port);
    const pair = cookiePair(first.setCookie, 'LB')!;
    const d = backends[3]!;
    const added = await t.api.post(`/api/v1/pools/${lb.poolId}/backends`, { name: d.name, ip_address: '127.0.0.1', port: d.port });
    assert.equal(added.status, 201);
    for (let i = 0; i < 6; i++) assert.equal((await get(lb.port, '/', pair)).body, first.body);

    const pinnedId = await backendId(lb, first.body);
    await t.api.patch(`/api/v1/pools/${lb.poolId}/backends/${pinnedId}`, { admin_status: 'DISABLED' });
    const moved = await get(lb.port, '/', pair);
    assert.notEqual(moved.body, first.body);
    const newPair = cookiePair(moved.setCookie, 'LB');
    assert.ok(newPair && newPair !== pair, 're-pinned with a new cookie');
    assert.equal((await get(lb.port, '/', newPair)).body, moved.body);
    await t.api.patch(`/api/v1/pools/${lb.poolId}/backends/${pinnedId}`, { admin_status: 'ENABLED' });

    const movedId = await backendId(lb, moved.body);
    const o = await t.api.post(`/api/v1/pools/${lb.poolId}/backends/${movedId}/health-override`, { status: 'UNHEALTHY', duration_seconds: 60 });
    assert.equal(o.status, 200, JSON.stringify(o.body));
    const again = await get(lb.port, '/', newPair);
    assert.notEqual(again.body, moved.body, 'an unhealthy backend loses its pinned clients');
    assert.ok(cookiePair(again.setCookie, 'LB'));
    await t.api.delete(`/api/v1/pools/${lb.poolId}/backends/${movedId}/health-override`);
  });

  it('a DRAINING backend keeps serving its pinned clients, and takes no new ones', async () => {
    const first = await get(lb.port);
    const pair = cookiePair(first.setCookie, 'LB')!;
    const id = await backendId(lb, first.body);
    // A request in flight keeps the drain from completing at once.
    const holding = get(lb.port, '/hold', pair);
    while (held.length === 0) await new Promise((r) => setImmediate(r));
    const drain = await t.api.post(`/api/v1/pools/${lb.poolId}/backends/${id}/drain`, { timeout_seconds: 60 });
    assert.equal(drain.status, 202, JSON.stringify(drain.body));
    for (let i = 0; i < 5; i++) assert.equal((await get(lb.port, '/', pair)).body, first.body, 'pinned client stays');
    for (let i = 0; i < 8; i++) assert.notEqual((await get(lb.port)).body, first.body, 'no new client goes to a draining backend');
    held.shift()!();
    assert.equal((await holding).body, first.body);
  });
});

describe('SOURCE_IP persistence', () => {
  it('pins each client address to one backend, across backend additions', async () => {
    const lb = await setupLb(backends.slice(0, 3), { fulcrum: t, pool: { session_persistence: { enabled: true, type: 'SOURCE_IP', ttl_seconds: 600 } } });
    const pins = new Map<string, string>();
    // Loopback is 127.0.0.0/8: each address is a client of its own.
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) {
      pins.set(ip, (await get(lb.port, '/', undefined, ip)).body);
      for (let i = 0; i < 3; i++) assert.equal((await get(lb.port, '/', undefined, ip)).body, pins.get(ip), ip);
    }
    assert.ok(new Set(pins.values()).size > 1, 'different clients spread');
    const d = backends[3]!;
    await t.api.post(`/api/v1/pools/${lb.poolId}/backends`, { name: d.name, ip_address: '127.0.0.1', port: d.port });
    for (const [ip, name] of pins) assert.equal((await get(lb.port, '/', undefined, ip)).body, name, `${ip} after adding a backend`);
  });
});

describe('APP_COOKIE persistence', () => {
  it('follows the session cookie the application sets', async () => {
    const lb = await setupLb(backends.slice(0, 3), { fulcrum: t, pool: { session_persistence: { enabled: true, type: 'APP_COOKIE', app_cookie_name: 'APPSESSION' } } });
    const login = await get(lb.port, '/login');
    const session = cookiePair(login.setCookie, 'APPSESSION')!;
    assert.ok(session.startsWith(`APPSESSION=${login.body}-`));
    for (let i = 0; i < 9; i++) assert.equal((await get(lb.port, '/', `other=1; ${session}`)).body, login.body);
    const unknown = new Set<string>();
    for (let i = 0; i < 6; i++) unknown.add((await get(lb.port, '/', 'APPSESSION=never-issued')).body);
    assert.equal(unknown.size, 3, 'an unknown session is balanced');
  });

  it('refuses APP_COOKIE without the cookie to follow', async () => {
    const r = await t.api.post('/api/v1/pools', { name: 'app-cookie-bad', session_persistence: { enabled: true, type: 'APP_COOKIE' } });
    assert.equal(r.status, 400);
    assert.ok(JSON.stringify(r.body.error.details).includes('session_persistence.app_cookie_name'));
  });
});

describe('StickyTable', () => {
  it('expires pins after their TTL, refreshes on set, and drops the least recently used at its bound', () => {
    const table = new StickyTable(2);
    table.set('a', 's1', 1_000);
    assert.equal(table.get('a', 999), 's1');
    assert.equal(table.get('a', 1_000), undefined, 'expired');
    table.set('a', 's1', 5_000);
    table.set('b', 's2', 5_000);
    table.set('c', 's3', 5_000);
    assert.equal(table.get('a', 0), undefined, 'the oldest dropped at the bound');
    assert.equal(table.size, 2);
  });
});
