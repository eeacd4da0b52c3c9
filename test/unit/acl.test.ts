/**
 * The layer 7 ACL engine (src/policy/acl.ts), driven directly: compiled from ACLs as the store holds
 * them, asked with request facts and an explicit `now`. No traffic: what the data plane does with a
 * verdict is tested with the data plane.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Acl } from '../../src/model/acl.ts';
import { AclCounters, aclExpired, aclOrder, compileAcls, type AclDeps } from '../../src/policy/acl.ts';
import { type GeoIp, openGeoIp } from '../../src/policy/geoip.ts';
import { compileGlob } from '../../src/policy/glob.ts';
import type { RequestFacts } from '../../src/policy/request.ts';
import { writeCountryMmdb } from '../helpers/mmdb.ts';

const NOW = Date.parse('2030-01-20T10:00:00Z');
const CREATED = '2030-01-01T00:00:00Z';

/** An ACL as the store holds it; DENYs get the default response unless one is given. */
function acl(fields: Partial<Acl> & Pick<Acl, 'acl_id' | 'priority' | 'action' | 'match'>): Acl {
  return {
    name: fields.acl_id,
    description: null,
    response: fields.action === 'DENY' ? { status_code: 403, body: 'Forbidden', content_type: 'text/plain' } : null,
    logging: false,
    expires_at: null,
    enabled: true,
    tags: {},
    org_id: 'default',
    project_id: 'default',
    created_at: CREATED,
    updated_at: CREATED,
    version: 1,
    ...fields,
  };
}

/** A request's facts; a User-Agent only when given. */
function req(clientIp: string, options: { ua?: string | string[]; listenerId?: string } = {}): RequestFacts {
  return {
    method: 'GET',
    host: 'shop.example',
    path: '/cart',
    query: '',
    headers: options.ua === undefined ? {} : ({ 'user-agent': options.ua } as RequestFacts['headers']),
    clientIp,
    listenerId: options.listenerId ?? 'listener-web',
    orgId: 'default',
  };
}

function deps(extra: Partial<AclDeps> = {}): AclDeps {
  return { counters: new AclCounters(), geo: null, ...extra };
}

/** Which ACL decided, and how: `DENY:acl-x`, `ALLOW:acl-y`, or `ALLOW:-` for no match. */
function decided(engine: ReturnType<typeof compileAcls>, facts: RequestFacts, now = NOW): string {
  const v = engine.evaluate(facts, now);
  return `${v.action}:${v.aclId ?? '-'}`;
}

describe('ACL engine: precedence', () => {
  const denyAll = acl({ acl_id: 'acl-deny-all', priority: 100, action: 'DENY', match: { source_ips: ['0.0.0.0/0', '::/0'] } });
  const allowOffice = acl({ acl_id: 'acl-office', priority: 10, action: 'ALLOW', match: { source_ips: ['10.0.0.0/8'] } });

  it('an ALLOW above a broad DENY lets its clients through and stops: the DENY neither answers nor counts them', () => {
    const d = deps();
    // Given out of order: the engine orders by priority, not by the array.
    const engine = compileAcls([denyAll, allowOffice], d);
    assert.deepEqual(engine.evaluate(req('10.1.2.3'), NOW), { action: 'ALLOW', aclId: 'acl-office' });
    assert.equal(d.counters.get('acl-office'), 1);
    assert.equal(d.counters.get('acl-deny-all'), 0, 'evaluation stopped at the ALLOW');
    assert.equal(decided(engine, req('192.0.2.1')), 'DENY:acl-deny-all');
    assert.equal(decided(engine, req('2001:db8::1')), 'DENY:acl-deny-all');
    assert.equal(d.counters.get('acl-deny-all'), 2);
  });

  it('the same ALLOW below the DENY changes nothing: the DENY decides first', () => {
    const engine = compileAcls([{ ...allowOffice, priority: 200 }, denyAll], deps());
    assert.equal(decided(engine, req('10.1.2.3')), 'DENY:acl-deny-all');
  });

  it('lower priority numbers go first; equal priorities go by creation time, then by id', () => {
    const ua = { user_agents: ['*'] };
    const late = acl({ acl_id: 'acl-a-late', priority: 5, action: 'DENY', match: ua, created_at: '2030-01-02T00:00:00Z' });
    const earlyB = acl({ acl_id: 'acl-b', priority: 5, action: 'DENY', match: ua });
    const earlyC = acl({ acl_id: 'acl-c', priority: 5, action: 'ALLOW', match: ua });
    const first = acl({ acl_id: 'acl-z-first', priority: 4, action: 'ALLOW', match: ua, created_at: '2030-01-03T00:00:00Z' });
    const all = [late, earlyC, first, earlyB];
    assert.deepEqual([...all].sort(aclOrder).map((a) => a.acl_id), ['acl-z-first', 'acl-b', 'acl-c', 'acl-a-late']);
    assert.equal(aclOrder(earlyB, { ...earlyB }), 0);

    assert.equal(decided(compileAcls(all, deps()), req('192.0.2.1')), 'ALLOW:acl-z-first');
    assert.equal(decided(compileAcls([late, earlyC, earlyB], deps()), req('192.0.2.1')), 'DENY:acl-b', 'created together: the smaller id');
    assert.equal(decided(compileAcls([late, earlyC], deps()), req('192.0.2.1')), 'ALLOW:acl-c', 'created earlier beats a smaller id');
  });

  it('no match lets the request through with aclId null, and counts nothing', () => {
    const d = deps();
    const none = compileAcls([acl({ acl_id: 'acl-net', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] } })], d);
    assert.deepEqual(none.evaluate(req('198.51.100.1'), NOW), { action: 'ALLOW', aclId: null });
    assert.deepEqual(compileAcls([], d).evaluate(req('198.51.100.1'), NOW), { action: 'ALLOW', aclId: null });
    assert.equal(d.counters.get('acl-net'), 0);
  });
});

describe('ACL engine: responses', () => {
  it('a DENY answers with its status, body and content type', () => {
    const engine = compileAcls(
      [
        acl({
          acl_id: 'acl-bad-actors',
          priority: 1,
          action: 'DENY',
          match: { source_ips: ['192.0.2.0/24'] },
          response: { status_code: 451, body: '{"error": "forbidden"}', content_type: 'application/json' },
        }),
      ],
      deps(),
    );
    assert.deepEqual(engine.evaluate(req('192.0.2.77'), NOW), {
      action: 'DENY',
      aclId: 'acl-bad-actors',
      status: 451,
      body: '{"error": "forbidden"}',
      contentType: 'application/json',
    });
  });

  it('a DENY stored without a response answers 403 Forbidden as text/plain; a JSON body defaults to application/json', () => {
    const bare = acl({ acl_id: 'acl-bare', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] }, response: null });
    const v = compileAcls([bare], deps()).evaluate(req('192.0.2.1'), NOW);
    assert.deepEqual(v, { action: 'DENY', aclId: 'acl-bare', status: 403, body: 'Forbidden', contentType: 'text/plain' });
    const json = { ...bare, response: { body: '[1, 2]' } } as unknown as Acl;
    const j = compileAcls([json], deps()).evaluate(req('192.0.2.1'), NOW);
    assert.equal(j.action === 'DENY' && j.contentType, 'application/json');
    const status = { ...bare, response: { status_code: 429 } } as unknown as Acl;
    const s = compileAcls([status], deps()).evaluate(req('192.0.2.1'), NOW);
    assert.deepEqual(s.action === 'DENY' && [s.status, s.body, s.contentType], [429, 'Too Many Requests', 'text/plain']);
  });
});

describe('ACL engine: source networks', () => {
  const engine = compileAcls(
    [
      acl({ acl_id: 'acl-v4', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24', '198.51.100.7/32'] } }),
      acl({ acl_id: 'acl-v6', priority: 2, action: 'DENY', match: { source_ips: ['2001:db8::/32', '2001:db9::5/128'] } }),
      acl({ acl_id: 'acl-v4-wide', priority: 3, action: 'ALLOW', match: { source_ips: ['203.0.113.0/24'] } }),
    ],
    deps(),
  );
  /** [client address, expected] */
  const table: [string, string][] = [
    ['192.0.2.0', 'DENY:acl-v4'],
    ['192.0.2.255', 'DENY:acl-v4'],
    ['192.0.3.0', 'ALLOW:-'],
    ['198.51.100.7', 'DENY:acl-v4'],
    ['198.51.100.8', 'ALLOW:-'],
    ['::ffff:192.0.2.9', 'DENY:acl-v4'],
    ['::ffff:198.51.100.7', 'DENY:acl-v4'],
    ['::ffff:10.0.0.1', 'ALLOW:-'],
    ['2001:db8::1', 'DENY:acl-v6'],
    ['2001:db8:ffff:ffff::1', 'DENY:acl-v6'],
    ['2001:db9::5', 'DENY:acl-v6'],
    ['2001:db9::6', 'ALLOW:-'],
    ['2001:db7::1', 'ALLOW:-'],
    ['203.0.113.5', 'ALLOW:acl-v4-wide'],
    ['::1', 'ALLOW:-'],
  ];
  for (const [ip, expected] of table) {
    it(`${ip} → ${expected}`, () => assert.equal(decided(engine, req(ip)), expected));
  }

  it('IPv4 catch-all catches IPv4-mapped clients, not IPv6 ones; ::/0 the reverse', () => {
    const v4 = compileAcls([acl({ acl_id: 'acl-all4', priority: 1, action: 'DENY', match: { source_ips: ['0.0.0.0/0'] } })], deps());
    assert.equal(decided(v4, req('::ffff:8.8.8.8')), 'DENY:acl-all4');
    assert.equal(decided(v4, req('2001:db8::1')), 'ALLOW:-');
    const v6 = compileAcls([acl({ acl_id: 'acl-all6', priority: 1, action: 'DENY', match: { source_ips: ['::/0'] } })], deps());
    assert.equal(decided(v6, req('2001:db8::1')), 'DENY:acl-all6');
    assert.equal(decided(v6, req('::ffff:8.8.8.8')), 'ALLOW:-');
    assert.equal(decided(v6, req('8.8.8.8')), 'ALLOW:-');
  });

  it('refuses to compile an ACL whose network does not parse (a corrupt store), naming the ACL', () => {
    assert.throws(
      () => compileAcls([acl({ acl_id: 'acl-corrupt', priority: 1, action: 'DENY', match: { source_ips: ['10.0.0.0/33'] } })], deps()),
      /ACL acl-corrupt: '10\.0\.0\.0\/33'/,
    );
  });
});

describe('ACL engine: user agents', () => {
  const engine = compileAcls(
    [
      acl({ acl_id: 'acl-bots', priority: 1, action: 'DENY', match: { user_agents: ['BadBot/*', 'Scrapy/*', '*python-requests*'] } }),
      acl({ acl_id: 'acl-no-ua', priority: 2, action: 'DENY', match: { user_agents: [''] } }),
    ],
    deps(),
  );
  /** [User-Agent (undefined: none), expected] */
  const table: [string | undefined, string][] = [
    ['BadBot/1.0', 'DENY:acl-bots'],
    ['badbot/2.1 (+http://bad.example)', 'DENY:acl-bots'],
    ['BADBOT/', 'DENY:acl-bots'],
    ['Scrapy/2.11 (+https://scrapy.org)', 'DENY:acl-bots'],
    ['Mozilla/5.0 Python-Requests/2.31', 'DENY:acl-bots'],
    ['GoodBot/1.0 BadBot/1.0', 'ALLOW:-'],
    ['BadBot', 'ALLOW:-'],
    ['Mozilla/5.0 (X11; Linux x86_64)', 'ALLOW:-'],
    [undefined, 'DENY:acl-no-ua'],
    ['', 'DENY:acl-no-ua'],
  ];
  for (const [ua, expected] of table) {
    it(`${ua === undefined ? 'no User-Agent' : JSON.stringify(ua)} → ${expected}`, () => assert.equal(decided(engine, req('192.0.2.1', { ua })), expected));
  }

  it('`*` matches every request, a missing User-Agent included; a named glob never matches a missing one', () => {
    const all = compileAcls([acl({ acl_id: 'acl-any', priority: 1, action: 'DENY', match: { user_agents: ['*'] } })], deps());
    assert.equal(decided(all, req('192.0.2.1')), 'DENY:acl-any');
    assert.equal(decided(all, req('192.0.2.1', { ua: 'x' })), 'DENY:acl-any');
    const named = compileAcls([acl({ acl_id: 'acl-named', priority: 1, action: 'DENY', match: { user_agents: ['curl/*'] } })], deps());
    assert.equal(decided(named, req('192.0.2.1')), 'ALLOW:-');
  });

  it('a repeated header field is judged by its first value', () => {
    assert.equal(decided(engine, req('192.0.2.1', { ua: ['BadBot/1', 'Mozilla/5.0'] })), 'DENY:acl-bots');
    assert.equal(decided(engine, req('192.0.2.1', { ua: ['Mozilla/5.0', 'BadBot/1'] })), 'ALLOW:-');
  });

  it('conditions together: every one given must hold', () => {
    const both = compileAcls(
      [acl({ acl_id: 'acl-both', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'], user_agents: ['curl/*'] } })],
      deps(),
    );
    assert.equal(decided(both, req('192.0.2.1', { ua: 'curl/8.5' })), 'DENY:acl-both');
    assert.equal(decided(both, req('192.0.2.1', { ua: 'Mozilla/5.0' })), 'ALLOW:-');
    assert.equal(decided(both, req('198.51.100.1', { ua: 'curl/8.5' })), 'ALLOW:-');
  });
});

describe('ACL engine: countries', () => {
  let dir: string;
  let geo: GeoIp;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fulcrum-acl-'));
    geo = openGeoIp(
      writeCountryMmdb(join(dir, 'country.mmdb'), {
        '192.0.2.0/24': 'FR',
        '192.0.2.128/25': 'DE',
        '198.51.100.0/24': 'JP',
        '2001:db8::/32': 'NL',
      }),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const countryAcls = () => [
    acl({ acl_id: 'acl-fr-de', priority: 1, action: 'DENY', match: { source_countries: ['FR', 'DE'] } }),
    acl({ acl_id: 'acl-nl', priority: 2, action: 'DENY', match: { source_countries: ['NL'] } }),
    acl({ acl_id: 'acl-jp-curl', priority: 3, action: 'DENY', match: { source_countries: ['JP'], user_agents: ['curl/*'] } }),
  ];

  it('matches the country of the client address, IPv4, IPv4-mapped and IPv6', () => {
    const engine = compileAcls(countryAcls(), deps({ geo }));
    assert.equal(decided(engine, req('192.0.2.1')), 'DENY:acl-fr-de');
    assert.equal(decided(engine, req('192.0.2.200')), 'DENY:acl-fr-de', 'DE, the narrower network');
    assert.equal(decided(engine, req('::ffff:192.0.2.1')), 'DENY:acl-fr-de');
    assert.equal(decided(engine, req('2001:db8:1::1')), 'DENY:acl-nl');
    assert.equal(decided(engine, req('198.51.100.9', { ua: 'curl/8' })), 'DENY:acl-jp-curl');
    assert.equal(decided(engine, req('198.51.100.9', { ua: 'Mozilla/5.0' })), 'ALLOW:-', 'both conditions must hold');
    assert.equal(decided(engine, req('203.0.113.1')), 'ALLOW:-', 'an address the database does not know matches no country');
    assert.equal(decided(engine, req('2001:db9::1')), 'ALLOW:-');
  });

  it('country codes in an ACL are compared upper-case', () => {
    const engine = compileAcls([acl({ acl_id: 'acl-lower', priority: 1, action: 'DENY', match: { source_countries: ['fr'] } })], deps({ geo }));
    assert.equal(decided(engine, req('192.0.2.1')), 'DENY:acl-lower');
  });

  it('without a database a country list matches nothing: the next ACL decides', () => {
    const engine = compileAcls(
      [...countryAcls(), acl({ acl_id: 'acl-fallback', priority: 9, action: 'ALLOW', match: { source_ips: ['192.0.2.0/24'] } })],
      deps({ geo: null }),
    );
    assert.equal(decided(engine, req('192.0.2.1')), 'ALLOW:acl-fallback');
    assert.equal(decided(engine, req('2001:db8::1')), 'ALLOW:-');
  });

  it('looks the country up at most once per request, and only when an ACL reaches its country condition', () => {
    const asked: string[] = [];
    const counting: GeoIp = {
      country: (ip) => {
        asked.push(ip);
        return geo.country(ip);
      },
    };
    const engine = compileAcls(
      [
        acl({ acl_id: 'acl-net-first', priority: 1, action: 'DENY', match: { source_ips: ['10.0.0.0/8'], source_countries: ['FR'] } }),
        ...countryAcls(),
      ],
      deps({ geo: counting }),
    );
    assert.equal(decided(engine, req('198.51.100.9', { ua: 'Mozilla/5.0' })), 'ALLOW:-');
    assert.deepEqual(asked, ['198.51.100.9'], 'three country conditions, one lookup');
    asked.length = 0;
    const noCountries = compileAcls([acl({ acl_id: 'acl-ua', priority: 1, action: 'DENY', match: { user_agents: ['x'] } })], deps({ geo: counting }));
    noCountries.evaluate(req('192.0.2.1'), NOW);
    assert.deepEqual(asked, [], 'no ACL has countries: no lookup');
  });
});

describe('ACL engine: where and when an ACL applies', () => {
  it('listener_ids narrows an ACL to those listeners; without it the ACL applies on every listener', () => {
    const engine = compileAcls(
      [
        acl({ acl_id: 'acl-admin-only', priority: 1, action: 'DENY', match: { source_ips: ['0.0.0.0/0'], listener_ids: ['listener-admin', 'listener-ops'] } }),
        acl({ acl_id: 'acl-everywhere', priority: 2, action: 'DENY', match: { user_agents: ['BadBot/*'] } }),
      ],
      deps(),
    );
    assert.equal(decided(engine, req('192.0.2.1', { listenerId: 'listener-admin' })), 'DENY:acl-admin-only');
    assert.equal(decided(engine, req('192.0.2.1', { listenerId: 'listener-ops' })), 'DENY:acl-admin-only');
    assert.equal(decided(engine, req('192.0.2.1', { listenerId: 'listener-web' })), 'ALLOW:-');
    assert.equal(decided(engine, req('192.0.2.1', { listenerId: 'listener-web', ua: 'BadBot/1' })), 'DENY:acl-everywhere');
    assert.equal(decided(engine, req('192.0.2.1', { listenerId: 'listener-other', ua: 'BadBot/1' })), 'DENY:acl-everywhere');
  });

  it('a disabled ACL is left out: it neither decides nor counts', () => {
    const d = deps();
    const engine = compileAcls(
      [
        acl({ acl_id: 'acl-off', priority: 1, action: 'ALLOW', match: { source_ips: ['192.0.2.0/24'] }, enabled: false }),
        acl({ acl_id: 'acl-on', priority: 2, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] } }),
      ],
      d,
    );
    assert.equal(decided(engine, req('192.0.2.1')), 'DENY:acl-on');
    assert.equal(d.counters.get('acl-off'), 0);
  });

  it('an ACL stops applying at its expires_at, judged per request by `now` without a recompile', () => {
    const expiresAt = '2030-01-20T12:00:00Z';
    const at = Date.parse(expiresAt);
    const d = deps();
    const engine = compileAcls(
      [
        acl({ acl_id: 'acl-temporary', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] }, expires_at: expiresAt }),
        acl({ acl_id: 'acl-after', priority: 2, action: 'ALLOW', match: { source_ips: ['192.0.2.0/24'] } }),
      ],
      d,
    );
    assert.equal(decided(engine, req('192.0.2.1'), NOW), 'DENY:acl-temporary');
    assert.equal(decided(engine, req('192.0.2.1'), at - 1), 'DENY:acl-temporary');
    assert.equal(decided(engine, req('192.0.2.1'), at), 'ALLOW:acl-after', 'expired at the instant itself');
    assert.equal(decided(engine, req('192.0.2.1'), at + 86_400_000), 'ALLOW:acl-after');
    assert.equal(d.counters.get('acl-temporary'), 2);
    // An engine is only a function of `now`: a request stamped earlier still sees the ACL.
    assert.equal(decided(engine, req('192.0.2.1'), at - 1000), 'DENY:acl-temporary');
  });

  it('aclExpired: null never expires; a time at or before now has', () => {
    assert.equal(aclExpired({ expires_at: null }, NOW), false);
    assert.equal(aclExpired({ expires_at: '2030-01-20T10:00:00Z' }, NOW), true);
    assert.equal(aclExpired({ expires_at: '2030-01-20T10:00:01Z' }, NOW), false);
    assert.equal(aclExpired({ expires_at: '2029-12-31T23:59:59Z' }, NOW), true);
  });
});

describe('ACL engine: matched_entries and logging', () => {
  const deny = acl({ acl_id: 'acl-deny', priority: 1, action: 'DENY', match: { source_ips: ['192.0.2.0/24'] }, logging: true });
  const allow = acl({ acl_id: 'acl-allow', priority: 2, action: 'ALLOW', match: { user_agents: ['curl/*'] }, logging: true });
  const quiet = acl({ acl_id: 'acl-quiet', priority: 3, action: 'DENY', match: { user_agents: ['*'] } });

  it('evaluate counts each match of the deciding ACL; peek decides the same without counting', () => {
    const d = deps();
    const engine = compileAcls([deny, allow, quiet], d);
    for (let i = 0; i < 3; i++) engine.evaluate(req('192.0.2.1'), NOW);
    engine.evaluate(req('198.51.100.1', { ua: 'curl/8' }), NOW);
    assert.deepEqual(engine.peek(req('192.0.2.1'), NOW), engine.peek(req('192.0.2.2'), NOW));
    assert.equal(engine.peek(req('192.0.2.1'), NOW).aclId, 'acl-deny');
    assert.equal(engine.peek(req('198.51.100.1'), NOW).aclId, 'acl-quiet');
    assert.deepEqual(
      ['acl-deny', 'acl-allow', 'acl-quiet', 'acl-unknown'].map((id) => d.counters.get(id)),
      [3, 1, 0, 0],
    );
  });

  it('counts live in AclCounters: kept across a recompile, reset by forget', () => {
    const counters = new AclCounters();
    const first = compileAcls([deny, quiet], { counters, geo: null });
    first.evaluate(req('192.0.2.1'), NOW);
    first.evaluate(req('192.0.2.1'), NOW);
    // A new configuration revision: the ACL changed, its count did not.
    const second = compileAcls([{ ...deny, priority: 2, version: 2 }, quiet], { counters, geo: null });
    assert.equal(counters.get('acl-deny'), 2);
    second.evaluate(req('192.0.2.1'), NOW);
    assert.equal(counters.get('acl-deny'), 3);
    // Deleted: the count goes, and an ACL made later under the same id starts at 0.
    counters.forget('acl-deny');
    assert.equal(counters.get('acl-deny'), 0);
    second.evaluate(req('192.0.2.1'), NOW);
    assert.equal(counters.get('acl-deny'), 0, 'an engine compiled before the delete counts nowhere');
    const third = compileAcls([deny], { counters, geo: null });
    third.evaluate(req('192.0.2.1'), NOW);
    assert.equal(counters.get('acl-deny'), 1);
  });

  it('the log callback is called once per match of a logging ACL, ALLOW or DENY, never for others and never by peek', () => {
    const entries: Record<string, unknown>[] = [];
    const engine = compileAcls([deny, allow, quiet], deps({ log: (e) => entries.push(e) }));
    engine.evaluate(req('192.0.2.1', { ua: 'Mozilla/5.0' }), NOW);
    engine.evaluate(req('198.51.100.1', { ua: 'curl/8.5', listenerId: 'listener-api' }), NOW);
    engine.evaluate(req('198.51.100.1', { ua: 'Mozilla/5.0' }), NOW); // acl-quiet: no logging
    engine.evaluate(req('198.51.100.1', { ua: 'Mozilla/5.0' }), NOW); // acl-quiet: no logging
    engine.peek(req('192.0.2.1'), NOW);
    engine.peek(req('198.51.100.1', { ua: 'curl/8.5' }), NOW);
    assert.equal(entries.length, 2);
    assert.deepEqual(entries[0], {
      event: 'acl.matched',
      acl_id: 'acl-deny',
      action: 'DENY',
      client_ip: '192.0.2.1',
      country: null,
      user_agent: 'Mozilla/5.0',
      host: 'shop.example',
      path: '/cart',
      method: 'GET',
      listener_id: 'listener-web',
      org_id: 'default',
    });
    assert.equal(entries[1]!.acl_id, 'acl-allow');
    assert.equal(entries[1]!.action, 'ALLOW');
    assert.equal(entries[1]!.user_agent, 'curl/8.5');
    assert.equal(entries[1]!.listener_id, 'listener-api');
  });

  it('a log entry carries the country when a database is configured, and user_agent null without one', () => {
    const entries: Record<string, unknown>[] = [];
    const geo: GeoIp = { country: (ip) => (ip === '192.0.2.1' ? 'FR' : null) };
    const engine = compileAcls([deny], deps({ geo, log: (e) => entries.push(e) }));
    engine.evaluate(req('192.0.2.1'), NOW);
    engine.evaluate(req('192.0.2.2'), NOW);
    assert.deepEqual(
      entries.map((e) => [e.country, e.user_agent]),
      [
        ['FR', null],
        [null, null],
      ],
    );
  });

  it('logging without a log callback still counts', () => {
    const d = deps();
    compileAcls([deny], d).evaluate(req('192.0.2.1'), NOW);
    assert.equal(d.counters.get('acl-deny'), 1);
  });
});

describe('globs (user agents)', () => {
  /** [glob, text, matches] */
  const table: [string, string, boolean][] = [
    ['badbot/*', 'badbot/1.0', true],
    ['badbot/*', 'badbot/', true],
    ['badbot/*', 'xbadbot/1', false],
    ['*bot*', 'googlebot/2.1', true],
    ['*bot*', 'bot', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false],
    ['a**b', 'ab', true],
    ['', '', true],
    ['', 'x', false],
    ['*', '', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['a.b', 'axb', false],
  ];
  for (const [glob, text, matches] of table) {
    it(`${JSON.stringify(glob)} ${matches ? 'matches' : 'does not match'} ${JSON.stringify(text)}`, () => {
      assert.equal(compileGlob(glob).test(text), matches);
    });
  }

  it('matches in linear time on a glob that would make a RegExp backtrack', () => {
    const glob = compileGlob(`${'*a'.repeat(30)}*b*`);
    const started = process.hrtime.bigint();
    assert.equal(glob.test('a'.repeat(10_000)), false);
    assert.ok(process.hrtime.bigint() - started < 1_000_000_000n);
  });
});
