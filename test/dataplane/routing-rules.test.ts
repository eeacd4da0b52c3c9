/**
 * Routing rules through the API and real traffic (seed 000 §6): each match kind, each action and
 * transform, priority order, the canary split, WebSocket handshakes, and the dry run agreeing with
 * what live traffic does.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import WebSocket from 'ws';
import { assertError } from '../helpers/assertions.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';

let t: TestFulcrum;
let a: TestBackend;
let b: TestBackend;
let c: TestBackend;
/** Listener → pool `a` by default; pools B (backend b) and C (backend c) for rules. */
let lb: LbSetup;
let poolB: string;
let poolC: string;

/** Answers its name, and echoes the request headers it got as JSON in `x-seen`. */
function echoing(name: string) {
  return startBackend(name, {
    websocket: true,
    handler: (req, res, n) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': n, 'x-powered-by': 'test', 'x-seen-url': req.url! });
      res.end(n);
    },
  });
}

async function pool(name: string, backend: TestBackend, fields: Record<string, unknown> = {}): Promise<string> {
  const p = await t.api.post('/api/v1/pools', { name, ...fields });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const r = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { name: backend.name, ip_address: '127.0.0.1', port: backend.port });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return p.body.pool_id as string;
}

before(async () => {
  t = await startTestFulcrum();
  [a, b, c] = (await Promise.all(['a', 'b', 'c'].map(echoing))) as [TestBackend, TestBackend, TestBackend];
  lb = await setupLb([a], { fulcrum: t });
  poolB = await pool('stable', b);
  poolC = await pool('canary', c);
});
after(async () => {
  await t.close();
  await Promise.all([a, b, c].map((x) => x.close()));
});

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

const keepAlive = new Agent({ keepAlive: true, maxSockets: 16 });
after(() => keepAlive.destroy());

/** One request to the listener (or `port`); `host` sets the Host header, `from` the client's loopback address. */
function send(path: string, options: { method?: string; host?: string; headers?: Record<string, string>; from?: string; port?: number; agent?: Agent } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: options.port ?? lb.port,
        path,
        method: options.method ?? 'GET',
        localAddress: options.from,
        agent: options.agent ?? false,
        headers: { ...(options.host !== undefined ? { host: options.host } : {}), ...options.headers },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

let nextPriority = 1000;
/** A rule forwarding to pool B; deleted by the returned function. */
async function rule(match: Record<string, unknown>, fields: Record<string, unknown> = {}): Promise<{ id: string; remove: () => Promise<void> }> {
  const r = await t.api.post('/api/v1/routing-rules', { name: `r${nextPriority}`, priority: nextPriority++, match, action: { type: 'FORWARD', pool_id: poolB }, ...fields });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const id = r.body.rule_id as string;
  return { id, remove: async () => assert.equal((await t.api.delete(`/api/v1/routing-rules/${id}`)).status, 200) };
}

describe('routing rules API', () => {
  it("creates the seed's example rule, lists it by priority with summaries, and counts its hits", async () => {
    const created = await t.api.post('/api/v1/routing-rules', {
      name: 'API v2 Canary Route',
      priority: 100,
      match: { hosts: ['api.example.com'], paths: ['/v2/*'], methods: ['GET', 'POST', 'PUT', 'DELETE'], headers: { 'X-Canary': ['true'] } },
      action: { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: poolC, weight: 10 }, { pool_id: poolB, weight: 90 }] },
      transforms: {
        add_request_headers: { 'X-Forwarded-Proto': 'https', 'X-Request-ID': '${uuid}', 'X-Real-IP': '${client_ip}' },
        remove_response_headers: ['Server', 'X-Powered-By'],
        url_rewrite: '/v2/(.*) -> /api/$1',
      },
      enabled: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const r = created.body;
    assert.match(r.rule_id, /^rule-api-v2-canary/);
    assert.equal(r.name, 'API v2 Canary Route');
    assert.equal(r.priority, 100);
    assert.equal(r.status, 'ACTIVE');
    assert.match(r.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(r.version, 1);
    assert.equal(created.headers.get('etag'), '"1"');
    const low = await rule({ path_prefix: '/never-sent' }, { priority: 5 });
    try {
      const list = await t.api.get(`/api/v1/routing-rules?pool_id=${poolC}`);
      assert.equal(list.status, 200);
      assert.deepEqual(
        list.body.rules.map((x: { rule_id: string }) => x.rule_id),
        [r.rule_id],
        'pool_id keeps the rules that send to that pool',
      );
      const all = await t.api.get('/api/v1/routing-rules');
      const ids = all.body.rules.map((x: { rule_id: string }) => x.rule_id);
      assert.ok(ids.indexOf(low.id) < ids.indexOf(r.rule_id), 'ordered by priority');
      assert.equal(all.body.total_rules, ids.length);
      const shown = list.body.rules[0];
      assert.equal(shown.match_summary, 'Host: api.example.com, Path: /v2/*, Header: X-Canary=true, Method: GET|POST|PUT|DELETE');
      assert.equal(shown.action_summary, 'Weighted: canary(10%) + stable(90%)');
      assert.equal(shown.enabled, true);
      assert.equal(shown.hit_count_last_hour, 0);
      assert.equal(shown.version, 1);

      for (let i = 0; i < 7; i++) {
        const res = await send('/v2/users/42', { host: 'api.example.com', headers: { 'x-canary': 'true' } });
        assert.equal(res.status, 200);
        assert.ok(res.body === 'b' || res.body === 'c');
        assert.equal(res.headers['x-seen-url'], '/api/users/42');
        assert.equal(res.headers['x-powered-by'], undefined, 'removed from the response');
      }
      await send('/v2/users/42', { host: 'api.example.com' }); // no X-Canary: not a hit
      const after = await t.api.get(`/api/v1/routing-rules/${r.rule_id}`);
      assert.equal(after.body.hit_count_last_hour, 7);
    } finally {
      await low.remove();
      await t.api.delete(`/api/v1/routing-rules/${r.rule_id}`);
    }
  });

  it('PUT replaces, PATCH changes, a stale If-Match is VERSION_CONFLICT, a missing rule RULE_NOT_FOUND', async () => {
    const r = await rule({ paths: ['/put/*'] });
    const put = await t.api.put(`/api/v1/routing-rules/${r.id}`, { name: 'replaced', priority: 7000, match: { path_exact: '/put/x' }, action: { type: 'FIXED_RESPONSE', status_code: 204 } }, { 'if-match': '"1"' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.version, 2);
    assert.equal(put.body.name, 'replaced');
    assert.deepEqual(put.body.transforms, {}, 'what PUT leaves out takes its default');
    assert.equal((await send('/put/x')).status, 204);
    const stale = await t.api.patch(`/api/v1/routing-rules/${r.id}`, { priority: 7001 }, { 'if-match': '"1"' });
    assertError(stale, 409, 'VERSION_CONFLICT');
    const patched = await t.api.patch(`/api/v1/routing-rules/${r.id}`, { enabled: false, version: 2 });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.status, 'DISABLED');
    assert.equal((await send('/put/x')).body, 'a', 'a disabled rule does not apply');
    await r.remove();
    assertError(await t.api.get(`/api/v1/routing-rules/${r.id}`), 404, 'RULE_NOT_FOUND');
    assertError(await t.api.delete(`/api/v1/routing-rules/${r.id}`), 404, 'RULE_NOT_FOUND');
  });

  it('DUPLICATE_RULE for an enabled rule with the same priority and match; a disabled twin is allowed', async () => {
    const first = await rule({ paths: ['/dup/*'], headers: { 'X-A': ['1'] } }, { priority: 6000 });
    const twin = { name: 'twin', priority: 6000, match: { headers: { 'x-a': ['1'] }, paths: ['/dup/*'] }, action: { type: 'FIXED_RESPONSE', status_code: 200 } };
    const dup = await t.api.post('/api/v1/routing-rules', twin);
    assertError(dup, 409, 'DUPLICATE_RULE');
    assert.equal(dup.body.error.details.rule_id, first.id);
    const disabled = await t.api.post('/api/v1/routing-rules', { ...twin, enabled: false });
    assert.equal(disabled.status, 201);
    assertError(await t.api.patch(`/api/v1/routing-rules/${disabled.body.rule_id}`, { enabled: true }), 409, 'DUPLICATE_RULE');
    await t.api.delete(`/api/v1/routing-rules/${disabled.body.rule_id}`);
    await first.remove();
  });

  it('refuses what cannot work, naming each field, and stores nothing', async () => {
    const before = (await t.api.get('/api/v1/routing-rules')).body.total_rules;
    const tcp = await t.api.post(`/api/v1/load-balancers/${lb.lbId}/listeners`, { name: 'tcp', protocol: 'TCP', bind_address: '127.0.0.1', port: await freePort(), enabled: false });
    assert.equal(tcp.status, 201, JSON.stringify(tcp.body));
    const bad = await t.api.post('/api/v1/routing-rules', {
      name: 'bad',
      priority: 1,
      match: { path_regex: '^/(unclosed', hosts: ['bad host!'], source_ips: ['10.0.0.0/33'], listener_ids: [tcp.body.listener_id, 'listener-nope'] },
      action: { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'pool-nope', weight: 1 }] },
      transforms: { add_request_headers: { 'X-Who': '${nobody}' }, url_rewrite: 'no arrow here' },
    });
    assertError(bad, 400, 'VALIDATION_ERROR');
    const fields = (bad.body.error.details.fields as { field: string }[]).map((f) => f.field).sort();
    for (const f of ['match.path_regex', 'match.hosts[0]', 'match.source_ips[0]', 'match.listener_ids[0]', 'match.listener_ids[1]', 'action.targets[0].pool_id', 'transforms.add_request_headers.X-Who', 'transforms.url_rewrite']) {
      assert.ok(fields.includes(f), `${f} in ${fields.join(', ')}`);
    }
    assertError(await t.api.post('/api/v1/routing-rules', { name: 'x', priority: 1, match: {}, action: { type: 'FORWARD' } }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.post('/api/v1/routing-rules', { name: 'x', priority: 1, match: {}, action: { type: 'REDIRECT', url: 'ftp://x', status_code: 200 } }), 400, 'VALIDATION_ERROR');
    assert.equal((await t.api.get('/api/v1/routing-rules')).body.total_rules, before);
  });

  it('refuses values node could not send: non-Latin-1 header values, non-ASCII redirects, bad rewrite targets, a body on a 204; and framing fields in a rate limit refusal', async () => {
    const bad = async (body: Record<string, unknown>, field: string) => {
      const res = await t.api.post('/api/v1/routing-rules', { name: 'bad', priority: 1, match: {}, action: { type: 'FORWARD', pool_id: poolB }, ...body });
      assertError(res, 400, 'VALIDATION_ERROR');
      assert.ok((res.body.error.details.fields as { field: string }[]).some((f) => f.field === field), `${field}: ${JSON.stringify(res.body.error.details)}`);
    };
    await bad({ transforms: { add_response_headers: { 'X-Check': 'ok ✓' } } }, 'transforms.add_response_headers.X-Check');
    await bad({ action: { type: 'REDIRECT', url: 'https://example.com/café' } }, 'action.url');
    await bad({ action: { type: 'FIXED_RESPONSE', status_code: 204, body: 'none' } }, 'action.body');
    await bad({ transforms: { url_rewrite: '^/rw/(.*) -> /→/$1' } }, 'transforms.url_rewrite');
    await bad({ transforms: { url_rewrite: '^/rw/(.*) -> /a b/$1' } }, 'transforms.url_rewrite');
    const limit = await t.api.post('/api/v1/rate-limits', { name: 'framing', scope: 'GLOBAL', limits: { requests_per_second: 1 }, action_on_limit: { headers: { 'Content-Length': '0', 'Transfer-Encoding': 'chunked' } } });
    assertError(limit, 400, 'VALIDATION_ERROR');
    const fields = (limit.body.error.details.fields as { field: string }[]).map((f) => f.field);
    assert.ok(fields.includes('action_on_limit.headers.Content-Length') && fields.includes('action_on_limit.headers.Transfer-Encoding'), fields.join(', '));
  });

  it('a fixed 204 goes out without a length or body', async () => {
    const r = await rule({ path_exact: '/no-content' }, { action: { type: 'FIXED_RESPONSE', status_code: 204 } });
    const res = await send('/no-content');
    assert.equal(res.status, 204);
    assert.equal(res.headers['content-length'], undefined);
    assert.equal(res.body, '');
    await r.remove();
  });

  it('a stale If-Match is VERSION_CONFLICT even when the change is also invalid or a duplicate; hosts compare normalized', async () => {
    const first = await rule({ hosts: ['api.example.com'] }, { priority: 6100 });
    const dup = await t.api.post('/api/v1/routing-rules', { name: 'twin', priority: 6100, match: { hosts: ['API.Example.com.'] }, action: { type: 'FIXED_RESPONSE', status_code: 200 } });
    assertError(dup, 409, 'DUPLICATE_RULE');
    const stale = await t.api.patch(`/api/v1/routing-rules/${first.id}`, { match: { path_regex: '(' } }, { 'if-match': '"9"' });
    assertError(stale, 409, 'VERSION_CONFLICT');
    await first.remove();
  });

  it('a load balancer whose pools rules send to cannot be deleted', async () => {
    const other = await t.api.post('/api/v1/load-balancers', { name: 'other-lb' });
    const owned = await t.api.post('/api/v1/pools', { name: 'owned', load_balancer_id: other.body.lb_id });
    assert.equal(owned.status, 201, JSON.stringify(owned.body));
    const r = await t.api.post('/api/v1/routing-rules', { name: 'to other', priority: 6200, match: { path_prefix: '/other-lb' }, action: { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: owned.body.pool_id, weight: 1 }, { pool_id: poolB, weight: 1 }] } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    try {
      const del = await t.api.delete(`/api/v1/load-balancers/${other.body.lb_id}?force=true`);
      assertError(del, 409, 'POOL_IN_USE');
      assert.deepEqual(del.body.error.details.routing_rule_ids, [r.body.rule_id]);
    } finally {
      await t.api.delete(`/api/v1/routing-rules/${r.body.rule_id}`);
    }
    const gone = await t.api.delete(`/api/v1/load-balancers/${other.body.lb_id}?force=true`);
    assert.equal(gone.status, 200);
    assert.equal(gone.body.pools_removed, 1);
  });

  it('a pool a rule sends to, or a rate limit names, cannot be deleted (POOL_IN_USE names them)', async () => {
    const r = await rule({ path_prefix: '/in-use' });
    const limit = await t.api.post('/api/v1/rate-limits', { name: 'pool limit', scope: 'GLOBAL', match: { pools: [poolB] }, limits: { requests_per_minute: 1_000_000 } });
    assert.equal(limit.status, 201, JSON.stringify(limit.body));
    const del = await t.api.delete(`/api/v1/pools/${poolB}?force=true`);
    assertError(del, 409, 'POOL_IN_USE');
    assert.deepEqual(del.body.error.details.routing_rule_ids, [r.id]);
    assert.deepEqual(del.body.error.details.rate_limit_ids, [limit.body.rate_limit_id]);
    await r.remove();
    assert.equal((await t.api.delete(`/api/v1/rate-limits/${limit.body.rate_limit_id}`)).status, 200);
    assert.equal((await t.api.get(`/api/v1/pools/${poolB}`)).status, 200, 'the pool is still there');
  });
});

describe('matching through traffic', () => {
  /** The rule sends `hit` to pool B; `miss` goes to the default pool (a). */
  async function check(match: Record<string, unknown>, hit: Parameters<typeof send>, miss: Parameters<typeof send>) {
    const r = await rule(match);
    try {
      assert.equal((await send(...hit)).body, 'b', `${JSON.stringify(match)} matches ${JSON.stringify(hit)}`);
      assert.equal((await send(...miss)).body, 'a', `${JSON.stringify(match)} does not match ${JSON.stringify(miss)}`);
    } finally {
      await r.remove();
    }
  }

  it('hosts: exact (any case, port ignored) and wildcard (any depth, not the apex)', async () => {
    await check({ hosts: ['api.example.com'] }, ['/', { host: 'API.Example.com:8080' }], ['/', { host: 'www.example.com' }]);
    await check({ hosts: ['*.example.com'] }, ['/', { host: 'a.b.example.com' }], ['/', { host: 'example.com' }]);
  });

  it('paths: globs, prefix, exact and regex', async () => {
    await check({ paths: ['/v2/*'] }, ['/v2/users/1?x=1'], ['/v3/users']);
    await check({ paths: ['/files/*.png'] }, ['/files/a/b.png'], ['/files/a/b.jpg']);
    await check({ path_prefix: '/static' }, ['/static/app.js'], ['/stati']);
    await check({ path_exact: '/health' }, ['/health?full=1'], ['/health/x']);
    await check({ path_regex: '^/users/[0-9]+$' }, ['/users/123'], ['/users/abc']);
  });

  it('methods, headers (any of the values), query parameters', async () => {
    await check({ methods: ['POST', 'PUT'] }, ['/', { method: 'PUT' }], ['/', { method: 'GET' }]);
    await check({ headers: { 'X-Tier': ['gold', 'platinum'] } }, ['/', { headers: { 'x-tier': 'platinum' } }], ['/', { headers: { 'x-tier': 'silver' } }]);
    await check({ query: { version: 'two words' } }, ['/?a=1&version=two+words'], ['/?version=two']);
  });

  it('source CIDRs and listener_ids', async () => {
    await check({ source_ips: ['127.0.0.2/32'] }, ['/', { from: '127.0.0.2' }], ['/', { from: '127.0.0.3' }]);
    const second = await t.api.post(`/api/v1/load-balancers/${lb.lbId}/listeners`, { name: 'second', protocol: 'HTTP', bind_address: '127.0.0.1', port: await freePort(), default_pool_id: lb.poolId });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    await check({ listener_ids: [second.body.listener_id] }, ['/', { port: second.body.port }], ['/', {}]);
  });

  it('every condition of a rule must hold', async () => {
    await check({ hosts: ['shop.example.com'], paths: ['/cart/*'], methods: ['POST'] }, ['/cart/1', { host: 'shop.example.com', method: 'POST' }], ['/cart/1', { host: 'shop.example.com', method: 'GET' }]);
  });

  it('the lowest priority number wins, and changing priorities applies to the next request', async () => {
    const toB = await rule({ path_prefix: '/prio' }, { priority: 200 });
    const toC = await t.api.post('/api/v1/routing-rules', { name: 'to c', priority: 100, match: { path_prefix: '/prio/special' }, action: { type: 'FORWARD', pool_id: poolC } });
    assert.equal(toC.status, 201);
    assert.equal((await send('/prio/special')).body, 'c');
    assert.equal((await send('/prio/other')).body, 'b');
    assert.equal((await t.api.patch(`/api/v1/routing-rules/${toC.body.rule_id}`, { priority: 300 })).status, 200);
    assert.equal((await send('/prio/special')).body, 'b', 'the broader rule now comes first');
    await t.api.delete(`/api/v1/routing-rules/${toC.body.rule_id}`);
    await toB.remove();
    assert.equal((await send('/prio/special')).body, 'a', 'no rule: the default pool');
  });
});

describe('actions', () => {
  it('WEIGHTED_ROUTE holds a 10/90 canary split within 2 points over 10,000 requests', async () => {
    const r = await rule({ path_prefix: '/split' }, { action: { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: poolC, weight: 10 }, { pool_id: poolB, weight: 90 }] } });
    const counts = { b: 0, c: 0 };
    let next = 0;
    const worker = async () => {
      while (next < 10_000) {
        next++;
        const res = await send('/split', { agent: keepAlive });
        counts[res.body as 'b' | 'c']++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await r.remove();
    assert.equal(counts.b + counts.c, 10_000);
    const canary = (counts.c / 10_000) * 100;
    assert.ok(Math.abs(canary - 10) <= 2, `canary share ${canary}% (c ${counts.c}, b ${counts.b})`);
  });

  it('REDIRECT: status and location, the path and query kept or not', async () => {
    const keep = await rule({ path_prefix: '/old' }, { action: { type: 'REDIRECT', url: 'https://new.example.com/', status_code: 301, keep_path_and_query: true } });
    const fixed = await rule({ path_prefix: '/gone' }, { action: { type: 'REDIRECT', url: 'https://elsewhere.example.com/landing', status_code: 308 } });
    const r1 = await send('/old/page?q=1');
    assert.equal(r1.status, 301);
    assert.equal(r1.headers.location, 'https://new.example.com/old/page?q=1');
    const r2 = await send('/gone/x?y=2');
    assert.equal(r2.status, 308);
    assert.equal(r2.headers.location, 'https://elsewhere.example.com/landing');
    assert.equal(a.seen.filter((s) => s.url.startsWith('/old') || s.url.startsWith('/gone')).length, 0, 'nothing forwarded');
    await keep.remove();
    await fixed.remove();
  });

  it('FIXED_RESPONSE: status, content type and body (none for HEAD); response transforms apply to it', async () => {
    const r = await rule(
      { path_exact: '/maintenance' },
      { action: { type: 'FIXED_RESPONSE', status_code: 503, content_type: 'application/json', body: '{"status":"maintenance"}' }, transforms: { add_response_headers: { 'X-Served-By': 'fulcrum ${method}' } } },
    );
    const res = await send('/maintenance');
    assert.equal(res.status, 503);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.body, '{"status":"maintenance"}');
    assert.equal(res.headers['x-served-by'], 'fulcrum GET');
    const head = await send('/maintenance', { method: 'HEAD' });
    assert.equal(head.status, 503);
    assert.equal(head.body, '');
    await r.remove();
  });
});

describe('transforms through traffic', () => {
  it('request headers added from templates (replacing the client’s), removed; response headers added and removed; the URL rewritten', async () => {
    const r = await rule(
      { path_prefix: '/t/' },
      {
        transforms: {
          add_request_headers: { 'X-Request-Id': '${uuid}', 'X-Real-IP': '${client_ip}', 'X-Orig': '${method} ${host} ${path}', 'X-Trace': 'same ${uuid}' },
          remove_request_headers: ['X-Secret'],
          add_response_headers: { 'X-Route': 'rule-t' },
          remove_response_headers: ['X-Powered-By'],
          url_rewrite: '^/t/(?<rest>.*) -> /internal/$<rest>',
        },
      },
    );
    const res = await send('/t/a/b?c=d', { host: 'Shop.Example.com', from: '127.0.0.2', headers: { 'x-secret': 'hunter2', 'x-real-ip': '6.6.6.6' } });
    assert.equal(res.body, 'b');
    assert.equal(res.headers['x-route'], 'rule-t');
    assert.equal(res.headers['x-powered-by'], undefined);
    assert.equal(res.headers['x-backend'], 'b', 'other response fields pass');
    const seen = b.seen.at(-1)!;
    assert.equal(seen.url, '/internal/a/b?c=d', 'rewritten, query kept');
    assert.equal(seen.headers['x-secret'], undefined);
    assert.equal(seen.headers['x-real-ip'], '127.0.0.2', "the client's own value is replaced");
    assert.equal(seen.headers['x-orig'], 'GET shop.example.com /t/a/b');
    const id = seen.headers['x-request-id'] as string;
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(seen.headers['x-trace'], `same ${id}`, 'one uuid per request');
    await send('/t/x');
    assert.notEqual(b.seen.at(-1)!.headers['x-request-id'], id, 'a new uuid for the next request');
    await r.remove();
  });

  it('a rule that sets X-Request-ID gives the request its id: the backend and Fulcrum\'s own answers agree', async () => {
    const fwd = await rule({ path_prefix: '/rid' }, { transforms: { add_request_headers: { 'X-Request-ID': 'rid-${method}-${request_id}' } } });
    const fixed = await rule({ path_prefix: '/rid-fixed' }, { priority: 1, action: { type: 'FIXED_RESPONSE', status_code: 200, body: 'ok' }, transforms: { add_request_headers: { 'X-Request-ID': 'fixed-${method}' } } });
    await send('/rid/x', { headers: { 'x-request-id': 'client-1' } });
    assert.equal(b.seen.at(-1)!.headers['x-request-id'], 'rid-GET-client-1');
    const answered = await send('/rid-fixed', { headers: { 'x-request-id': 'client-2' } });
    assert.equal(answered.headers['x-request-id'], 'fixed-GET');
    await fwd.remove();
    await fixed.remove();
  });

  it('a WebSocket handshake is routed by rules, with the URL rewritten', async () => {
    const r = await rule({ path_prefix: '/ws' }, { transforms: { url_rewrite: '^/ws -> /socket' } });
    const ws = new WebSocket(`ws://127.0.0.1:${lb.port}/ws`);
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (data: Buffer) => resolve(data.toString()));
      ws.once('error', reject);
    });
    ws.close();
    assert.equal(reply, 'b:hello');
    await r.remove();
  });
});

describe('dry run', () => {
  let hashed: LbSetup;
  let backends: TestBackend[];
  before(async () => {
    backends = await Promise.all(['h1', 'h2', 'h3', 'h4'].map((n) => startBackend(n)));
    hashed = await setupLb(backends, { fulcrum: t, pool: { algorithm: 'IP_HASH' } });
  });
  after(() => Promise.all(backends.map((x) => x.close())));

  const dry = (body: Record<string, unknown>) => t.api.post('/api/v1/routing-rules/test', { host: 'app.example.com', ...body });

  it('names the rule, pool and backend that live traffic gets, and counts nothing', async () => {
    const hp = await t.api.post('/api/v1/pools', { name: 'hashed-b', algorithm: 'IP_HASH' });
    for (const x of backends) await t.api.post(`/api/v1/pools/${hp.body.pool_id}/backends`, { name: `${x.name}b`, ip_address: '127.0.0.1', port: x.port });
    const r = await t.api.post('/api/v1/routing-rules', {
      name: 'api',
      priority: 10,
      match: { paths: ['/api/*'], listener_ids: [hashed.listenerId] },
      action: { type: 'FORWARD', pool_id: hp.body.pool_id },
      transforms: { add_request_headers: { 'X-Real-IP': '${client_ip}' }, remove_request_headers: ['Authorization'], url_rewrite: '^/api/(.*) -> /v1/$1' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const ids = new Map((await t.api.get(`/api/v1/pools/${hp.body.pool_id}/backends`)).body.backends.map((x: { name: string; server_id: string }) => [x.server_id, x.name.slice(0, -1)]));
    const seenBackends = new Set<string>();
    for (let i = 2; i <= 12; i++) {
      const ip = `127.0.0.${i}`;
      const test = await dry({ path: '/api/users/1', listener_id: hashed.listenerId, source_ip: ip, headers: { Authorization: 'Bearer x' } });
      assert.equal(test.status, 200, JSON.stringify(test.body));
      assert.deepEqual(test.body.matched_rule, { rule_id: r.body.rule_id, name: 'api', priority: 10 });
      assert.equal(test.body.selected_pool, hp.body.pool_id);
      assert.deepEqual(test.body.transforms_applied, { headers_added: ['X-Real-IP'], headers_removed: ['Authorization'], url_rewritten: '/api/users/1 -> /v1/users/1' });
      assert.equal(test.body.rate_limit_status, 'ALLOWED');
      assert.equal(test.body.acl_status, 'ALLOWED');
      const live = await send('/api/users/1', { port: hashed.port, from: ip });
      assert.equal(live.body, ids.get(test.body.selected_backend), `dry run and live agree for ${ip}`);
      seenBackends.add(live.body);
    }
    assert.ok(seenBackends.size > 1, 'the addresses spread over several backends, so agreement is not luck');
    const hits = (await t.api.get(`/api/v1/routing-rules/${r.body.rule_id}`)).body.hit_count_last_hour;
    assert.equal(hits, 11, 'live requests counted, dry runs not');

    const none = await dry({ path: '/other', listener_id: hashed.listenerId, source_ip: '127.0.0.9' });
    assert.equal(none.body.matched_rule, null);
    assert.equal(none.body.selected_pool, hashed.poolId, 'no rule: the listener default pool');
    const defaults = new Map((await t.api.get(`/api/v1/pools/${hashed.poolId}/backends`)).body.backends.map((x: { name: string; server_id: string }) => [x.server_id, x.name]));
    assert.equal((await send('/other', { port: hashed.port, from: '127.0.0.9' })).body, defaults.get(none.body.selected_backend));
    const noListener = await dry({ path: '/api/x' });
    assert.equal(noListener.body.matched_rule, null, 'a rule narrowed to a listener needs that listener');
    assert.equal(noListener.body.selected_pool, null);
    assert.match(noListener.body.reason, /no listener_id/);
    await t.api.delete(`/api/v1/routing-rules/${r.body.rule_id}`);
  });

  it('reports what a redirect_to_https listener does, removals of Fulcrum\'s own fields, and IPv6 hosts', async () => {
    const redirecting = await t.api.post(`/api/v1/load-balancers/${lb.lbId}/listeners`, {
      name: 'to-https', protocol: 'HTTP', bind_address: '127.0.0.1', port: await freePort(), default_pool_id: lb.poolId, redirect_to_https: { enabled: true, port: 8443 },
    });
    assert.equal(redirecting.status, 201, JSON.stringify(redirecting.body));
    const r = await dry({ path: '/a?b=1', host: 'shop.example.com', listener_id: redirecting.body.listener_id });
    assert.equal(r.body.action, 'REDIRECT_TO_HTTPS');
    assert.equal(r.body.response.location, 'https://shop.example.com:8443/a?b=1');
    const live = await send('/a?b=1', { host: 'shop.example.com', port: redirecting.body.port });
    assert.equal(live.headers.location, r.body.response.location, 'the same redirect live');

    const strip = await rule({ hosts: ['2001:db8::1'] }, { transforms: { remove_request_headers: ['X-Forwarded-For', 'X-Absent'] } });
    const v6 = await dry({ host: '2001:db8::1', path: '/', listener_id: lb.listenerId });
    assert.equal(v6.body.matched_rule?.rule_id, strip.id);
    assert.deepEqual(v6.body.transforms_applied.headers_removed, ['X-Forwarded-For']);
    assert.equal((await dry({ host: '[2001:db8::1]:8080', path: '/', listener_id: lb.listenerId })).body.matched_rule?.rule_id, strip.id);
    await strip.remove();
  });

  it('reports a redirect or fixed response, and refuses a listener that does not exist', async () => {
    const r = await rule({ path_prefix: '/moved' }, { action: { type: 'REDIRECT', url: 'https://x.example.com', status_code: 302, keep_path_and_query: true } });
    const test = await dry({ path: '/moved/a?b=1', listener_id: lb.listenerId });
    assert.equal(test.body.action, 'REDIRECT');
    assert.deepEqual(test.body.response, { status_code: 302, location: 'https://x.example.com/moved/a?b=1' });
    assert.equal(test.body.selected_pool, null);
    await r.remove();
    assertError(await dry({ path: '/', listener_id: 'listener-nope' }), 400, 'VALIDATION_ERROR');
    assertError(await dry({ path: '/', source_ip: 'not-an-ip' }), 400, 'VALIDATION_ERROR');
  });
});
