/**
 * Routing rule transforms (src/policy/routing/transforms.ts), the checks the API runs on a rule
 * (`checkRule`), redirect locations and the listing summaries (seed 000 §6).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RuleAction, RuleMatch, RuleTransforms } from '../../src/model/routing-rule.ts';
import type { RequestFacts } from '../../src/policy/request.ts';
import { checkRule, compileRule, type CompiledAction, redirectLocation, type RuleBody } from '../../src/policy/routing/rule.ts';
import { summarizeAction, summarizeMatch } from '../../src/policy/routing/summary.ts';
import {
  checkTransforms,
  compileTransforms,
  parseTemplate,
  parseUrlRewrite,
  TEMPLATE_VARIABLES,
  TransformContext,
  transformProblems,
} from '../../src/policy/routing/transforms.ts';

const FACTS: RequestFacts = {
  method: 'POST',
  host: 'api.example.com',
  path: '/v2/users/123',
  query: 'x=1',
  headers: {},
  clientIp: '203.0.113.50',
  listenerId: 'lis-1',
  orgId: 'org-a',
};

/** A context whose `${uuid}` counts: uuid-1, uuid-2, … one per context. */
function contexts() {
  let n = 0;
  let made = 0;
  return {
    ctx: (facts: RequestFacts = FACTS, requestId = 'req-1') =>
      new TransformContext(facts, requestId, () => {
        made++;
        return `uuid-${++n}`;
      }),
    made: () => made,
  };
}

/** A flat header list as pairs, for readable assertions. */
function pairs(list: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < list.length; i += 2) out.push([list[i]!, list[i + 1]!]);
  return out;
}

const fieldsOf = (t: RuleTransforms) => transformProblems(t).map((p) => p.field);

describe('transforms: header edits', () => {
  it('an add replaces every field of the same name, any case, and keeps its configured spelling', () => {
    const t = compileTransforms({ add_request_headers: { 'X-Real-IP': '${client_ip}' } });
    const { ctx } = contexts();
    const out = t.applyRequest(['Host', 'api.example.com', 'x-real-ip', '6.6.6.6', 'Accept', '*/*', 'X-REAL-IP', '7.7.7.7'], ctx());
    assert.deepEqual(pairs(out), [
      ['Host', 'api.example.com'],
      ['Accept', '*/*'],
      ['X-Real-IP', '203.0.113.50'],
    ]);
  });

  it('an add with no field of that name appends it', () => {
    const t = compileTransforms({ add_request_headers: { 'X-Forwarded-Proto': 'https' } });
    assert.deepEqual(pairs(t.applyRequest(['Host', 'a'], contexts().ctx())), [
      ['Host', 'a'],
      ['X-Forwarded-Proto', 'https'],
    ]);
  });

  it('a removal drops every field of that name, any case; others stay in order', () => {
    const t = compileTransforms({ remove_response_headers: ['Server', 'X-Powered-By'] });
    const input = ['server', 'nginx', 'Content-Type', 'text/plain', 'X-POWERED-BY', 'php', 'Set-Cookie', 'a=1', 'SERVER', 'again', 'Set-Cookie', 'b=2'];
    assert.deepEqual(pairs(t.applyResponse(input, contexts().ctx())), [
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
    assert.equal(input.length, 12, 'the input list is not changed');
  });

  it('names that only share a length with a removed one stay', () => {
    const t = compileTransforms({ remove_request_headers: ['X-Debug'] });
    const input = ['X-Dbg12', '1', 'x-debug', '2', 'X-Debugs', '3'];
    assert.deepEqual(pairs(t.applyRequest(input, contexts().ctx())), [
      ['X-Dbg12', '1'],
      ['X-Debugs', '3'],
    ]);
  });

  it('nothing to do: the same list back', () => {
    const input = ['Host', 'a'];
    const empty = compileTransforms({});
    assert.equal(empty.empty, true);
    assert.equal(empty.applyRequest(input, contexts().ctx()), input);
    const other = compileTransforms({ remove_request_headers: ['X-Gone'] });
    assert.equal(other.empty, false);
    assert.equal(other.applyRequest(input, contexts().ctx()), input);
    assert.equal(other.applyResponse(input, contexts().ctx()), input, 'request edits do not touch the response');
  });

  it('remove and add of one name: the added value is the only one left', () => {
    const t = compileTransforms({ remove_request_headers: ['x-id'], add_request_headers: { 'X-Id': 'mine' } });
    assert.deepEqual(pairs(t.applyRequest(['X-ID', 'theirs'], contexts().ctx())), [['X-Id', 'mine']]);
  });

  it('request and response edits are separate', () => {
    const t = compileTransforms({ add_request_headers: { 'X-Req': '1' }, add_response_headers: { 'X-Resp': '2' }, remove_response_headers: ['X-Req'] });
    const { ctx } = contexts();
    assert.deepEqual(pairs(t.applyRequest([], ctx())), [['X-Req', '1']]);
    assert.deepEqual(pairs(t.applyResponse(['X-Req', 'x'], ctx())), [['X-Resp', '2']]);
  });
});

describe('transforms: templates', () => {
  const facts: RequestFacts = { ...FACTS, host: 'shop.example.com', path: '/a/b', method: 'DELETE', clientIp: '2001:db8::7', listenerId: 'lis-9' };
  const table: [string, string][] = [
    ['${uuid}', 'uuid-1'],
    ['${client_ip}', '2001:db8::7'],
    ['${host}', 'shop.example.com'],
    ['${path}', '/a/b'],
    ['${method}', 'DELETE'],
    ['${request_id}', 'req-42'],
    ['${listener_id}', 'lis-9'],
    ['for=${client_ip};host=${host}', 'for=2001:db8::7;host=shop.example.com'],
    ['${method}${path}', 'DELETE/a/b'],
    ['plain', 'plain'],
    ['', ''],
    ['$ and {} and $x and $', '$ and {} and $x and $'],
  ];
  for (const [template, value] of table) {
    it(`'${template}' → '${value}'`, () => {
      const t = compileTransforms({ add_request_headers: { 'X-T': template } });
      assert.deepEqual(pairs(t.applyRequest([], contexts().ctx(facts, 'req-42'))), [['X-T', value]]);
    });
  }

  it('every known variable is in the table above', () => {
    for (const v of TEMPLATE_VARIABLES) assert.ok(table.some(([t]) => t === `\${${v}}`), v);
  });

  it('${uuid}: one value per request, shared by every header of the request and its response', () => {
    const t = compileTransforms({
      add_request_headers: { 'X-Request-ID': '${uuid}', 'X-Trace': 'trace-${uuid}' },
      add_response_headers: { 'X-Request-ID': '${uuid}' },
    });
    const { ctx, made } = contexts();
    const first = ctx();
    const req1 = pairs(t.applyRequest([], first));
    const resp1 = pairs(t.applyResponse([], first));
    assert.deepEqual(req1, [
      ['X-Request-ID', 'uuid-1'],
      ['X-Trace', 'trace-uuid-1'],
    ]);
    assert.deepEqual(resp1, [['X-Request-ID', 'uuid-1']]);
    const second = ctx();
    assert.deepEqual(pairs(t.applyRequest([], second)), [
      ['X-Request-ID', 'uuid-2'],
      ['X-Trace', 'trace-uuid-2'],
    ]);
    assert.equal(made(), 2);
  });

  it('${uuid} is made only when a template uses it', () => {
    const t = compileTransforms({ add_request_headers: { 'X-Host': '${host}' } });
    const { ctx, made } = contexts();
    t.applyRequest([], ctx());
    assert.equal(made(), 0);
  });

  it('an unknown variable is refused at check time, naming the field and the known ones', () => {
    const problems = transformProblems({ add_request_headers: { 'X-A': '${user}' } });
    assert.deepEqual(
      problems.map((p) => p.field),
      ['transforms.add_request_headers.X-A'],
    );
    assert.match(problems[0]!.reason, /unknown variable '\$\{user\}'.*\$\{uuid\}/);
    assert.throws(() => compileTransforms({ add_response_headers: { 'X-B': '${UUID}' } }), /add_response_headers\.X-B/);
  });

  it('an unclosed ${ is refused', () => {
    assert.match(String(parseTemplate('a${uuid')), /not closed/);
    assert.deepEqual(fieldsOf({ add_request_headers: { 'X-A': 'x${' } }), ['transforms.add_request_headers.X-A']);
  });

  it('control characters are refused in values; a tab is allowed', () => {
    for (const bad of ['a\r\nX-Evil: 1', 'a\nb', 'a\0b', 'a\x7fb', 'a\x01b']) {
      assert.deepEqual(fieldsOf({ add_request_headers: { 'X-A': bad } }), ['transforms.add_request_headers.X-A'], JSON.stringify(bad));
      assert.deepEqual(fieldsOf({ add_response_headers: { 'X-A': bad } }), ['transforms.add_response_headers.X-A'], JSON.stringify(bad));
    }
    assert.deepEqual(fieldsOf({ add_request_headers: { 'X-A': 'a\tb' } }), []);
  });
});

describe('transforms: fields Fulcrum owns', () => {
  const owned = ['Content-Length', 'transfer-encoding', 'Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'Upgrade'];
  for (const name of owned) {
    it(`${name} cannot be added or removed`, () => {
      assert.deepEqual(fieldsOf({ add_request_headers: { [name]: 'x' } }), [`transforms.add_request_headers.${name}`]);
      assert.deepEqual(fieldsOf({ add_response_headers: { [name]: 'x' } }), [`transforms.add_response_headers.${name}`]);
      assert.deepEqual(fieldsOf({ remove_request_headers: ['X-Ok', name] }), ['transforms.remove_request_headers[1]']);
      assert.deepEqual(fieldsOf({ remove_response_headers: [name] }), ['transforms.remove_response_headers[0]']);
    });
  }

  it('Host cannot be removed from a request (it can be set, and removed from a response)', () => {
    assert.deepEqual(fieldsOf({ remove_request_headers: ['HOST'] }), ['transforms.remove_request_headers[0]']);
    assert.deepEqual(fieldsOf({ add_request_headers: { Host: 'internal.example' } }), []);
    assert.deepEqual(fieldsOf({ remove_response_headers: ['Host'] }), []);
  });

  it('a name set twice (without case) is refused', () => {
    assert.deepEqual(fieldsOf({ add_request_headers: { 'X-A': '1', 'x-a': '2' } }), ['transforms.add_request_headers.x-a']);
  });

  it('the seed example passes', () => {
    assert.deepEqual(
      transformProblems({
        add_request_headers: { 'X-Forwarded-Proto': 'https', 'X-Request-ID': '${uuid}', 'X-Real-IP': '${client_ip}' },
        remove_response_headers: ['Server', 'X-Powered-By'],
        url_rewrite: '/v2/(.*) -> /api/$1',
      }),
      [],
    );
  });
});

describe('transforms: url_rewrite', () => {
  /** [rewrite, path, query, new target or null] */
  const table: [string, string, string, string | null][] = [
    ['/v2/(.*) -> /api/$1', '/v2/users/123', '', '/api/users/123'],
    ['/v2/(.*) -> /api/$1', '/v2/users/123', 'x=1&y=2', '/api/users/123?x=1&y=2'],
    ['/v2/(.*) -> /api/$1', '/v3/users', 'x=1', null],
    ['^/v2/(?<rest>.*) -> /api/$<rest>', '/v2/a/b', '', '/api/a/b'],
    ['^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k) -> /$11-$10-$1', '/abcdefghijk', '', '/k-j-a'],
    ['^/(a) -> /$10', '/a', '', '/a0'],
    ['/old -> /new$&', '/x/old/y', '', '/x/new/old/y'],
    ['^/price -> /cost$$', '/price', '', '/cost$'],
    ['^/a -> /b$x', '/a', '', '/b$x'],
    ['^/a -> /b$', '/a', '', '/b$'],
    // The replacement's own query replaces the request's; a bare '?' drops it.
    ['^/search/(.*) -> /s?q=$1', '/search/cats', 'page=2', '/s?q=cats'],
    ['^/search/(.*) -> /s/$1?', '/search/cats', 'page=2', '/s/cats'],
    ['^/search/(.*) -> /s/$1?', '/search/cats', '', '/s/cats'],
    // Only the first match is replaced; the rest of the path stays.
    ['a -> b', '/aaa', '', '/baa'],
    // A result without a leading '/' gets one.
    ['^/v2/(.*) -> $1', '/v2/users', '', '/users'],
    ['^/(.*)$ -> $1', '/x', 'q', '/x?q'],
    // Unanchored: found anywhere in the path.
    ['users/(\\d+) -> members/$1', '/v2/users/7/x', '', '/v2/members/7/x'],
    // Optional groups that did not take part are ''.
    ['^/v2(/beta)?/(.*) -> /api$1/$2', '/v2/x', '', '/api/x'],
    ['  ^/a   ->   /b  ', '/a', '', '/b'],
  ];
  for (const [rewrite, path, query, want] of table) {
    it(`'${rewrite}' on ${path}${query ? `?${query}` : ''} → ${want}`, () => {
      const t = compileTransforms({ url_rewrite: rewrite });
      assert.equal(t.rewrite(path, query), want);
      assert.equal(t.empty, false);
    });
  }

  it('no url_rewrite: rewrite() is null', () => {
    assert.equal(compileTransforms({}).rewrite('/a', 'b'), null);
  });

  const refused: [string, RegExp][] = [
    ['/v2/(.*)', /expected "<regex> -> <replacement>"/],
    ['-> /x', /expected/],
    ['/v2/( -> /x', /not a valid regular expression/],
    ['/a\\- -> /x', /not a valid regular expression/], // 'u' flag: strict escapes
    ['/v2/(.*) -> /api/$2', /'\$2' refers to no group: the regex has 1/],
    ['/v2/.* -> /api/$1', /'\$1' refers to no group: the regex has 0/],
    ['/v2/(.*) -> /api/$0', /'\$0' refers to no group/],
    ['/v2/(?<x>.*) -> /api/$<y>', /'\$<y>' names no group/],
    ['/v2/(?<x>.*) -> /api/$<x', /names no group/],
    ['/v2/(.*) -> /api/$1#frag', /only what a request target can/],
    ['/v2/(.*) -> /api/ $1', /only what a request target can/],
  ];
  for (const [rewrite, reason] of refused) {
    it(`refused: '${rewrite}'`, () => {
      const problems = transformProblems({ url_rewrite: rewrite });
      assert.deepEqual(
        problems.map((p) => p.field),
        ['transforms.url_rewrite'],
      );
      assert.match(problems[0]!.reason, reason);
      assert.equal(typeof parseUrlRewrite(rewrite), 'string');
    });
  }
});

describe('transforms: preview (dry run)', () => {
  it('reports the added names, the removals that find a field, and the rewrite', () => {
    const t = compileTransforms({
      add_request_headers: { 'X-Forwarded-Proto': 'https', 'X-Request-ID': '${uuid}' },
      remove_request_headers: ['Authorization', 'X-Absent'],
      remove_response_headers: ['Server'],
      url_rewrite: '/v2/(.*) -> /api/$1',
    });
    assert.deepEqual(t.preview(['authorization', 'Bearer x', 'Host', 'a'], '/v2/users/123', 'x=1'), {
      headers_added: ['X-Forwarded-Proto', 'X-Request-ID'],
      headers_removed: ['Authorization'],
      url_rewritten: '/v2/users/123?x=1 -> /api/users/123?x=1',
    });
    assert.deepEqual(t.preview([], '/v2/users/123', ''), {
      headers_added: ['X-Forwarded-Proto', 'X-Request-ID'],
      headers_removed: [],
      url_rewritten: '/v2/users/123 -> /api/users/123',
    });
    assert.equal(t.preview([], '/v3/x', '').url_rewritten, null);
  });

  it('nothing configured: an empty preview', () => {
    assert.deepEqual(compileTransforms({}).preview(['A', 'b'], '/x', ''), { headers_added: [], headers_removed: [], url_rewritten: null });
  });

  it('checkTransforms names fields under the given prefix', () => {
    assert.deepEqual(
      checkTransforms({ url_rewrite: 'nope' }, 'rule.transforms.').problems.map((p) => p.field),
      ['rule.transforms.url_rewrite'],
    );
  });
});

// ---------------------------------------------------------------------------------------------

const FORWARD: RuleAction = { type: 'FORWARD', pool_id: 'pool-1' };
const body = (match: RuleMatch, action: RuleAction = FORWARD, transforms?: RuleTransforms): RuleBody => ({ match, action, ...(transforms ? { transforms } : {}) });

describe('checkRule: what the API refuses, field by field', () => {
  const table: [string, RuleBody, string[]][] = [
    ['the seed rule', body({ hosts: ['api.example.com'], paths: ['/v2/*'], methods: ['GET', 'POST'], headers: { 'X-Canary': ['true'] } }, { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'c', weight: 10 }, { pool_id: 's', weight: 90 }] }, { url_rewrite: '/v2/(.*) -> /api/$1' }), []],
    ['an empty match', body({}), []],
    ['a bad path_regex', body({ path_regex: '([a-z' }), ['match.path_regex']],
    ['a path_regex with a non-u escape', body({ path_regex: '^/a\\-b' }), ['match.path_regex']],
    ['a bad host', body({ hosts: ['ok.example.com', 'bad host', '*.example.com', 'a.*.b'] }), ['match.hosts[1]', 'match.hosts[3]']],
    ['a bad method', body({ methods: ['GET', 'FETCH' as 'GET'] }), ['match.methods[1]']],
    ['a bad CIDR', body({ source_ips: ['10.0.0.0/8', '10.0.0.1/8', '300.1.1.1', '::ffff:1.2.3.4/64'] }), ['match.source_ips[1]', 'match.source_ips[2]', 'match.source_ips[3]']],
    ['a bad url_rewrite', body({}, FORWARD, { url_rewrite: '/v2/(.*) -> /api/$3' }), ['transforms.url_rewrite']],
    ['an unknown template variable', body({}, FORWARD, { add_request_headers: { 'X-A': '${nope}' } }), ['transforms.add_request_headers.X-A']],
    ['FORWARD without pool_id', body({}, { type: 'FORWARD' }), ['action.pool_id']],
    ['FORWARD with targets', body({}, { type: 'FORWARD', pool_id: 'p', targets: [{ pool_id: 'q', weight: 1 }] }), ['action.targets']],
    ['WEIGHTED_ROUTE without targets', body({}, { type: 'WEIGHTED_ROUTE' }), ['action.targets']],
    ['WEIGHTED_ROUTE with no target', body({}, { type: 'WEIGHTED_ROUTE', targets: [] }), ['action.targets']],
    ['WEIGHTED_ROUTE, every weight 0', body({}, { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 0 }, { pool_id: 'b', weight: 0 }] }), ['action.targets']],
    ['WEIGHTED_ROUTE, one weight 0', body({}, { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 0 }, { pool_id: 'b', weight: 5 }] }), []],
    ['WEIGHTED_ROUTE, a pool twice', body({}, { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 1 }, { pool_id: 'b', weight: 1 }, { pool_id: 'a', weight: 1 }] }), ['action.targets[2].pool_id']],
    ['WEIGHTED_ROUTE with pool_id', body({}, { type: 'WEIGHTED_ROUTE', pool_id: 'p', targets: [{ pool_id: 'a', weight: 1 }] }), ['action.pool_id']],
    ['REDIRECT, defaults', body({}, { type: 'REDIRECT', url: 'https://new.example.com' }), []],
    ...[301, 302, 303, 307, 308].map((s): [string, RuleBody, string[]] => [`REDIRECT ${s}`, body({}, { type: 'REDIRECT', url: '/x', status_code: s }), []]),
    ...[200, 300, 304, 404].map((s): [string, RuleBody, string[]] => [`REDIRECT ${s}`, body({}, { type: 'REDIRECT', url: '/x', status_code: s }), ['action.status_code']]),
    ['REDIRECT without url', body({}, { type: 'REDIRECT' }), ['action.url']],
    ['REDIRECT to ftp', body({}, { type: 'REDIRECT', url: 'ftp://example.com/a' }), ['action.url']],
    ['REDIRECT to javascript:', body({}, { type: 'REDIRECT', url: 'javascript:alert(1)' }), ['action.url']],
    ['REDIRECT to a relative path without /', body({}, { type: 'REDIRECT', url: 'new/place' }), ['action.url']],
    ['REDIRECT to a scheme-relative //host', body({}, { type: 'REDIRECT', url: '//evil.example/x' }), ['action.url']],
    ['REDIRECT url with a space', body({}, { type: 'REDIRECT', url: 'https://a.example/x y' }), ['action.url']],
    ['REDIRECT url with CRLF', body({}, { type: 'REDIRECT', url: '/x\r\nSet-Cookie: a=1' }), ['action.url']],
    ['REDIRECT to http', body({}, { type: 'REDIRECT', url: 'http://a.example:8080/x?y=1', keep_path_and_query: false }), []],
    ['REDIRECT keeping path and query, url with a query', body({}, { type: 'REDIRECT', url: 'https://a.example/x?y=1', keep_path_and_query: true }), ['action.url']],
    ['REDIRECT keeping path and query, url with a fragment', body({}, { type: 'REDIRECT', url: '/x#top', keep_path_and_query: true }), ['action.url']],
    ['REDIRECT not keeping path and query, url with a query and fragment', body({}, { type: 'REDIRECT', url: '/x?y=1#top' }), []],
    ['REDIRECT with a body', body({}, { type: 'REDIRECT', url: '/x', body: 'moved' }), ['action.body']],
    ['FIXED_RESPONSE', body({}, { type: 'FIXED_RESPONSE', status_code: 503, content_type: 'application/json', body: '{}' }), []],
    ['FIXED_RESPONSE without status', body({}, { type: 'FIXED_RESPONSE', body: 'x' }), ['action.status_code']],
    ['FIXED_RESPONSE 101', body({}, { type: 'FIXED_RESPONSE', status_code: 101 }), ['action.status_code']],
    ['FIXED_RESPONSE content type with LF', body({}, { type: 'FIXED_RESPONSE', status_code: 200, content_type: 'text/plain\nX: 1' }), ['action.content_type']],
    ['FIXED_RESPONSE with url', body({}, { type: 'FIXED_RESPONSE', status_code: 200, url: '/x' }), ['action.url']],
    ['several problems at once', body({ path_regex: '(', hosts: ['*'] }, { type: 'FORWARD' }, { url_rewrite: 'x' }), ['match.hosts[0]', 'match.path_regex', 'action.pool_id', 'transforms.url_rewrite']],
  ];
  for (const [what, b, want] of table) {
    it(`${what}: ${want.length === 0 ? 'accepted' : want.join(', ')}`, () => {
      const got = checkRule(b);
      assert.deepEqual(
        got.map((p) => p.field),
        want,
      );
      for (const p of got) assert.ok(p.reason.length > 10, `a reason for ${p.field}`);
      assert.equal(Array.isArray(compileRule(b)), want.length > 0, 'compileRule agrees');
    });
  }

  it('reasons say what to do', () => {
    assert.match(checkRule(body({}, { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 0 }] }))[0]!.reason, /every weight is 0/);
    assert.match(checkRule(body({}, { type: 'REDIRECT', url: '/x', status_code: 300 }))[0]!.reason, /301, 302, 303, 307, 308/);
    assert.match(checkRule(body({ path_regex: '(' }))[0]!.reason, /not a valid regular expression/);
  });

  it('compiled actions carry their defaults', () => {
    const redirect = compileRule(body({}, { type: 'REDIRECT', url: '/x' }));
    assert.ok(!Array.isArray(redirect));
    assert.deepEqual(redirect.action, { type: 'REDIRECT', url: '/x', statusCode: 302, keepPathAndQuery: false });
    const fixed = compileRule(body({}, { type: 'FIXED_RESPONSE', status_code: 404 }));
    assert.ok(!Array.isArray(fixed));
    assert.deepEqual(fixed.action, { type: 'FIXED_RESPONSE', statusCode: 404, contentType: 'text/plain', body: '' });
  });
});

describe('redirectLocation', () => {
  const redirect = (url: string, keepPathAndQuery: boolean): Extract<CompiledAction, { type: 'REDIRECT' }> => ({ type: 'REDIRECT', url, statusCode: 301, keepPathAndQuery });
  const table: [string, boolean, string, string, string][] = [
    ['https://new.example.com', true, '/v2/a', 'x=1', 'https://new.example.com/v2/a?x=1'],
    ['https://new.example.com/', true, '/v2/a', 'x=1', 'https://new.example.com/v2/a?x=1'],
    ['https://new.example.com', true, '/v2/a', '', 'https://new.example.com/v2/a'],
    ['https://new.example.com/base', true, '/v2/a', '', 'https://new.example.com/base/v2/a'],
    ['/elsewhere', true, '/a', 'b=2', '/elsewhere/a?b=2'],
    ['https://new.example.com/fixed', false, '/v2/a', 'x=1', 'https://new.example.com/fixed'],
    ['/maintenance', false, '/a', 'b', '/maintenance'],
  ];
  for (const [url, keep, path, query, want] of table) {
    it(`${url}${keep ? ' + path and query' : ''}, ${path}?${query} → ${want}`, () => {
      assert.equal(redirectLocation(redirect(url, keep), path, query), want);
    });
  }
});

describe('summaries (match_summary, action_summary)', () => {
  it("the seed's match summary", () => {
    assert.equal(summarizeMatch({ hosts: ['api.example.com'], paths: ['/v2/*'], headers: { 'X-Canary': ['true'] } }), 'Host: api.example.com, Path: /v2/*, Header: X-Canary=true');
  });

  it("the seed rule with its methods: the seed's summary, then the methods", () => {
    assert.equal(
      summarizeMatch({ hosts: ['api.example.com'], paths: ['/v2/*'], methods: ['GET', 'POST', 'PUT', 'DELETE'], headers: { 'X-Canary': ['true'] } }),
      'Host: api.example.com, Path: /v2/*, Header: X-Canary=true, Method: GET|POST|PUT|DELETE',
    );
  });

  it("the seed's action summary, with pool names", () => {
    const a: RuleAction = { type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'pool-api-v2-canary', weight: 10 }, { pool_id: 'pool-api-v2-stable', weight: 90 }] };
    const names = new Map([
      ['pool-api-v2-canary', 'canary'],
      ['pool-api-v2-stable', 'stable'],
    ]);
    assert.equal(summarizeAction(a, names), 'Weighted: canary(10%) + stable(90%)');
    assert.equal(summarizeAction(a), 'Weighted: pool-api-v2-canary(10%) + pool-api-v2-stable(90%)');
    assert.equal(summarizeAction(a, new Map([['pool-api-v2-canary', 'canary']])), 'Weighted: canary(10%) + pool-api-v2-stable(90%)');
  });

  it('weights that do not sum to 100 are shown as shares', () => {
    assert.equal(
      summarizeAction({ type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 1 }, { pool_id: 'b', weight: 2 }] }),
      'Weighted: a(33.3%) + b(66.7%)',
    );
    assert.equal(
      summarizeAction({ type: 'WEIGHTED_ROUTE', targets: [{ pool_id: 'a', weight: 0 }, { pool_id: 'b', weight: 7 }] }),
      'Weighted: a(0%) + b(100%)',
    );
  });

  it('every other condition and action', () => {
    assert.equal(summarizeMatch({}), 'Any request');
    assert.equal(
      summarizeMatch({
        path_prefix: '/api',
        path_exact: '/api/x',
        path_regex: '^/api/v[0-9]+',
        query: { v: '2' },
        source_ips: ['10.0.0.0/8'],
        listener_ids: ['lis-1', 'lis-2'],
        headers: { 'X-A': ['1', '2'], 'X-B': ['3'] },
      }),
      'Path prefix: /api, Path exact: /api/x, Path regex: ^/api/v[0-9]+, Header: X-A=1|2, Header: X-B=3, Query: v=2, Source: 10.0.0.0/8, Listener: lis-1|lis-2',
    );
    assert.equal(summarizeMatch({ hosts: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] }), 'Host: a|b|c|d|e|… +2 more');
    assert.equal(summarizeAction({ type: 'FORWARD', pool_id: 'p1' }, new Map([['p1', 'api']])), 'Forward: api');
    assert.equal(summarizeAction({ type: 'REDIRECT', url: 'https://x.example', status_code: 301, keep_path_and_query: true }), 'Redirect 301: https://x.example (path and query kept)');
    assert.equal(summarizeAction({ type: 'REDIRECT', url: '/m' }), 'Redirect 302: /m');
    assert.equal(summarizeAction({ type: 'FIXED_RESPONSE', status_code: 503 }), 'Fixed 503: text/plain');
  });
});
