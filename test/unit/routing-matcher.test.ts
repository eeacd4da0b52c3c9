/**
 * The routing rule matcher (src/policy/routing/matcher.ts): each condition alone and combined,
 * priority order, disabled rules, organisations, invalid rules — and, above all, that the index
 * answers exactly what a plain scan of every rule answers, on random rule sets built from a small
 * vocabulary so that rules overlap (a seeded generator: a failure names its seed and reproduces).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FieldProblem } from '../../src/control/errors.ts';
import type { RoutingRule, RuleAction, RuleMatch } from '../../src/model/routing-rule.ts';
import { compileRoutes } from '../../src/policy/routing/matcher.ts';
import { compileRule, parseHostPattern, parseQuery, regexLiteralPrefix } from '../../src/policy/routing/rule.ts';
import type { RequestFacts } from '../../src/policy/request.ts';
import { seeded } from '../balancing/fake-load.ts';

const FORWARD: RuleAction = { type: 'FORWARD', pool_id: 'pool-1' };
let counter = 0;

function rule(match: RuleMatch, more: Partial<RoutingRule> = {}): RoutingRule {
  const id = more.rule_id ?? `rule-${++counter}`;
  return {
    rule_id: id,
    name: id,
    description: null,
    priority: 100,
    match,
    action: FORWARD,
    transforms: {},
    enabled: true,
    tags: {},
    org_id: 'org-a',
    project_id: 'proj-a',
    created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z',
    version: 1,
    ...more,
  };
}

function req(more: Partial<RequestFacts> = {}): RequestFacts {
  return {
    method: 'GET',
    host: 'api.example.com',
    path: '/',
    query: '',
    headers: {},
    clientIp: '203.0.113.50',
    listenerId: 'lis-1',
    orgId: 'org-a',
    ...more,
  };
}

/** Whether a rule with this match alone routes the request (compiled through the index). */
function matches(match: RuleMatch, facts: Partial<RequestFacts>): boolean {
  const r = rule(match);
  return compileRoutes([r]).match(req(facts)) === r;
}

/** [what, match, request, matches?] — one condition kind at a time. */
type Case = [string, RuleMatch, Partial<RequestFacts>, boolean];

const hostCases: Case[] = [
  ['exact host', { hosts: ['api.example.com'] }, { host: 'api.example.com' }, true],
  ['exact host, other host', { hosts: ['api.example.com'] }, { host: 'www.example.com' }, false],
  ['exact host, request in upper case', { hosts: ['api.example.com'] }, { host: 'API.Example.COM' }, true],
  ['exact host, pattern in upper case', { hosts: ['API.EXAMPLE.com'] }, { host: 'api.example.com' }, true],
  ['exact host, trailing dot on the request', { hosts: ['api.example.com'] }, { host: 'api.example.com.' }, true],
  ['exact host, trailing dot on the pattern', { hosts: ['api.example.com.'] }, { host: 'api.example.com' }, true],
  ['exact host is not a suffix test', { hosts: ['example.com'] }, { host: 'api.example.com' }, false],
  ['exact host is not a prefix test', { hosts: ['api.example.com'] }, { host: 'api.example.com.evil.net' }, false],
  ['any of several hosts', { hosts: ['a.example.com', 'api.example.com'] }, { host: 'api.example.com' }, true],
  ['wildcard, one label', { hosts: ['*.example.com'] }, { host: 'api.example.com' }, true],
  ['wildcard, two labels', { hosts: ['*.example.com'] }, { host: 'a.b.example.com' }, true],
  ['wildcard, five labels', { hosts: ['*.example.com'] }, { host: 'a.b.c.d.e.example.com' }, true],
  ['wildcard, not the apex', { hosts: ['*.example.com'] }, { host: 'example.com' }, false],
  ['wildcard, not a look-alike', { hosts: ['*.example.com'] }, { host: 'api.badexample.com' }, false],
  ['wildcard, not another domain', { hosts: ['*.example.com'] }, { host: 'api.example.org' }, false],
  ['wildcard, case', { hosts: ['*.EXAMPLE.com'] }, { host: 'Api.Example.Com' }, true],
  ['wildcard, trailing dot', { hosts: ['*.example.com'] }, { host: 'api.example.com.' }, true],
  ['deep wildcard, deeper host', { hosts: ['*.b.example.com'] }, { host: 'x.a.b.example.com' }, true],
  ['deep wildcard, shallower host', { hosts: ['*.b.example.com'] }, { host: 'a.example.com' }, false],
  ['IPv6 literal host', { hosts: ['[2001:db8::1]'] }, { host: '[2001:DB8::1]' }, true],
  ['no host on the request', { hosts: ['api.example.com'] }, { host: '' }, false],
  ['no hosts condition: any host', {}, { host: 'whatever.test' }, true],
  ['no hosts condition: no host', {}, { host: '' }, true],
];

const pathCases: Case[] = [
  ['glob /v2/*', { paths: ['/v2/*'] }, { path: '/v2/users/123' }, true],
  ['glob /v2/* with nothing after', { paths: ['/v2/*'] }, { path: '/v2/' }, true],
  ['glob /v2/* without the slash', { paths: ['/v2/*'] }, { path: '/v2' }, false],
  ['glob /v2/* elsewhere', { paths: ['/v2/*'] }, { path: '/v3/users' }, false],
  ['glob without a star is exact', { paths: ['/health'] }, { path: '/health' }, true],
  ['glob without a star is not a prefix', { paths: ['/health'] }, { path: '/healthz' }, false],
  ['glob with an inner star', { paths: ['/v2/*/orders'] }, { path: '/v2/users/7/orders' }, true],
  ['glob with an inner star, wrong end', { paths: ['/v2/*/orders'] }, { path: '/v2/users/7/orders/1' }, false],
  ['glob with an inner star needs its middle', { paths: ['/v2/*/orders'] }, { path: '/v2/orders' }, false],
  ['glob with a leading star', { paths: ['*.png'] }, { path: '/static/a/logo.png' }, true],
  ['glob *', { paths: ['*'] }, { path: '/' }, true],
  ['glob with two inner stars', { paths: ['/a/*/b/*/c'] }, { path: '/a/x/b/y/c' }, true],
  ['glob with two inner stars, one missing', { paths: ['/a/*/b/*/c'] }, { path: '/a/x/c/b' }, false],
  ['glob metacharacters are literal', { paths: ['/a.b/(x)?/*'] }, { path: '/a.b/(x)?/1' }, true],
  ['glob metacharacters are literal, no regex', { paths: ['/a.b/*'] }, { path: '/aXb/1' }, false],
  ['glob is case-sensitive', { paths: ['/V2/*'] }, { path: '/v2/x' }, false],
  ['any of several globs', { paths: ['/v1/*', '/v2/*'] }, { path: '/v2/x' }, true],
  ['globs of one prefix', { paths: ['/v2/a*', '/v2/*b'] }, { path: '/v2/xb' }, true],
  ['path_prefix', { path_prefix: '/v2' }, { path: '/v2/users' }, true],
  ['path_prefix is a string prefix, not a segment', { path_prefix: '/v2' }, { path: '/v20' }, true],
  ['path_prefix, equal', { path_prefix: '/v2' }, { path: '/v2' }, true],
  ['path_prefix, shorter path', { path_prefix: '/v2/' }, { path: '/v2' }, false],
  ['path_exact', { path_exact: '/v2/users' }, { path: '/v2/users' }, true],
  ['path_exact, longer path', { path_exact: '/v2/users' }, { path: '/v2/users/' }, false],
  ['path_regex anchored with a literal start', { path_regex: '^/api/v[0-9]+/' }, { path: '/api/v12/x' }, true],
  ['path_regex anchored with a literal start, no match', { path_regex: '^/api/v[0-9]+/' }, { path: '/api/vx/x' }, false],
  ['path_regex anchored, other start', { path_regex: '^/api/v[0-9]+/' }, { path: '/x/api/v1/' }, false],
  ['path_regex unanchored finds anywhere', { path_regex: 'orders/[0-9]+$' }, { path: '/v2/users/7/orders/12' }, true],
  ['path_regex unanchored, no match', { path_regex: 'orders/[0-9]+$' }, { path: '/v2/orders/x' }, false],
  ['path_regex anchored without a literal start', { path_regex: '^(/a|/b)/x' }, { path: '/b/x' }, true],
  ['path_regex with a top-level alternation', { path_regex: '^/a/x|^/b/y' }, { path: '/b/y' }, true],
  ['path_regex with an optional character', { path_regex: '^/users?/\\d+$' }, { path: '/user/1' }, true],
  ['path_regex escaped slashes', { path_regex: '^\\/v2\\/users' }, { path: '/v2/users/1' }, true],
  ['path_regex is case-sensitive', { path_regex: '^/v2' }, { path: '/V2' }, false],
  ['path_regex sees no query', { path_regex: 'debug' }, { path: '/a', query: 'debug=1' }, false],
  ['path_regex, unicode flag', { path_regex: '^/caf\\u{e9}' }, { path: '/café' }, true],
  ['every path form at once', { paths: ['/v2/*'], path_prefix: '/v2/users', path_regex: '[0-9]$', path_exact: '/v2/users/9' }, { path: '/v2/users/9' }, true],
  ['every path form at once, regex fails', { paths: ['/v2/*'], path_prefix: '/v2/users', path_regex: '[0-9]$', path_exact: '/v2/users/x' }, { path: '/v2/users/x' }, false],
  ['glob and prefix: glob fails', { paths: ['/v2/*/x'], path_prefix: '/v2/users' }, { path: '/v2/users/y' }, false],
  ['glob and prefix: prefix fails', { paths: ['/v2/*'], path_prefix: '/v2/users/' }, { path: '/v2/orders/1' }, false],
  ['prefix and regex: regex fails', { path_prefix: '/v', path_regex: '^/v2/[0-9]+' }, { path: '/v2/abc' }, false],
  ['prefix and regex: prefix fails', { path_prefix: '/v2/1', path_regex: '^/v2/[0-9]+' }, { path: '/v2/23' }, false],
];

const methodCases: Case[] = [
  ['one method', { methods: ['GET'] }, { method: 'GET' }, true],
  ['one method, another', { methods: ['GET'] }, { method: 'POST' }, false],
  ['HEAD is not GET', { methods: ['GET'] }, { method: 'HEAD' }, false],
  ['any of several methods', { methods: ['GET', 'POST', 'DELETE'] }, { method: 'DELETE' }, true],
  ['an unknown method matches no methods list', { methods: ['GET', 'POST'] }, { method: 'PROPFIND' }, false],
  ['no methods condition: an unknown method', {}, { method: 'PROPFIND' }, true],
  ['CONNECT, the last method', { methods: ['CONNECT'] }, { method: 'CONNECT' }, true],
];

const headerCases: Case[] = [
  ['header value', { headers: { 'X-Canary': ['true'] } }, { headers: { 'x-canary': 'true' } }, true],
  ['header, other value', { headers: { 'X-Canary': ['true'] } }, { headers: { 'x-canary': 'false' } }, false],
  ['header values compare with case', { headers: { 'X-Canary': ['true'] } }, { headers: { 'x-canary': 'TRUE' } }, false],
  ['header missing', { headers: { 'X-Canary': ['true'] } }, { headers: {} }, false],
  ['header, any of the values', { headers: { 'X-Env': ['staging', 'prod'] } }, { headers: { 'x-env': 'prod' } }, true],
  ['header name without case', { headers: { 'x-ENV': ['prod'] } }, { headers: { 'x-env': 'prod' } }, true],
  ['header sent several times, one equal', { headers: { Cookie2: ['b'] } }, { headers: { cookie2: ['a', 'b'] } }, true],
  ['header sent several times, none equal', { headers: { Cookie2: ['c'] } }, { headers: { cookie2: ['a', 'b'] } }, false],
  ['header joined by node is one value', { headers: { Accept: ['text/html'] } }, { headers: { accept: 'text/html, application/json' } }, false],
  ['empty header value', { headers: { 'X-Empty': [''] } }, { headers: { 'x-empty': '' } }, true],
  ['two headers, both hold', { headers: { 'X-A': ['1'], 'X-B': ['2'] } }, { headers: { 'x-a': '1', 'x-b': '2' } }, true],
  ['two headers, one fails', { headers: { 'X-A': ['1'], 'X-B': ['2'] } }, { headers: { 'x-a': '1', 'x-b': '3' } }, false],
];

const queryCases: Case[] = [
  ['query parameter', { query: { v: '2' } }, { query: 'v=2' }, true],
  ['query parameter, other value', { query: { v: '2' } }, { query: 'v=3' }, false],
  ['query parameter, missing', { query: { v: '2' } }, { query: '' }, false],
  ['query parameter, one of repeated ones', { query: { v: '2' } }, { query: 'v=1&v=2' }, true],
  ['query decoded %xx', { query: { q: 'a b/c' } }, { query: 'q=a%20b%2Fc' }, true],
  ['query decoded +', { query: { q: 'a b' } }, { query: 'q=a+b' }, true],
  ['query %2B is a plus', { query: { q: 'a+b' } }, { query: 'q=a%2Bb' }, true],
  ['query name decoded', { query: { 'my key': '1' } }, { query: 'my+key=1' }, true],
  ['query parameter without = has the value ""', { query: { debug: '' } }, { query: 'x=1&debug' }, true],
  ['query parameter with = and nothing', { query: { debug: '' } }, { query: 'debug=' }, true],
  ['query parameter without =, other value wanted', { query: { debug: '1' } }, { query: 'debug' }, false],
  ['query, malformed escape stays', { query: { q: '%zz' } }, { query: 'q=%zz' }, true],
  ['query, empty pairs skipped', { query: { a: '1' } }, { query: '&&a=1&' }, true],
  ['query, two parameters', { query: { a: '1', b: '2' } }, { query: 'b=2&a=1' }, true],
  ['query, two parameters, one missing', { query: { a: '1', b: '2' } }, { query: 'a=1' }, false],
];

const sourceCases: Case[] = [
  ['IPv4 CIDR', { source_ips: ['10.0.0.0/8'] }, { clientIp: '10.1.2.3' }, true],
  ['IPv4 CIDR, outside', { source_ips: ['10.0.0.0/8'] }, { clientIp: '11.1.2.3' }, false],
  ['IPv4 single address', { source_ips: ['192.0.2.7'] }, { clientIp: '192.0.2.7' }, true],
  ['IPv4 single address, neighbour', { source_ips: ['192.0.2.7'] }, { clientIp: '192.0.2.8' }, false],
  ['IPv6 CIDR', { source_ips: ['2001:db8::/32'] }, { clientIp: '2001:db8:1::5' }, true],
  ['IPv6 CIDR, outside', { source_ips: ['2001:db8::/32'] }, { clientIp: '2001:db9::5' }, false],
  ['IPv4-mapped client in an IPv4 CIDR', { source_ips: ['198.51.100.0/24'] }, { clientIp: '::ffff:198.51.100.7' }, true],
  ['IPv4-mapped CIDR, IPv4 client', { source_ips: ['::ffff:198.51.100.0/120'] }, { clientIp: '198.51.100.7' }, true],
  ['IPv4 CIDR, IPv6 client', { source_ips: ['0.0.0.0/0'] }, { clientIp: '2001:db8::1' }, false],
  ['any of several CIDRs', { source_ips: ['10.0.0.0/8', '2001:db8::/32'] }, { clientIp: '2001:db8::1' }, true],
];

const listenerCases: Case[] = [
  ['listener', { listener_ids: ['lis-1'] }, { listenerId: 'lis-1' }, true],
  ['listener, another', { listener_ids: ['lis-1'] }, { listenerId: 'lis-2' }, false],
  ['any of several listeners', { listener_ids: ['lis-1', 'lis-2'] }, { listenerId: 'lis-2' }, true],
];

const SEED_MATCH: RuleMatch = { hosts: ['api.example.com'], paths: ['/v2/*'], methods: ['GET', 'POST', 'PUT', 'DELETE'], headers: { 'X-Canary': ['true'] } };
const SEED_REQUEST: Partial<RequestFacts> = { method: 'GET', host: 'api.example.com', path: '/v2/users/123', headers: { 'x-canary': 'true', authorization: 'Bearer token123' }, clientIp: '203.0.113.50' };

const combinedCases: Case[] = [
  ['the seed rule, the seed request', SEED_MATCH, SEED_REQUEST, true],
  ['the seed rule, no canary header', SEED_MATCH, { ...SEED_REQUEST, headers: { authorization: 'Bearer token123' } }, false],
  ['the seed rule, PATCH', SEED_MATCH, { ...SEED_REQUEST, method: 'PATCH' }, false],
  ['the seed rule, other host', SEED_MATCH, { ...SEED_REQUEST, host: 'www.example.com' }, false],
  ['the seed rule, other path', SEED_MATCH, { ...SEED_REQUEST, path: '/v1/users/123' }, false],
  ['every condition kind, all hold', { hosts: ['*.example.com'], path_prefix: '/v2', methods: ['POST'], headers: { 'X-A': ['1'] }, query: { v: '2' }, source_ips: ['10.0.0.0/8'], listener_ids: ['lis-2'] }, { host: 'a.example.com', path: '/v2/x', method: 'POST', headers: { 'x-a': '1' }, query: 'v=2', clientIp: '10.0.0.1', listenerId: 'lis-2' }, true],
  ['every condition kind, listener fails', { hosts: ['*.example.com'], path_prefix: '/v2', methods: ['POST'], headers: { 'X-A': ['1'] }, query: { v: '2' }, source_ips: ['10.0.0.0/8'], listener_ids: ['lis-2'] }, { host: 'a.example.com', path: '/v2/x', method: 'POST', headers: { 'x-a': '1' }, query: 'v=2', clientIp: '10.0.0.1', listenerId: 'lis-1' }, false],
  ['every condition kind, source fails', { hosts: ['*.example.com'], path_prefix: '/v2', methods: ['POST'], headers: { 'X-A': ['1'] }, query: { v: '2' }, source_ips: ['10.0.0.0/8'], listener_ids: ['lis-2'] }, { host: 'a.example.com', path: '/v2/x', method: 'POST', headers: { 'x-a': '1' }, query: 'v=2', clientIp: '11.0.0.1', listenerId: 'lis-2' }, false],
  ['every condition kind, query fails', { hosts: ['*.example.com'], path_prefix: '/v2', methods: ['POST'], headers: { 'X-A': ['1'] }, query: { v: '2' }, source_ips: ['10.0.0.0/8'], listener_ids: ['lis-2'] }, { host: 'a.example.com', path: '/v2/x', method: 'POST', headers: { 'x-a': '1' }, query: 'v=1', clientIp: '10.0.0.1', listenerId: 'lis-2' }, false],
  ['a rule without conditions matches everything', {}, { host: '', path: '/anything', method: 'PROPFIND' }, true],
];

describe('routing matcher: each condition', () => {
  for (const [group, cases] of [
    ['hosts', hostCases],
    ['paths', pathCases],
    ['methods', methodCases],
    ['headers', headerCases],
    ['query', queryCases],
    ['source_ips', sourceCases],
    ['listener_ids', listenerCases],
    ['combined', combinedCases],
  ] as const) {
    describe(group, () => {
      for (const [what, match, facts, expected] of cases) {
        it(`${what}: ${expected ? 'matches' : 'does not match'}`, () => {
          assert.equal(matches(match, facts), expected);
          // The reference below must agree on every hand-written case too (it is what the property test trusts).
          assert.equal(referenceHolds(rule(match), req(facts)), expected, 'reference');
        });
      }
    });
  }
});

describe('routing matcher: order', () => {
  it('the lower priority wins, whatever the input order', () => {
    const late = rule({ paths: ['/v2/*'] }, { priority: 200 });
    const early = rule({ paths: ['/v2/*'] }, { priority: 10 });
    assert.equal(compileRoutes([late, early]).match(req({ path: '/v2/a' })), early);
    assert.equal(compileRoutes([early, late]).match(req({ path: '/v2/a' })), early);
  });

  it('equal priorities: the earlier in the input wins', () => {
    const a = rule({ path_prefix: '/v2' }, { priority: 5 });
    const b = rule({ paths: ['/v2/*'] }, { priority: 5 });
    const c = rule({}, { priority: 5 });
    assert.equal(compileRoutes([a, b, c]).match(req({ path: '/v2/x' })), a);
    assert.equal(compileRoutes([b, a, c]).match(req({ path: '/v2/x' })), b);
    assert.equal(compileRoutes([c, b, a]).match(req({ path: '/v2/x' })), c);
  });

  it('a general rule of lower priority number beats a specific one (priority, not specificity, decides)', () => {
    const general = rule({}, { priority: 1 });
    const specific = rule({ hosts: ['api.example.com'], path_exact: '/v2/users', methods: ['GET'] }, { priority: 50 });
    assert.equal(compileRoutes([specific, general]).match(req({ path: '/v2/users' })), general);
  });

  it('a specific rule of lower priority number beats a general one, which takes the rest', () => {
    const general = rule({ hosts: ['*.example.com'] }, { priority: 1000 });
    const specific = rule({ hosts: ['api.example.com'], path_exact: '/v2/users', methods: ['GET'] }, { priority: 1 });
    const m = compileRoutes([general, specific]);
    assert.equal(m.match(req({ path: '/v2/users' })), specific);
    assert.equal(m.match(req({ path: '/v2/users', method: 'POST' })), general);
    assert.equal(m.match(req({ path: '/v2/users', host: 'www.example.com' })), general);
    assert.equal(m.match(req({ path: '/v2/users', host: 'example.net' })), null);
  });

  it('a failing candidate under one key does not hide a later one under another', () => {
    const m = compileRoutes([
      rule({ hosts: ['api.example.com'], headers: { 'X-A': ['1'] } }, { priority: 1, rule_id: 'exact-header' }),
      rule({ hosts: ['*.example.com'], path_prefix: '/v2' }, { priority: 2, rule_id: 'wildcard-prefix' }),
      rule({ path_regex: '^/v2/[a-z]+$' }, { priority: 3, rule_id: 'regex' }),
      rule({}, { priority: 4, rule_id: 'catch-all' }),
    ]);
    assert.equal(m.match(req({ path: '/v2/abc', headers: { 'x-a': '1' } }))?.rule_id, 'exact-header');
    assert.equal(m.match(req({ path: '/v2/abc' }))?.rule_id, 'wildcard-prefix');
    assert.equal(m.match(req({ path: '/v2/abc', host: 'other.net' }))?.rule_id, 'regex');
    assert.equal(m.match(req({ path: '/v3', host: 'other.net' }))?.rule_id, 'catch-all');
  });

  it('a rule with several hosts and paths is found under each, and reported once', () => {
    const r = rule({ hosts: ['a.example.com', '*.example.org', 'A.example.com'], paths: ['/x/*', '/y', '/z/*/q'] });
    const m = compileRoutes([r]);
    for (const [host, path] of [
      ['a.example.com', '/x/1'],
      ['b.example.org', '/y'],
      ['a.b.example.org', '/z/1/q'],
    ]) {
      assert.equal(m.match(req({ host, path })), r, `${host}${path}`);
    }
    assert.equal(m.match(req({ host: 'a.example.com', path: '/z/1/r' })), null);
    assert.equal(m.rules.length, 1);
  });

  it('no rule applies: null (the default pool)', () => {
    const m = compileRoutes([rule({ hosts: ['api.example.com'] })]);
    assert.equal(m.match(req({ host: 'www.example.com' })), null);
    assert.equal(m.route(req({ host: 'www.example.com' })), null);
    assert.equal(compileRoutes([]).match(req()), null);
  });

  it('route() carries the compiled action and transforms', () => {
    const r = rule(
      { paths: ['/v2/*'] },
      {
        action: { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'canary', weight: 10 }, { pool_id: 'stable', weight: 90 }] },
        transforms: { url_rewrite: '/v2/(.*) -> /api/$1' },
      },
    );
    const route = compileRoutes([r]).route(req({ path: '/v2/users' }))!;
    assert.equal(route.rule, r);
    assert.equal(route.action.type, 'WEIGHTED_ROUTE');
    assert.deepEqual(route.action.type === 'WEIGHTED_ROUTE' && route.action.choice.items, ['canary', 'stable']);
    assert.equal(route.transforms.rewrite('/v2/users', ''), '/api/users');
  });

  it('rules lists the enabled, valid rules in the order they win', () => {
    const a = rule({}, { priority: 3 });
    const b = rule({}, { priority: 1 });
    const off = rule({}, { priority: 0, enabled: false });
    const c = rule({}, { priority: 3 });
    assert.deepEqual(compileRoutes([a, off, b, c]).rules, [b, a, c]);
  });
});

describe('routing matcher: disabled, organisations, invalid rules', () => {
  it('disabled rules never match, even with the best priority', () => {
    const off = rule({}, { priority: 0, enabled: false });
    const on = rule({}, { priority: 10 });
    assert.equal(compileRoutes([off, on]).match(req()), on);
    assert.equal(compileRoutes([off]).match(req()), null);
  });

  it('rules of another organisation never apply', () => {
    const theirs = rule({}, { priority: 0, org_id: 'org-b' });
    const ours = rule({ hosts: ['api.example.com'] }, { priority: 5 });
    const m = compileRoutes([theirs, ours]);
    assert.equal(m.match(req({ orgId: 'org-a' })), ours);
    assert.equal(m.match(req({ orgId: 'org-a', host: 'x.test' })), null);
    assert.equal(m.match(req({ orgId: 'org-b', host: 'x.test' })), theirs);
    assert.equal(m.match(req({ orgId: 'org-c' })), null);
  });

  it('byOrganisation false: every rule applies whatever facts.orgId says', () => {
    const theirs = rule({}, { priority: 0, org_id: 'org-b' });
    assert.equal(compileRoutes([theirs], { byOrganisation: false }).match(req({ orgId: 'org-a' })), theirs);
    assert.equal(compileRoutes([theirs], { byOrganisation: false }).match(req({ orgId: '' })), theirs);
  });

  const bad = rule({ path_regex: '(' }, { priority: 0, rule_id: 'bad-regex' });
  const badAction = rule({}, { priority: 1, rule_id: 'bad-action', action: { type: 'FORWARD' } });

  it('an invalid rule throws without onInvalid, naming the rule and the field', () => {
    assert.throws(() => compileRoutes([bad]), /bad-regex.*match\.path_regex/);
    assert.throws(() => compileRoutes([badAction]), /bad-action.*action\.pool_id/);
  });

  it('with onInvalid, an invalid rule is reported and skipped; the rest still route', () => {
    const good = rule({}, { priority: 5 });
    const reported: [string, FieldProblem[]][] = [];
    const m = compileRoutes([bad, good, badAction], { onInvalid: (r, problems) => reported.push([r.rule_id, problems]) });
    assert.deepEqual(
      reported.map(([id, p]) => [id, p.map((x) => x.field)]),
      [
        ['bad-regex', ['match.path_regex']],
        ['bad-action', ['action.pool_id']],
      ],
    );
    assert.equal(m.match(req()), good);
    assert.deepEqual(m.rules, [good]);
  });

  it('a disabled invalid rule is not compiled at all', () => {
    assert.doesNotThrow(() => compileRoutes([{ ...bad, enabled: false }]));
  });
});

describe('routing rule helpers', () => {
  it('parseHostPattern normalizes and refuses', () => {
    assert.deepEqual(parseHostPattern('API.Example.COM.'), { wildcard: false, name: 'api.example.com' });
    assert.deepEqual(parseHostPattern('*.Example.com'), { wildcard: true, name: 'example.com' });
    assert.deepEqual(parseHostPattern('[2001:DB8::1]'), { wildcard: false, name: '2001:db8::1' });
    for (const bad of ['*', '*.', 'a.*.example.com', 'api.*', 'exa mple.com', '-a.example.com', 'a..b', '*.[::1]', 'api.example.com:8080', '']) {
      assert.equal(typeof parseHostPattern(bad), 'string', bad);
    }
  });

  it('regexLiteralPrefix: the literal every match starts with', () => {
    const table: [string, string][] = [
      ['^/api/v[0-9]+', '/api/v'],
      ['^/v2/users', '/v2/users'],
      ['^\\/v2\\/users\\.json', '/v2/users.json'],
      ['^/users?/', '/user'],
      ['^/ab*', '/a'],
      ['^/ab+', '/a'],
      ['^/ab{2}', '/a'],
      ['^/a\\d', '/a'],
      ['^/a(b|c)', '/a'],
      ['^/a|^/b', ''],
      ['^/a(?:x|y)|/b', ''],
      ['^(/a|/b)', ''],
      ['^/a[|]b', '/a'],
      ['/v2/users', ''],
      ['^/caf\u00e9', '/caf'],
      ['^/a\\/?', '/a'],
      ['^/a$', '/a'],
      ['^', ''],
    ];
    for (const [source, prefix] of table) assert.equal(regexLiteralPrefix(source), prefix, source);
    // Whatever it says must be a true prefix of every match.
    for (const [source, prefix] of table) {
      for (const path of ['/api/v1', '/v2/users', '/v2/users.json', '/users/1', '/user/', '/abbb', '/a', '/ab', '/a1', '/ac', '/b', '/a|b', '/café', '/a/']) {
        if (new RegExp(source, 'u').test(path)) assert.ok(path.startsWith(prefix), `${source} matches ${path} but the prefix is ${prefix}`);
      }
    }
  });

  it('parseQuery decodes names and values, keeps repeats in order', () => {
    assert.deepEqual([...parseQuery('a=1&b=x+y&a=2&flag&c=%2F%20&&d=')], [
      ['a', ['1', '2']],
      ['b', ['x y']],
      ['flag', ['']],
      ['c', ['/ ']],
      ['d', ['']],
    ]);
    assert.deepEqual([...parseQuery('')], []);
    assert.deepEqual([...parseQuery('q=%E0%A4%A')], [['q', ['%E0%A4%A']]]);
  });
});

// ---------------------------------------------------------------------------------------------
// The equivalence property: the index against a plain scan.

/**
 * The reference: every enabled rule of the organisation, by priority (stable), the first whose
 * every condition holds — each condition written out plainly from rule.ts's header comment,
 * sharing no code with the matcher but the CIDR set (tested in its own suite).
 */
function referenceHolds(r: RoutingRule, f: RequestFacts): boolean {
  const m = r.match;
  const host = f.host.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1');
  if (m.hosts !== undefined) {
    const ok = m.hosts.some((h) => {
      const p = h.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1');
      return p.startsWith('*.') ? host.endsWith(p.slice(1)) : host === p;
    });
    if (!ok) return false;
  }
  if (m.paths !== undefined && !m.paths.some((g) => globRegExp(g).test(f.path))) return false;
  if (m.path_prefix !== undefined && !f.path.startsWith(m.path_prefix)) return false;
  if (m.path_exact !== undefined && f.path !== m.path_exact) return false;
  if (m.path_regex !== undefined && !new RegExp(m.path_regex, 'u').test(f.path)) return false;
  if (m.methods !== undefined && !(m.methods as readonly string[]).includes(f.method)) return false;
  for (const [name, values] of Object.entries(m.headers ?? {})) {
    const sent = f.headers[name.toLowerCase()];
    const list = sent === undefined ? [] : Array.isArray(sent) ? sent : [sent];
    if (!list.some((v) => values.includes(v))) return false;
  }
  if (m.query !== undefined) {
    const params = new URLSearchParams(f.query);
    for (const [name, value] of Object.entries(m.query)) if (!params.getAll(name).includes(value)) return false;
  }
  if (m.source_ips !== undefined) {
    const compiled = compileRule(r);
    assert.ok(!Array.isArray(compiled));
    if (!compiled.sources!.contains(f.clientIp)) return false;
  }
  if (m.listener_ids !== undefined && !m.listener_ids.includes(f.listenerId)) return false;
  return true;
}

const globCache = new Map<string, RegExp>();
function globRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (re === undefined) {
    re = new RegExp(`^${glob.split('*').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*')}$`);
    globCache.set(glob, re);
  }
  return re;
}

function referenceMatch(rules: readonly RoutingRule[], f: RequestFacts, byOrganisation = true): RoutingRule | null {
  const ordered = rules.filter((r) => r.enabled && (!byOrganisation || r.org_id === f.orgId)).sort((a, b) => a.priority - b.priority);
  return ordered.find((r) => referenceHolds(r, f)) ?? null;
}

/** The small vocabulary random rules and requests are drawn from, so that they overlap a lot. */
const V = {
  exactHosts: ['api.example.com', 'www.example.com', 'example.com', 'a.b.example.com', 'shop.example.org', 'API.example.com', 'www.example.com.'],
  wildHosts: ['*.example.com', '*.b.example.com', '*.example.org', '*.com'],
  globs: ['/v2/*', '/v2/users/*', '/v2/*/orders', '/static/*', '/', '/health', '/v2/users/*/x*', '/api*', '*.png', '/v2/users/123', '/v2*', '/*/orders'],
  prefixes: ['/v2', '/v2/users/', '/static', '/', '/api/v1', '/v2/x'],
  exacts: ['/health', '/v2/users/123', '/', '/static/img.png'],
  regexes: ['^/v2/users/[0-9]+$', '^/api/v[0-9]+', 'orders', '^/v2/(users|orders)', '^/static|^/health', '\\.png$', '^\\/v2\\/users', '^/v2/users?/', '^/v2/x/', '^/', '[0-9]$'],
  methods: ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH'],
  headers: [
    ['X-Canary', ['true']],
    ['X-Canary', ['true', 'false']],
    ['x-env', ['prod']],
    ['X-Env', ['staging', 'prod']],
    ['Accept', ['application/json']],
  ] as [string, string[]][],
  queries: [{ v: '2' }, { debug: '' }, { q: 'a b' }, { v: '2', debug: '' }] as Record<string, string>[],
  sources: [['10.0.0.0/8'], ['192.0.2.0/24', '2001:db8::/32'], ['::ffff:198.51.100.0/120'], ['0.0.0.0/0']],
  listeners: [['lis-1'], ['lis-1', 'lis-2'], ['lis-3']],

  reqHosts: ['api.example.com', 'API.EXAMPLE.COM', 'www.example.com.', 'www.example.com', 'example.com', 'x.example.com', 'a.b.example.com', 'c.a.b.example.com', 'shop.example.org', 'other.net', 'example.net', 'api.example.net', ''],
  reqPaths: ['/', '/v2', '/v2/', '/v2/users/123', '/v2/users/abc/orders', '/v2/x/orders', '/static/img.png', '/health', '/api/v1/x', '/apix', '/v2/users/123/xyz', '/v2/userz/', '/v2x', '/user/1', '/nothing', '/v3/users/1', '/Static/a', '/v2/user/7'],
  reqMethods: ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'PROPFIND'],
  reqHeaderValues: {
    'x-canary': ['true', 'false', ['false', 'true'], 'TRUE'],
    'x-env': ['prod', 'staging', 'dev'],
    accept: ['application/json', 'text/html'],
  } as Record<string, (string | string[])[]>,
  reqQueries: ['', 'v=2', 'v=3&v=2', 'debug', 'q=a+b', 'q=a%20b', 'debug=&v=2', 'v=3'],
  reqIps: ['10.1.2.3', '192.0.2.9', '2001:db8::5', '::ffff:198.51.100.7', '::ffff:10.0.0.1', '203.0.113.1'],
  reqListeners: ['lis-1', 'lis-2', 'lis-3'],
};

function generator(seed: number) {
  const random = seeded(seed);
  const chance = (p: number) => random() < p;
  const one = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const some = <T>(list: readonly T[], max: number): T[] => {
    const n = 1 + Math.floor(random() * max);
    return [...new Set(Array.from({ length: n }, () => one(list)))];
  };

  const randomRule = (i: number): RoutingRule => {
    const m: RuleMatch = {};
    // A catch-all now and then; otherwise a host or a path at least, as real rule sets have.
    if (chance(0.01)) return rule(m, { rule_id: `r${seed}-${i}`, priority: 30 + Math.floor(random() * 10), org_id: 'org-a' });
    if (chance(0.75)) m.hosts = some(chance(0.6) ? V.exactHosts : [...V.exactHosts, ...V.wildHosts], 3);
    if (chance(0.45) || m.hosts === undefined) m.paths = some(V.globs, 3);
    if (chance(0.2)) m.path_prefix = one(V.prefixes);
    if (chance(0.1)) m.path_exact = one(V.exacts);
    if (chance(0.2)) m.path_regex = one(V.regexes);
    if (chance(0.3)) m.methods = some(V.methods, 3) as RuleMatch['methods'];
    if (chance(0.2)) m.headers = Object.fromEntries(some(V.headers, 2));
    if (chance(0.1)) m.query = one(V.queries);
    if (chance(0.08)) m.source_ips = one(V.sources);
    if (chance(0.08)) m.listener_ids = one(V.listeners);
    return rule(m, {
      rule_id: `r${seed}-${i}`,
      priority: Math.floor(random() * 40),
      enabled: chance(0.9),
      org_id: chance(0.85) ? 'org-a' : 'org-b',
    });
  };

  const randomRequest = (): RequestFacts => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, values] of Object.entries(V.reqHeaderValues)) if (chance(0.4)) headers[name] = one(values);
    return {
      method: one(V.reqMethods),
      host: one(V.reqHosts),
      path: one(V.reqPaths),
      query: one(V.reqQueries),
      headers,
      clientIp: one(V.reqIps),
      listenerId: one(V.reqListeners),
      orgId: chance(0.85) ? 'org-a' : 'org-b',
    };
  };

  return { random, randomRule, randomRequest };
}

describe('routing matcher: equals a plain scan of every rule (seeded property test)', () => {
  const SEEDS = 40;
  const REQUESTS = 400;
  let matched = 0;
  let unmatched = 0;
  let deep = 0;

  for (let seed = 1; seed <= SEEDS; seed++) {
    it(`seed ${seed}`, () => {
      const g = generator(seed);
      const count = 20 + Math.floor(g.random() * 380);
      const rules = Array.from({ length: count }, (_, i) => g.randomRule(i));
      const byOrganisation = seed % 5 !== 0;
      const matcher = compileRoutes(rules, { byOrganisation });
      const order = new Map(matcher.rules.map((r, i) => [r, i]));
      for (let k = 0; k < REQUESTS; k++) {
        const facts = g.randomRequest();
        const want = referenceMatch(rules, facts, byOrganisation);
        const got = matcher.match(facts);
        if (got !== want) {
          assert.fail(
            `seed ${seed}, request ${k}: ${JSON.stringify(facts)}\n` +
              `  index: ${got?.rule_id ?? null} ${JSON.stringify(got?.match ?? null)} (priority ${got?.priority})\n` +
              `  scan:  ${want?.rule_id ?? null} ${JSON.stringify(want?.match ?? null)} (priority ${want?.priority})`,
          );
        }
        assert.equal(matcher.route(facts)?.rule ?? null, want);
        if (want === null) unmatched++;
        else {
          matched++;
          if (order.get(want)! >= 10) deep++;
        }
      }
    });
  }

  it('the generated cases are not trivial: many match, many do not, many past the first rules', (t) => {
    const total = SEEDS * REQUESTS;
    t.diagnostic(`${matched} matched (${deep} past the 10th rule), ${unmatched} unmatched, of ${total}`);
    assert.ok(matched > total * 0.2, `matched ${matched} of ${total}`);
    assert.ok(unmatched > total * 0.05, `unmatched ${unmatched} of ${total}`);
    assert.ok(deep > total * 0.05, `matched past the 10th rule: ${deep} of ${total}`);
  });

  it('one matcher answers the same request the same way many times (per-request state is reset)', () => {
    const g = generator(999);
    const rules = Array.from({ length: 300 }, (_, i) => g.randomRule(i));
    const matcher = compileRoutes(rules);
    const requests = Array.from({ length: 50 }, () => g.randomRequest());
    const first = requests.map((f) => matcher.match(f));
    for (let round = 0; round < 20; round++) {
      requests.forEach((f, i) => assert.equal(matcher.match(f), first[i]));
    }
  });
});
