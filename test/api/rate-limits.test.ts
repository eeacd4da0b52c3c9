import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, fieldsOf, ISO_SECONDS } from '../helpers/assertions.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

/** Seed 000 §7, "Create a Rate Limit Rule", word for word. */
const SEED_BODY = {
  name: 'Per-IP API Rate Limit',
  scope: 'PER_SOURCE_IP',
  match: {
    pools: ['pool-api-production'],
    paths: ['/api/*'],
  },
  limits: {
    requests_per_second: 100,
    burst_size: 200,
    requests_per_minute: 3000,
    requests_per_hour: 100000,
  },
  action_on_limit: {
    status_code: 429,
    headers: {
      'Retry-After': '${retry_after_seconds}',
      'X-RateLimit-Limit': '${limit}',
      'X-RateLimit-Remaining': '${remaining}',
      'X-RateLimit-Reset': '${reset_timestamp}',
    },
    body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}}',
  },
  exemptions: {
    source_ips: ['10.0.0.0/8'],
    headers: { 'X-Internal-Service': ['true'] },
    api_keys: ['key-internal-service-*'],
  },
  enabled: true,
};

const BASE = '/api/v1/rate-limits';

describe('rate limit API', () => {
  let t: TestFulcrum;
  let acmePool: string;
  before(async () => {
    t = await startTestFulcrum();
    const pool = await t.api.post('/api/v1/pools', { name: 'API Production Pool' });
    assert.equal(pool.status, 201, JSON.stringify(pool.body));
    assert.equal(pool.body.pool_id, 'pool-api-production');
    const other = await t.api.post('/api/v1/pools', { name: 'Acme Pool', org_id: 'acme' });
    assert.equal(other.status, 201, JSON.stringify(other.body));
    acmePool = other.body.pool_id;
  });
  after(() => t.close());

  const total = async () => (await t.api.get(`${BASE}?per_page=500`)).body.pagination.total as number;

  /** Creates a rule that must be accepted; `name` must be unique in the file. */
  async function create(name: string, fields: Record<string, unknown> = {}) {
    const res = await t.api.post(BASE, { name, scope: 'PER_SOURCE_IP', limits: { requests_per_second: 10 }, ...fields });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body;
  }

  it("creates the seed's example: 201 with the seed's fields first, the whole rule and its version as ETag", async () => {
    const res = await t.api.post(BASE, SEED_BODY);
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual(Object.keys(res.body).slice(0, 4), ['rate_limit_id', 'name', 'status', 'created_at']);
    assert.equal(res.body.rate_limit_id, 'rl-per-ip-api');
    assert.equal(res.body.name, 'Per-IP API Rate Limit');
    assert.equal(res.body.status, 'ACTIVE');
    assert.match(res.body.created_at, ISO_SECONDS);
    assert.equal(res.headers.get('etag'), '"1"');
    const { rate_limit_id: _id, name: _name, status: _status, created_at, updated_at, ...rest } = res.body;
    assert.equal(updated_at, created_at);
    assert.deepEqual(rest, {
      description: null,
      scope: 'PER_SOURCE_IP',
      header: null,
      match: SEED_BODY.match,
      limits: SEED_BODY.limits,
      action_on_limit: SEED_BODY.action_on_limit,
      exemptions: SEED_BODY.exemptions,
      headers_on_allowed: false,
      enabled: true,
      tags: {},
      org_id: 'default',
      project_id: 'default',
      version: 1,
    });

    const got = await t.api.get(`${BASE}/rl-per-ip-api`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, res.body);
    assert.equal(got.headers.get('etag'), '"1"');

    // The same name again gets an id of its own.
    const again = await t.api.post(BASE, SEED_BODY);
    assert.equal(again.status, 201);
    assert.match(again.body.rate_limit_id, /^rl-per-ip-api-[a-z0-9]{5}$/);
    assert.equal((await t.api.delete(`${BASE}/${again.body.rate_limit_id}`)).status, 200);
  });

  it('stores every default, so what GET shows is what applies; networks are stored canonical', async () => {
    const rule = await create('defaults', {
      scope: 'GLOBAL',
      limits: { requests_per_second: 50, requests_per_hour: 1000 },
      exemptions: { source_ips: [' 192.0.2.7 ', '2001:DB8::/32', '::ffff:198.51.100.0/120'] },
    });
    assert.equal(rule.rate_limit_id, 'rl-defaults');
    assert.deepEqual(rule.limits, { requests_per_second: 50, burst_size: 50, requests_per_hour: 1000 });
    assert.deepEqual(rule.match, {});
    assert.deepEqual(rule.action_on_limit, {
      status_code: 429,
      headers: { 'Retry-After': '${retry_after_seconds}' },
      body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}}',
    });
    assert.deepEqual(rule.exemptions, { source_ips: ['192.0.2.7/32', '2001:db8::/32', '198.51.100.0/24'], headers: {}, api_keys: [] });
    assert.equal(rule.headers_on_allowed, false);
    assert.equal(rule.enabled, true);
    assert.equal(rule.header, null);
    assert.deepEqual((await t.api.get(`${BASE}/rl-defaults`)).body, rule);

    // Headers given are taken as given (none at all included); a disabled rule is DISABLED.
    const bare = await create('bare refusal', { action_on_limit: { headers: {} }, enabled: false, description: 'no headers', headers_on_allowed: true });
    assert.deepEqual(bare.action_on_limit.headers, {});
    assert.equal(bare.action_on_limit.status_code, 429);
    assert.equal(bare.status, 'DISABLED');
    assert.equal(bare.description, 'no headers');
    assert.equal(bare.headers_on_allowed, true);

    const perHeader = await create('per tenant', { scope: 'PER_HEADER', header: 'X-Tenant-ID', limits: { requests_per_minute: 600 } });
    assert.equal(perHeader.header, 'X-Tenant-ID');
    assert.deepEqual(perHeader.limits, { requests_per_minute: 600 });
  });

  describe('refuses what cannot apply, naming each field, writing nothing', () => {
    const cases: [string, Record<string, unknown>, string[]][] = [
      ['PER_HEADER without header', { scope: 'PER_HEADER' }, ['header']],
      ['header without PER_HEADER', { scope: 'PER_SOURCE_IP', header: 'X-Tenant' }, ['header']],
      ['header that is not a field name', { scope: 'PER_HEADER', header: 'X Tenant' }, ['header']],
      ['no limit at all', { limits: {} }, ['limits']],
      ['burst without requests_per_second', { limits: { requests_per_minute: 10, burst_size: 5 } }, ['limits.burst_size']],
      ['burst of 0', { limits: { requests_per_second: 10, burst_size: 0 } }, ['limits.burst_size']],
      ['path without a leading slash', { match: { paths: ['/ok', 'api/*'] } }, ['match.paths[1]']],
      ['unknown pool', { match: { pools: ['pool-api-production', 'pool-nope'] } }, ['match.pools[1]']],
      ['unknown placeholder in a header', { action_on_limit: { headers: { 'Retry-After': '${retry_after}' } } }, ['action_on_limit.headers.Retry-After']],
      ['unknown placeholder in the body', { action_on_limit: { body: '{"wait": ${retry_after_secs}}' } }, ['action_on_limit.body']],
      ['bad header name in the refusal', { action_on_limit: { headers: { 'Bad Header': 'x' } } }, ['action_on_limit.headers.Bad Header']],
      ['header value with a line break', { action_on_limit: { headers: { 'X-A': 'a\r\nSet-Cookie: x=1' } } }, ['action_on_limit.headers.X-A']],
      ['the same header twice', { action_on_limit: { headers: { 'X-A': '1', 'x-a': '2' } } }, ['action_on_limit.headers.x-a']],
      [
        'exemption networks that do not parse',
        { exemptions: { source_ips: ['10.0.0.0/8', 'nonsense', '10.0.0.0/33', '10.1.0.0/8', '10.0.0.0/8'] } },
        ['exemptions.source_ips[1]', 'exemptions.source_ips[2]', 'exemptions.source_ips[3]', 'exemptions.source_ips[4]'],
      ],
      ['exemption header name', { exemptions: { headers: { 'Bad:Name': ['1'] } } }, ['exemptions.headers.Bad:Name']],
      ['a status that is no error', { action_on_limit: { status_code: 200 } }, ['action_on_limit.status_code']],
      ['an unknown scope', { scope: 'PER_USER' }, ['scope']],
      ['an unknown field', { limits: { rps: 10 } }, ['limits.rps']],
    ];
    for (const [what, fields, expected] of cases) {
      it(what, async () => {
        const before = await total();
        const err = assertError(
          await t.api.post(BASE, { name: `bad ${what}`, scope: 'PER_SOURCE_IP', limits: { requests_per_second: 10 }, ...fields }),
          400,
          'VALIDATION_ERROR',
        );
        assert.deepEqual(fieldsOf(err), expected);
        for (const f of err.details.fields) assert.ok(f.reason.length > 0);
        assert.equal(await total(), before);
      });
    }

    it('a pool of another organisation', async () => {
      const err = assertError(await t.api.post(BASE, { ...SEED_BODY, name: 'cross org', match: { pools: [acmePool] } }), 400, 'VALIDATION_ERROR');
      assert.deepEqual(fieldsOf(err), ['match.pools[0]']);
      assert.match(err.details.fields[0].reason, /organisation 'default'/);
      // The same pool is fine for a rule of its own organisation.
      const own = await create('acme rule', { org_id: 'acme', match: { pools: [acmePool] } });
      assert.equal(own.org_id, 'acme');
    });

    it('every problem at once', async () => {
      const before = await total();
      const err = assertError(
        await t.api.post(BASE, {
          name: 'many problems',
          scope: 'PER_HEADER',
          limits: { burst_size: 3 },
          match: { paths: ['x'], pools: ['pool-missing'] },
          action_on_limit: { body: '${oops}' },
          exemptions: { source_ips: ['300.1.1.1'] },
        }),
        400,
        'VALIDATION_ERROR',
      );
      assert.deepEqual(fieldsOf(err), ['header', 'limits', 'limits.burst_size', 'match.paths[0]', 'match.pools[0]', 'action_on_limit.body', 'exemptions.source_ips[0]']);
      assert.equal(await total(), before);
    });
  });

  it('lists in evaluation order (creation order, kept by updates) with pagination and a summary', async () => {
    // Made within a second or across one: either way this is their order (created_at, then id).
    const made = [await create('order a'), await create('order b', { enabled: false }), await create('order c')];
    const patched = await t.api.patch(`${BASE}/${made[0].rate_limit_id}`, { name: 'order a, renamed' });
    assert.equal(patched.status, 200);
    const all = await t.api.get(`${BASE}?per_page=500`);
    assert.equal(all.status, 200);
    const ids: string[] = all.body.rate_limits.map((r: { rate_limit_id: string }) => r.rate_limit_id);
    const madeIds = made.map((r) => r.rate_limit_id);
    assert.deepEqual(ids.filter((id) => madeIds.includes(id)), madeIds);
    assert.equal(all.body.rate_limits.find((r: { rate_limit_id: string }) => r.rate_limit_id === madeIds[0]).name, 'order a, renamed');
    for (let i = 1; i < ids.length; i++) {
      const [a, b] = [all.body.rate_limits[i - 1], all.body.rate_limits[i]];
      assert.ok(a.created_at < b.created_at || (a.created_at === b.created_at && a.rate_limit_id < b.rate_limit_id), `${a.rate_limit_id} before ${b.rate_limit_id}`);
    }
    const n = ids.length;
    assert.deepEqual(all.body.pagination, { page: 1, per_page: 500, total: n, total_pages: 1 });
    assert.equal(all.body.summary.total, n);
    assert.equal(all.body.summary.active + all.body.summary.disabled, n);
    assert.equal(all.body.rate_limits.find((r: { rate_limit_id: string }) => r.rate_limit_id === madeIds[1]).status, 'DISABLED');

    const paged: string[] = [];
    for (let page = 1; page <= Math.ceil(n / 2); page++) {
      const res = await t.api.get(`${BASE}?page=${page}&per_page=2`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.pagination, { page, per_page: 2, total: n, total_pages: Math.ceil(n / 2) });
      paged.push(...res.body.rate_limits.map((r: { rate_limit_id: string }) => r.rate_limit_id));
    }
    assert.deepEqual(paged, ids);
    const beyond = await t.api.get(`${BASE}?page=${n + 1}&per_page=2`);
    assert.deepEqual(beyond.body.rate_limits, []);
    assertError(await t.api.get(`${BASE}?per_page=0`), 400, 'INVALID_PARAMETER');

    // pool_id: the rules that can apply to that pool (theirs, and those without pools).
    const forPool = await t.api.get(`${BASE}?per_page=500&pool_id=pool-api-production`);
    const forPoolIds = forPool.body.rate_limits.map((r: { rate_limit_id: string }) => r.rate_limit_id);
    assert.ok(forPoolIds.includes('rl-per-ip-api'));
    assert.ok(forPoolIds.includes(made[0].rate_limit_id));
    assert.ok(!forPoolIds.includes('rl-acme'), 'the acme rule is for the acme pool only');
    assert.equal(forPool.body.pagination.total, forPoolIds.length);
  });

  it('PATCH changes the given fields, replaces objects whole with their defaults, and bumps the version', async () => {
    const rule = await create('patch me', { limits: { requests_per_second: 10, burst_size: 40 }, exemptions: { source_ips: ['10.0.0.0/8'] } });
    const url = `${BASE}/${rule.rate_limit_id}`;
    const res = await t.api.patch(url, { name: 'patched', limits: { requests_per_second: 20 }, tags: { team: 'api' }, description: 'x' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.headers.get('etag'), '"2"');
    assert.equal(res.body.version, 2);
    assert.equal(res.body.name, 'patched');
    assert.deepEqual(res.body.limits, { requests_per_second: 20, burst_size: 20 });
    assert.deepEqual(res.body.tags, { team: 'api' });
    assert.deepEqual(res.body.exemptions, rule.exemptions, 'untouched');
    assert.equal(res.body.rate_limit_id, rule.rate_limit_id);
    assert.equal(res.body.created_at, rule.created_at);
    assert.deepEqual((await t.api.get(url)).body, res.body);

    const cleared = await t.api.patch(url, { description: null, action_on_limit: { status_code: 503 }, exemptions: {} });
    assert.equal(cleared.status, 200);
    assert.equal(cleared.body.description, null);
    assert.deepEqual(cleared.body.action_on_limit, { status_code: 503, headers: { 'Retry-After': '${retry_after_seconds}' }, body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}}' });
    assert.deepEqual(cleared.body.exemptions, { source_ips: [], headers: {}, api_keys: [] });

    const disabled = await t.api.patch(url, { enabled: false });
    assert.equal(disabled.body.status, 'DISABLED');
    assert.equal(disabled.body.version, 4);
  });

  it('PATCH of the scope: PER_HEADER needs a header; leaving it drops the header', async () => {
    const rule = await create('scope changes');
    const url = `${BASE}/${rule.rate_limit_id}`;
    const version = rule.version;
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, { scope: 'PER_HEADER' }), 400, 'VALIDATION_ERROR')), ['header']);
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, { header: 'X-Tenant' }), 400, 'VALIDATION_ERROR')), ['header']);
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, { limits: { burst_size: 4 } }), 400, 'VALIDATION_ERROR')), ['limits', 'limits.burst_size']);
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, {}), 400, 'VALIDATION_ERROR')), ['(body)']);
    assert.equal((await t.api.get(url)).body.version, version, 'nothing written');

    const keyed = await t.api.patch(url, { scope: 'PER_HEADER', header: 'X-Tenant' });
    assert.equal(keyed.status, 200, JSON.stringify(keyed.body));
    assert.equal(keyed.body.header, 'X-Tenant');
    assert.deepEqual(fieldsOf(assertError(await t.api.patch(url, { header: null }), 400, 'VALIDATION_ERROR')), ['header']);
    const global = await t.api.patch(url, { scope: 'GLOBAL' });
    assert.equal(global.status, 200);
    assert.equal(global.body.scope, 'GLOBAL');
    assert.equal(global.body.header, null);
    assert.deepEqual(
      fieldsOf(assertError(await t.api.patch(url, { scope: 'PER_RULE', header: 'X-Tenant' }), 400, 'VALIDATION_ERROR')),
      ['header'],
    );
  });

  it('If-Match and version: a stale one is a VERSION_CONFLICT and changes nothing', async () => {
    const rule = await create('versions');
    const url = `${BASE}/${rule.rate_limit_id}`;
    assert.equal((await t.api.patch(url, { name: 'v2' }, { 'if-match': '"1"' })).status, 200);
    const stale = assertError(await t.api.patch(url, { name: 'lost update' }, { 'if-match': '"1"' }), 409, 'VERSION_CONFLICT');
    assert.equal(stale.details.current_version, 2);
    assertError(await t.api.patch(url, { name: 'lost update', version: 1 }), 409, 'VERSION_CONFLICT');
    assertError(await t.api.patch(url, { name: 'x' }, { 'if-match': 'yesterday' }), 400, 'INVALID_PARAMETER');
    assert.equal((await t.api.get(url)).body.name, 'v2');
    assert.equal((await t.api.patch(url, { name: 'v3', version: 2 })).status, 200);
    assertError(await t.api.delete(url, { 'if-match': '"2"' }), 409, 'VERSION_CONFLICT');
    assert.equal((await t.api.get(url)).status, 200);
    const del = await t.api.delete(url, { 'if-match': '"3"' });
    assert.equal(del.status, 200);
    assert.equal(del.body.rate_limit_id, rule.rate_limit_id);
    assert.equal(del.body.status, 'DELETED');
    assert.match(del.body.deleted_at, ISO_SECONDS);
  });

  it('DELETE removes the rule; an unknown id is RATE_LIMIT_NOT_FOUND everywhere', async () => {
    const rule = await create('delete me');
    const url = `${BASE}/${rule.rate_limit_id}`;
    assert.equal((await t.api.delete(url)).status, 200);
    const err = assertError(await t.api.get(url), 404, 'RATE_LIMIT_NOT_FOUND');
    assert.equal(err.details.rate_limit_id, rule.rate_limit_id);
    assertError(await t.api.patch(url, { name: 'x' }), 404, 'RATE_LIMIT_NOT_FOUND');
    assertError(await t.api.delete(url), 404, 'RATE_LIMIT_NOT_FOUND');
    assertError(await t.api.get(`${BASE}/rl-never-made`), 404, 'RATE_LIMIT_NOT_FOUND');
    // The same name again: a fresh rule under the same id.
    const again = await create('delete me');
    assert.equal(again.rate_limit_id, rule.rate_limit_id);
    assert.equal(again.version, 1);
  });

  it('status: a client with no traffic has its full allowance under every rule that can apply', async () => {
    await create('status other pool', { org_id: 'acme', match: { pools: [acmePool] } });
    await create('status disabled', { enabled: false });
    const res = await t.api.get(`${BASE}/status?source_ip=203.0.113.50&pool_id=pool-api-production`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.source_ip, '203.0.113.50');
    const seed = res.body.limits.find((l: { rule_id: string }) => l.rule_id === 'rl-per-ip-api');
    assert.deepEqual(seed, {
      rule_id: 'rl-per-ip-api',
      name: 'Per-IP API Rate Limit',
      scope: 'PER_SOURCE_IP',
      key: '203.0.113.50',
      exempt: false,
      current_rate_rps: 0,
      limit_rps: 100,
      remaining_burst: 200,
      requests_this_minute: 0,
      limit_per_minute: 3000,
      requests_this_hour: 0,
      limit_per_hour: 100000,
      is_limited: false,
      next_reset: null,
    });
    const names = res.body.limits.map((l: { name: string }) => l.name);
    assert.ok(!names.includes('status disabled'), 'disabled rules do not apply');
    assert.ok(!names.includes('status other pool'), 'rules of other pools do not apply');
    for (const l of res.body.limits) assert.equal(l.is_limited, false);

    const exempt = await t.api.get(`${BASE}/status?source_ip=10.1.2.3&org_id=default`);
    assert.equal(exempt.body.limits.find((l: { rule_id: string }) => l.rule_id === 'rl-per-ip-api').exempt, true);
    const acme = await t.api.get(`${BASE}/status?source_ip=203.0.113.50&org_id=acme`);
    assert.ok(acme.body.limits.every((l: { rule_id: string }) => l.rule_id.startsWith('rl-acme') || l.rule_id.startsWith('rl-status-other-pool')));
    const perHeader = await t.api.get(`${BASE}/status?source_ip=203.0.113.50&header_value=acme`);
    assert.match(perHeader.body.limits.find((l: { name: string }) => l.name === 'per tenant').key, /^sha256:/);

    assert.deepEqual(fieldsOf(assertError(await t.api.get(`${BASE}/status`), 400, 'INVALID_PARAMETER')), ['source_ip']);
    assert.deepEqual(fieldsOf(assertError(await t.api.get(`${BASE}/status?source_ip=not-an-ip`), 400, 'INVALID_PARAMETER')), ['source_ip']);
    assertError(await t.api.get(`${BASE}/status?source_ip=203.0.113.50&pool_id=pool-nope`), 404, 'POOL_NOT_FOUND');
  });

  it('metrics: the window is 5m, 1h (default) or 24h; with no traffic every count is zero', async () => {
    const empty = { total_requests_evaluated: 0, total_requests_limited: 0, limit_rate_percent: 0, top_limited_ips: [], rules_triggered: [] };
    const res = await t.api.get(`${BASE}/metrics?window=1h`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { window: '1h', ...empty });
    assert.deepEqual((await t.api.get(`${BASE}/metrics`)).body, { window: '1h', ...empty });
    assert.deepEqual((await t.api.get(`${BASE}/metrics?window=5m&top=3`)).body, { window: '5m', ...empty });
    assert.deepEqual((await t.api.get(`${BASE}/metrics?window=24h`)).body, { window: '24h', ...empty });
    assert.deepEqual(fieldsOf(assertError(await t.api.get(`${BASE}/metrics?window=2h`), 400, 'INVALID_PARAMETER')), ['window']);
    assert.deepEqual(fieldsOf(assertError(await t.api.get(`${BASE}/metrics?top=0`), 400, 'INVALID_PARAMETER')), ['top']);
  });
});
