import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RATE_LIMIT_DEFAULTS, type RateLimit } from '../../src/model/rate-limit.ts';
import {
  compileRateLimits,
  GLOBAL_KEY,
  NO_ROUTING_RULE_KEY,
  type RateLimitContext,
  type RateLimiter,
  type RateLimitKeyStatus,
  rateLimitOrder,
  RateLimitState,
  type RateLimitStatusQuery,
  type RateLimitTriggered,
  type RateVerdict,
} from '../../src/policy/rate-limit.ts';
import type { RequestFacts } from '../../src/policy/request.ts';

/** 2024-01-20T10:00:00Z: a second, minute and hour boundary, so windows start where the test does. */
const T0 = Date.UTC(2024, 0, 20, 10, 0, 0);
const IP = '203.0.113.50';
const CTX: RateLimitContext = { poolId: 'pool-api', ruleId: null };

/** A stored rate limit with every default filled; 1 request per second, burst 1, unless told. */
function rl(id: string, over: Partial<RateLimit> = {}): RateLimit {
  return {
    rate_limit_id: id,
    name: `rule ${id}`,
    description: null,
    scope: 'PER_SOURCE_IP',
    header: null,
    match: {},
    limits: { requests_per_second: 1, burst_size: 1 },
    action_on_limit: { status_code: 429, headers: { ...RATE_LIMIT_DEFAULTS.headers }, body: RATE_LIMIT_DEFAULTS.body },
    exemptions: { source_ips: [], headers: {}, api_keys: [] },
    headers_on_allowed: false,
    enabled: true,
    tags: {},
    org_id: 'default',
    project_id: 'default',
    created_at: '2024-01-20T09:00:00Z',
    updated_at: '2024-01-20T09:00:00Z',
    version: 1,
    ...over,
  };
}

function facts(over: Partial<RequestFacts> = {}): RequestFacts {
  return { method: 'GET', host: 'api.example.com', path: '/api/users', query: '', headers: {}, clientIp: IP, listenerId: 'lst-a', orgId: 'default', ...over };
}

/** A state and a limiter on a clock the test moves by hand; events collected. */
function setup(rules: RateLimit[], maxKeys?: number) {
  const clock = { t: T0 };
  const events: RateLimitTriggered[] = [];
  const state = new RateLimitState({ now: () => clock.t, onTriggered: (e) => events.push(e), ...(maxKeys !== undefined ? { maxKeys } : {}) });
  let limiter: RateLimiter = compileRateLimits(rules, state);
  const check = (over: Partial<RequestFacts> = {}, ctx: RateLimitContext = CTX): RateVerdict => limiter.check(facts(over), ctx);
  return {
    clock,
    events,
    state,
    get limiter(): RateLimiter {
      return limiter;
    },
    /** A new configuration revision over the same state. */
    recompile(next: RateLimit[]): void {
      limiter = compileRateLimits(next, state);
    },
    check,
    /** How many of `n` requests sent now are let through. */
    allowed(n: number, over: Partial<RequestFacts> = {}, ctx: RateLimitContext = CTX): number {
      let ok = 0;
      for (let i = 0; i < n; i++) if (!check(over, ctx).limited) ok++;
      return ok;
    },
    /** The one status entry of `ruleId` for `sourceIp`. */
    status(ruleId: string, query: Partial<RateLimitStatusQuery> = {}): RateLimitKeyStatus {
      const found = limiter.status({ sourceIp: IP, ...query }).find((s) => s.rule_id === ruleId);
      assert.ok(found, `a status for ${ruleId}`);
      return found;
    },
  };
}

/** A small deterministic PRNG (mulberry32) for arrival patterns. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('rate limits: token bucket (requests_per_second + burst_size)', () => {
  it('lets a full bucket through at once, then refills at requests_per_second', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 10, burst_size: 20 } })]);
    assert.equal(h.allowed(25), 20, 'the burst');
    h.clock.t += 100; // one token
    assert.equal(h.allowed(5), 1);
    h.clock.t += 550; // five and a half tokens
    assert.equal(h.allowed(10), 5);
    h.clock.t += 50; // the half left plus another half
    assert.equal(h.allowed(3), 1);
    h.clock.t += 60_000; // refilled, but never beyond the burst
    assert.equal(h.allowed(30), 20);
  });

  it('burst_size defaults to requests_per_second', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 5 } })]);
    assert.equal(h.allowed(10), 5);
    h.clock.t += 1000;
    assert.equal(h.allowed(10), 5);
  });

  it('is exact: over any span T a client gets at most burst + rps × T requests', () => {
    const burst = 5;
    const rps = 7;
    const h = setup([rl('rl-a', { limits: { requests_per_second: rps, burst_size: burst } })]);
    const rand = prng(42);
    const times: number[] = [];
    for (let i = 0; i < 3000; i++) {
      h.clock.t += Math.floor(rand() * 250); // bursts and pauses; often several in the same millisecond
      if (!h.check().limited) times.push(h.clock.t);
    }
    for (let i = 0; i < times.length; i++) {
      for (let j = i; j < times.length; j++) {
        const span = (times[j]! - times[i]!) / 1000;
        assert.ok(j - i + 1 <= burst + rps * span + 1e-9, `${j - i + 1} requests in ${span} s`);
      }
    }
    // And the client that keeps asking gets about all of it.
    const elapsed = (h.clock.t - T0) / 1000;
    assert.ok(times.length >= 0.95 * Math.min(3000, burst + rps * elapsed), `${times.length} allowed over ${elapsed} s`);
  });

  it('accuracy: 100 rps burst 200, a client sending 1,000 rps for 5 s gets 200 + 100 × 5 within 5%', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 100, burst_size: 200 } })]);
    let ok = 0;
    for (let i = 0; i < 5000; i++) {
      h.clock.t = T0 + i; // one request per millisecond
      if (!h.check().limited) ok++;
    }
    const expected = 200 + 100 * 5;
    assert.ok(ok >= 0.95 * expected && ok <= 1.05 * expected, `${ok} allowed, expected about ${expected}`);
  });

  it('a clock that steps back does not refill', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 1, burst_size: 2 } })]);
    h.clock.t = T0 + 5000;
    assert.equal(h.allowed(3), 2);
    h.clock.t = T0;
    assert.equal(h.allowed(1), 0);
  });
});

describe('rate limits: sliding windows', () => {
  it('requests_per_minute: the previous minute weighs by the share still inside the last 60 s', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_minute: 60 } })]);
    assert.equal(h.allowed(70), 60);
    h.clock.t = T0 + 59_999;
    assert.equal(h.allowed(1), 0, 'still this minute');
    h.clock.t = T0 + 60_000;
    assert.equal(h.allowed(1), 0, 'no cliff at the window edge: the whole previous minute still counts');
    h.clock.t = T0 + 90_000; // half the previous minute has slid out: 60 × 0.5 = 30 remain
    assert.equal(h.allowed(40), 30);
    h.clock.t = T0 + 180_000; // two windows later: empty
    assert.equal(h.allowed(70), 60);
  });

  it('requests_per_hour works the same on clock hours', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_hour: 10 } })]);
    assert.equal(h.allowed(12), 10);
    h.clock.t = T0 + 59 * 60_000;
    assert.equal(h.allowed(1), 0);
    h.clock.t = T0 + 3_600_000;
    assert.equal(h.allowed(1), 0);
    h.clock.t = T0 + 5_400_000; // half an hour into the next: 10 × 0.5 = 5 remain
    assert.equal(h.allowed(8), 5);
  });

  it('a request must pass every limit of the rule', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 100, burst_size: 100, requests_per_minute: 150 } })]);
    assert.equal(h.allowed(200), 100, 'the bucket first');
    h.clock.t += 1000;
    assert.equal(h.allowed(200), 50, 'then the minute');
  });

  it('Retry-After says when the minute window lets the next request through', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_minute: 60 } })]);
    assert.equal(h.allowed(60), 60);
    const v = h.check();
    assert.ok(v.limited);
    // Only in the next minute, once 1/60 of it has passed: 60 × 59/60 + 1 = 60.
    assert.deepEqual(v.headers.find(([k]) => k === 'Retry-After'), ['Retry-After', '61']);
    h.clock.t = T0 + 60_999;
    assert.equal(h.allowed(1), 0);
    h.clock.t = T0 + 61_000;
    assert.equal(h.allowed(1), 1);
  });
});

describe('rate limits: scopes and keys', () => {
  it('PER_SOURCE_IP: one budget per client address; an IPv4-mapped address is its IPv4 form', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 1, burst_size: 2 } })]);
    assert.equal(h.allowed(3, { clientIp: '192.0.2.1' }), 2);
    assert.equal(h.allowed(1, { clientIp: '::ffff:192.0.2.1' }), 0);
    assert.equal(h.allowed(3, { clientIp: '192.0.2.2' }), 2);
    assert.equal(h.allowed(3, { clientIp: '2001:db8::1' }), 2);
    assert.equal(h.state.trackedKeys('rl-a'), 3);
  });

  it('GLOBAL: one budget for everyone', () => {
    const h = setup([rl('rl-a', { scope: 'GLOBAL', limits: { requests_per_second: 1, burst_size: 3 } })]);
    assert.equal(h.allowed(2, { clientIp: '192.0.2.1' }), 2);
    assert.equal(h.allowed(2, { clientIp: '192.0.2.2' }), 1);
    assert.equal(h.status('rl-a', { sourceIp: '198.51.100.9' }).key, GLOBAL_KEY);
    assert.equal(h.status('rl-a', { sourceIp: '198.51.100.9' }).remaining_burst, 0);
  });

  it('PER_HEADER: one budget per header value whatever the address; without the header, the address', () => {
    const h = setup([rl('rl-a', { scope: 'PER_HEADER', header: 'X-Tenant', limits: { requests_per_second: 1, burst_size: 2 } })]);
    assert.equal(h.allowed(2, { clientIp: '192.0.2.1', headers: { 'x-tenant': 'acme' } }), 2);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.2', headers: { 'x-tenant': 'acme' } }), 0, 'same tenant, other address');
    assert.equal(h.allowed(3, { clientIp: '192.0.2.1', headers: { 'x-tenant': 'globex' } }), 2);
    // Without the header (or with an empty one) a client spends its own address's budget.
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1' }), 1);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1', headers: { 'x-tenant': '' } }), 1);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1' }), 0);
    assert.equal(h.allowed(2, { clientIp: '192.0.2.3' }), 2);
    const noHeader = h.status('rl-a', { sourceIp: '192.0.2.1' });
    assert.equal(noHeader.key, 'ip:192.0.2.1');
    assert.equal(noHeader.is_limited, true);
    // The value itself is never kept: the key is a hash of it.
    const acme = h.status('rl-a', { sourceIp: '198.51.100.1', headerValue: 'acme' });
    assert.match(acme.key, /^sha256:[0-9a-f]{32}$/);
    assert.equal(acme.is_limited, true);
    assert.equal(h.state.trackedKeys('rl-a'), 4);
  });

  it('PER_RULE: one budget per routing rule; requests no routing rule matched share one', () => {
    const h = setup([rl('rl-a', { scope: 'PER_RULE', limits: { requests_per_second: 1, burst_size: 2 } })]);
    const a = { poolId: 'pool-api', ruleId: 'rule-a' };
    const b = { poolId: 'pool-api', ruleId: 'rule-b' };
    const none = { poolId: 'pool-api', ruleId: null };
    assert.equal(h.allowed(3, { clientIp: '192.0.2.1' }, a), 2);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.2' }, a), 0, 'the rule, not the client');
    assert.equal(h.allowed(3, {}, b), 2);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1' }, none), 1);
    assert.equal(h.allowed(2, { clientIp: '192.0.2.2' }, none), 1);
    assert.equal(h.status('rl-a').key, NO_ROUTING_RULE_KEY);
    assert.equal(h.status('rl-a').is_limited, true);
    assert.equal(h.status('rl-a', { routingRuleId: 'rule-a' }).key, 'rule-a');
    assert.equal(h.status('rl-a', { routingRuleId: 'rule-c' }).is_limited, false);
  });

  it('one budget per rate limit whatever the listener or the revision a request came through', () => {
    const rules = [rl('rl-a', { limits: { requests_per_second: 1, burst_size: 4 } })];
    const h = setup(rules);
    const other = compileRateLimits(rules, h.state); // another generation, still serving a listener
    assert.equal(h.allowed(2, { listenerId: 'lst-a' }), 2);
    assert.equal(h.allowed(1, { listenerId: 'lst-b' }), 1);
    assert.equal(other.check(facts({ listenerId: 'lst-c' }), CTX).limited, false);
    assert.equal(other.check(facts({ listenerId: 'lst-c' }), CTX).limited, true);
    assert.equal(h.allowed(1, { listenerId: 'lst-a' }), 0);
  });

  it("a request meets only its own organisation's rules", () => {
    const h = setup([rl('rl-acme', { org_id: 'acme' })]);
    assert.equal(h.allowed(5), 5);
    assert.equal(h.allowed(5, { orgId: 'acme' }), 1);
    assert.deepEqual(
      h.limiter.status({ sourceIp: IP, orgId: 'default' }).map((s) => s.rule_id),
      [],
    );
    assert.deepEqual(
      h.limiter.status({ sourceIp: IP, orgId: 'acme' }).map((s) => s.rule_id),
      ['rl-acme'],
    );
  });

  it('disabled rules do not apply', () => {
    const h = setup([rl('rl-a', { enabled: false })]);
    assert.equal(h.allowed(5), 5);
    assert.deepEqual(h.limiter.status({ sourceIp: IP }), []);
  });
});

describe('rate limits: match', () => {
  it('pools: only requests routed to one of them; an unrouted request does not match', () => {
    const h = setup([rl('rl-a', { match: { pools: ['pool-api', 'pool-admin'] } })]);
    assert.equal(h.allowed(3, {}, { poolId: 'pool-web', ruleId: null }), 3);
    assert.equal(h.allowed(3, {}, { poolId: null, ruleId: null }), 3);
    assert.equal(h.allowed(3, {}, { poolId: 'pool-admin', ruleId: null }), 1);
    assert.equal(h.allowed(1, {}, { poolId: 'pool-api', ruleId: null }), 0, 'one budget across its pools');
    assert.deepEqual(
      h.limiter.status({ sourceIp: IP, poolId: 'pool-web' }).map((s) => s.rule_id),
      [],
    );
    assert.equal(h.status('rl-a', { poolId: 'pool-api' }).is_limited, true);
  });

  it('paths: globs on the request path', () => {
    const h = setup([rl('rl-a', { match: { paths: ['/api/*', '/login'] } })]);
    assert.equal(h.allowed(3, { path: '/static/app.js' }), 3);
    assert.equal(h.allowed(3, { path: '/api' }), 3, "'/api/*' needs the slash");
    assert.equal(h.allowed(3, { path: '/login/' }), 3);
    assert.equal(h.allowed(3, { path: '/api/v1/users' }), 1);
    assert.equal(h.allowed(1, { path: '/login' }), 0);
    assert.deepEqual(
      h.limiter.status({ sourceIp: IP, path: '/static/x' }).map((s) => s.rule_id),
      [],
    );
  });
});

describe('rate limits: exemptions', () => {
  const exemptions = { source_ips: ['10.0.0.0/8', '2001:db8::/32'], headers: { 'X-Internal-Service': ['true', 'yes'] }, api_keys: ['key-internal-service-*'] };

  it('a source address in a CIDR is never counted', () => {
    const h = setup([rl('rl-a', { exemptions })]);
    assert.equal(h.allowed(5, { clientIp: '10.1.2.3' }), 5);
    assert.equal(h.allowed(5, { clientIp: '::ffff:10.1.2.3' }), 5);
    assert.equal(h.allowed(5, { clientIp: '2001:db8::7' }), 5);
    assert.equal(h.allowed(5, { clientIp: '11.1.2.3' }), 1);
    assert.equal(h.state.trackedKeys('rl-a'), 1);
    assert.equal(h.status('rl-a', { sourceIp: '10.9.9.9' }).exempt, true);
    assert.equal(h.status('rl-a', { sourceIp: '11.1.2.3' }).exempt, false);
  });

  it('a header with one of the values (names without regard to case, values exactly)', () => {
    const h = setup([rl('rl-a', { exemptions })]);
    assert.equal(h.allowed(5, { headers: { 'x-internal-service': 'true' } }), 5);
    assert.equal(h.allowed(5, { headers: { 'x-internal-service': ['no', 'yes'] } }), 5);
    assert.equal(h.allowed(5, { headers: { 'x-internal-service': 'TRUE' } }), 1);
  });

  it('an API key matching a glob, from Authorization: Bearer or X-API-Key', () => {
    const h = setup([rl('rl-a', { exemptions })]);
    assert.equal(h.allowed(5, { headers: { authorization: 'Bearer key-internal-service-billing' } }), 5);
    assert.equal(h.allowed(5, { headers: { authorization: 'bearer   key-internal-service-x ' } }), 5);
    assert.equal(h.allowed(5, { headers: { 'x-api-key': 'key-internal-service-search' } }), 5);
    assert.equal(h.allowed(5, { headers: { authorization: 'Basic a2V5LWludGVybmFs', 'x-api-key': 'key-internal-service-2' } }), 5);
    assert.equal(h.allowed(5, { headers: { authorization: 'Bearer key-public-1' } }), 1);
    assert.equal(h.allowed(1, { headers: { 'x-api-key': 'key-internal-other' } }), 0);
  });

  it('peek says EXEMPT when every matching rule exempts the request', () => {
    const h = setup([rl('rl-a', { exemptions })]);
    assert.equal(h.limiter.peek(facts({ clientIp: '10.0.0.1' }), CTX), 'EXEMPT');
    assert.equal(h.limiter.peek(facts(), CTX), 'ALLOWED');
    assert.equal(h.limiter.peek(facts(), { poolId: 'x', ruleId: null }), 'ALLOWED');
  });
});

describe('rate limits: the refusal', () => {
  it('templates the status, headers and body; labels a JSON body', () => {
    const h = setup([
      rl('rl-a', {
        limits: { requests_per_second: 2, burst_size: 2 },
        action_on_limit: {
          status_code: 503,
          headers: {
            'Retry-After': '${retry_after_seconds}',
            'X-RateLimit-Limit': '${limit}',
            'X-RateLimit-Remaining': '${remaining}',
            'X-RateLimit-Reset': '${reset_timestamp}',
            'X-Note': 'limit ${limit}, ${unknown} stays',
          },
          body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}, "limit": ${limit}}',
        },
      }),
    ]);
    h.clock.t = T0 + 250;
    assert.equal(h.allowed(2), 2);
    const v = h.check();
    assert.ok(v.limited);
    assert.equal(v.ruleId, 'rl-a');
    assert.equal(v.status, 503);
    // Next token in 500 ms: Retry-After rounds up to a whole second, the reset is that instant in epoch seconds.
    assert.deepEqual(v.headers, [
      ['Retry-After', '1'],
      ['X-RateLimit-Limit', '2'],
      ['X-RateLimit-Remaining', '0'],
      ['X-RateLimit-Reset', String(Math.ceil((T0 + 750) / 1000))],
      ['X-Note', 'limit 2, ${unknown} stays'],
      ['Content-Type', 'application/json'],
    ]);
    assert.equal(v.body, '{"error": "rate_limit_exceeded", "retry_after": 1, "limit": 2}');
  });

  it('the defaults: 429, Retry-After and the seed body; a text body is labelled text/plain', () => {
    const h = setup([rl('rl-a', { match: { paths: ['/api/*'] } }), rl('rl-b', { match: { paths: ['/b'] }, action_on_limit: { status_code: 429, headers: {}, body: 'slow down' } })]);
    h.allowed(1);
    const v = h.check();
    assert.ok(v.limited);
    assert.equal(v.status, 429);
    assert.deepEqual(v.headers, [
      ['Retry-After', '1'],
      ['Content-Type', 'application/json'],
    ]);
    assert.equal(v.body, '{"error": "rate_limit_exceeded", "retry_after": 1}');
    h.allowed(1, { path: '/b', clientIp: '192.0.2.9' });
    const t = h.check({ path: '/b', clientIp: '192.0.2.9' });
    assert.ok(t.limited);
    assert.deepEqual(t.headers, [['Content-Type', 'text/plain; charset=utf-8']]);
    assert.equal(t.body, 'slow down');
  });

  it('a refused request is counted by no rule; the first refusing rule, in order, answers', () => {
    const h = setup([
      rl('rl-minute', { limits: { requests_per_minute: 100 } }),
      rl('rl-second', { limits: { requests_per_second: 1, burst_size: 1 } }),
      rl('rl-tight', { limits: { requests_per_second: 1, burst_size: 1 }, action_on_limit: { status_code: 503, headers: {}, body: '' } }),
    ]);
    assert.equal(h.allowed(1), 1);
    const refusals = [h.check(), h.check(), h.check()];
    for (const v of refusals) assert.equal(v.limited && v.ruleId, 'rl-second');
    assert.equal(h.status('rl-minute').requests_this_minute, 1, 'refused requests were not counted');
    assert.equal(h.status('rl-minute').current_rate_rps, 4, 'but they are attempts');
    assert.equal(h.status('rl-tight').remaining_burst, 0);
    h.clock.t += 1000;
    assert.equal(h.allowed(1), 1, 'a client hammering at the limit does not push its recovery further away');
  });

  it('headers_on_allowed: the tightest limit on the responses let through', () => {
    const h = setup([rl('rl-a', { headers_on_allowed: true, limits: { requests_per_second: 10, burst_size: 10, requests_per_minute: 100 } })]);
    const v = h.check();
    assert.equal(v.limited, false);
    assert.deepEqual(v.headers, [
      ['X-RateLimit-Limit', '10'],
      ['X-RateLimit-Remaining', '9'],
      ['X-RateLimit-Reset', String(Math.ceil((T0 + 100) / 1000))],
    ]);
    const plain = setup([rl('rl-a')]);
    assert.deepEqual(plain.check(), { limited: false });
  });

  it('headers_on_allowed shows the limit with the fewest requests left, even a bucket above its rate', () => {
    // The seed's limits: a full bucket holds 200 tokens at a limit of 100/s; the hour has 100,000.
    const h = setup([
      rl('rl-a', { headers_on_allowed: true, limits: { requests_per_second: 100, burst_size: 200, requests_per_minute: 3000, requests_per_hour: 100_000 } }),
      rl('rl-b', { headers_on_allowed: true, limits: { requests_per_hour: 150 } }),
    ]);
    const first = h.check();
    assert.deepEqual(first.headers?.slice(0, 2), [['X-RateLimit-Limit', '150'], ['X-RateLimit-Remaining', '149']], 'the other rule has fewer left');
    assert.equal(h.allowed(100), 100);
    const later = h.check();
    assert.deepEqual(later.headers?.slice(0, 2), [['X-RateLimit-Limit', '150'], ['X-RateLimit-Remaining', '48']]);
    const one = setup([rl('rl-a', { headers_on_allowed: true, limits: { requests_per_second: 2, burst_size: 3, requests_per_minute: 100 } })]);
    assert.deepEqual(one.check().headers?.slice(0, 2), [['X-RateLimit-Limit', '2'], ['X-RateLimit-Remaining', '2']]);
    assert.deepEqual(one.check().headers?.slice(0, 2), [['X-RateLimit-Limit', '2'], ['X-RateLimit-Remaining', '1']]);
    assert.deepEqual(one.check().headers?.slice(0, 2), [['X-RateLimit-Limit', '2'], ['X-RateLimit-Remaining', '0']]);
    assert.equal(one.check().limited, true, 'as announced');
  });
});

describe('rate limits: peek and status', () => {
  it('peek decides without counting anything', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 1, burst_size: 2 } })]);
    for (let i = 0; i < 10; i++) assert.equal(h.limiter.peek(facts(), CTX), 'ALLOWED');
    assert.equal(h.state.trackedKeys('rl-a'), 0);
    assert.equal(h.allowed(2), 2);
    const before = h.status('rl-a');
    assert.equal(h.limiter.peek(facts(), CTX), 'LIMITED');
    assert.deepEqual(h.status('rl-a'), before);
    assert.deepEqual(h.limiter.peek(facts({ clientIp: '192.0.2.1' }), CTX), 'ALLOWED');
  });

  it("an address with no traffic: full allowance, not limited, nothing to reset, and it isn't tracked", () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 100, burst_size: 200, requests_per_minute: 3000, requests_per_hour: 100_000 } })]);
    assert.deepEqual(h.status('rl-a'), {
      rule_id: 'rl-a',
      name: 'rule rl-a',
      scope: 'PER_SOURCE_IP',
      key: IP,
      exempt: false,
      current_rate_rps: 0,
      limit_rps: 100,
      remaining_burst: 200,
      requests_this_minute: 0,
      limit_per_minute: 3000,
      requests_this_hour: 0,
      limit_per_hour: 100_000,
      is_limited: false,
      next_reset: null,
    });
    assert.equal(h.state.trackedKeys('rl-a'), 0);
  });

  it("the seed's numbers: rate, burst left, minute and hour counts, when all is whole again", () => {
    const h = setup([rl('rl-a', { limits: { requests_per_second: 100, burst_size: 200, requests_per_minute: 3000, requests_per_hour: 100_000 } })]);
    h.clock.t = T0 + 10_000;
    assert.equal(h.allowed(45), 45);
    const s = h.status('rl-a');
    assert.equal(s.current_rate_rps, 45);
    assert.equal(s.remaining_burst, 155);
    assert.equal(s.requests_this_minute, 45);
    assert.equal(s.requests_this_hour, 45);
    assert.equal(s.is_limited, false);
    // The hour window is the last to empty: the end of the next clock hour.
    assert.equal(s.next_reset, '2024-01-20T12:00:00Z');
    const onlyBucket = setup([rl('rl-b', { limits: { requests_per_second: 100, burst_size: 200 } })]);
    onlyBucket.clock.t = T0 + 10_000;
    onlyBucket.allowed(45);
    assert.equal(onlyBucket.status('rl-b').next_reset, '2024-01-20T10:00:11Z', '450 ms to refill, rounded up to the second');
    assert.equal(onlyBucket.status('rl-b').limit_per_minute, null);
    assert.equal(onlyBucket.status('rl-b').requests_this_minute, 45, 'counted even without a minute limit');
  });

  it('a limited client: is_limited and when its next request would pass', () => {
    const h = setup([rl('rl-a')]);
    h.allowed(1);
    const s = h.status('rl-a');
    assert.equal(s.is_limited, true);
    assert.equal(s.remaining_burst, 0);
    assert.equal(s.next_reset, '2024-01-20T10:00:01Z');
  });
});

describe('rate limits: metrics', () => {
  it('counts evaluated and limited requests, the most limited addresses and the rules that refused', () => {
    const h = setup([rl('rl-a', { match: { paths: ['/api/*'] } }), rl('rl-b', { match: { paths: ['/b/*'] }, scope: 'GLOBAL' })]);
    h.allowed(5, { clientIp: '192.0.2.1' }); // 1 allowed, 4 limited by rl-a
    h.allowed(3, { clientIp: '192.0.2.2' }); // 1 + 2
    h.allowed(1, { clientIp: '192.0.2.3' }); // 1
    h.allowed(5, { clientIp: '192.0.2.3', path: '/static/x' }); // no rule matches: not evaluated
    h.allowed(2, { clientIp: '192.0.2.4', path: '/b/x' }); // 1 + 1 limited by rl-b
    const m = h.state.metrics(60);
    assert.deepEqual(m, {
      total_requests_evaluated: 11,
      total_requests_limited: 7,
      limit_rate_percent: 63.64,
      top_limited_ips: [
        { ip: '192.0.2.1', limited_count: 4, total_requests: 5 },
        { ip: '192.0.2.2', limited_count: 2, total_requests: 3 },
        { ip: '192.0.2.4', limited_count: 1, total_requests: 2 },
      ],
      rules_triggered: [
        { rule_id: 'rl-a', triggered_count: 6 },
        { rule_id: 'rl-b', triggered_count: 1 },
      ],
    });
    assert.deepEqual(h.state.metrics(60, 1).top_limited_ips, [{ ip: '192.0.2.1', limited_count: 4, total_requests: 5 }]);
  });

  it('windows: minutes that are older fall out; an empty state answers zeros', () => {
    const h = setup([rl('rl-a')]);
    assert.deepEqual(h.state.metrics(5), { total_requests_evaluated: 0, total_requests_limited: 0, limit_rate_percent: 0, top_limited_ips: [], rules_triggered: [] });
    h.allowed(4);
    h.clock.t += 10 * 60_000;
    h.allowed(2);
    assert.equal(h.state.metrics(5).total_requests_evaluated, 2);
    assert.equal(h.state.metrics(5).total_requests_limited, 1);
    assert.equal(h.state.metrics(60).total_requests_evaluated, 6);
    assert.equal(h.state.metrics(60).total_requests_limited, 4);
    assert.deepEqual(h.state.metrics(60).top_limited_ips, [{ ip: IP, limited_count: 4, total_requests: 6 }]);
    h.clock.t += 25 * 3_600_000;
    assert.equal(h.state.metrics(1440).total_requests_evaluated, 0);
  });
});

describe('rate limits: rate_limit.triggered', () => {
  it('at most one per rule and key per minute', () => {
    const h = setup([rl('rl-a')]);
    h.allowed(10);
    assert.deepEqual(h.events, [{ rate_limit_id: 'rl-a', name: 'rule rl-a', scope: 'PER_SOURCE_IP', key: IP, limit: 1, limit_window: 'second' }]);
    h.allowed(10, { clientIp: '192.0.2.1' });
    assert.equal(h.events.length, 2, 'another key has its own');
    h.clock.t += 30_000;
    h.allowed(10);
    assert.equal(h.events.length, 2, 'within the minute');
    h.clock.t += 30_000;
    h.allowed(10);
    assert.equal(h.events.length, 3);
    assert.equal(h.events[2]!.key, IP);
  });

  it('names the limit that refused and its window', () => {
    const h = setup([rl('rl-a', { limits: { requests_per_hour: 3 } })]);
    h.allowed(4);
    assert.equal(h.events.length, 1);
    assert.equal(h.events[0]!.limit, 3);
    assert.equal(h.events[0]!.limit_window, 'hour');
  });

  it('at most 100 per rule per clock minute, whatever the keys', () => {
    const h = setup([rl('rl-a')]);
    for (let i = 0; i < 150; i++) h.allowed(2, { clientIp: `198.51.100.${i}` });
    assert.equal(h.events.length, 100);
    h.clock.t += 60_000;
    h.allowed(2, { clientIp: '198.51.100.149' });
    assert.equal(h.events.length, 101);
  });
});

describe('rate limits: bounds and state across revisions', () => {
  it('at maxKeys, keys that carry nothing go first; else the least recently seen', () => {
    const h = setup([rl('rl-a')], 4);
    for (const n of [1, 2, 3, 4]) assert.equal(h.allowed(1, { clientIp: `192.0.2.${n}` }), 1);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1' }), 0, '.1 is now the most recently seen');
    assert.equal(h.state.trackedKeys('rl-a'), 4);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.5' }), 1);
    assert.equal(h.state.trackedKeys('rl-a'), 4);
    // .2 was the least recently seen: evicted, it starts afresh (the limiter errs towards letting through).
    assert.equal(h.allowed(1, { clientIp: '192.0.2.2' }), 1);
    assert.equal(h.allowed(1, { clientIp: '192.0.2.1' }), 0, 'still known and limited');
    h.clock.t += 5000; // every bucket full again: no key carries anything
    assert.equal(h.allowed(1, { clientIp: '192.0.2.9' }), 1);
    assert.equal(h.state.trackedKeys('rl-a'), 1, 'every blank key went at once');
  });

  it('a recompile with the same state keeps the budgets, even with new limits', () => {
    const rule = rl('rl-a', { limits: { requests_per_second: 1, burst_size: 3 } });
    const h = setup([rule]);
    assert.equal(h.allowed(3), 3);
    h.recompile([{ ...rule, name: 'renamed', limits: { requests_per_second: 1, burst_size: 5 }, version: 2 }]);
    assert.equal(h.allowed(1), 0);
    h.clock.t += 2000;
    assert.equal(h.allowed(5), 2);
    // Disabled and enabled again: the budget is still there.
    h.recompile([{ ...rule, enabled: false }]);
    assert.equal(h.allowed(3), 3);
    h.recompile([rule]);
    assert.equal(h.allowed(1), 0);
  });

  it('a change of scope, header or creation time starts the budgets afresh; forget drops them', () => {
    const rule = rl('rl-a', { scope: 'PER_HEADER', header: 'X-Tenant', limits: { requests_per_second: 1, burst_size: 1 } });
    const h = setup([rule]);
    const acme = { headers: { 'x-tenant': 'acme', 'x-team': 'acme' } };
    assert.equal(h.allowed(2, acme), 1);
    h.recompile([{ ...rule, header: 'x-tenant' }]);
    assert.equal(h.allowed(1, acme), 0, 'the same header in another case is the same rule');
    h.recompile([{ ...rule, header: 'X-Team' }]);
    assert.equal(h.state.trackedKeys('rl-a'), 0);
    assert.equal(h.allowed(2, acme), 1);
    h.recompile([{ ...rule, header: 'X-Team', scope: 'PER_SOURCE_IP' }]);
    assert.equal(h.allowed(2, acme), 1);
    h.recompile([{ ...rule, header: 'X-Team', scope: 'PER_SOURCE_IP', created_at: '2024-01-20T09:30:00Z' }]);
    assert.equal(h.allowed(2, acme), 1, 'deleted and made again under the same id');
    h.state.forget('rl-a');
    assert.equal(h.state.trackedKeys('rl-a'), 0);
    h.recompile([{ ...rule, header: 'X-Team', scope: 'PER_SOURCE_IP', created_at: '2024-01-20T09:30:00Z' }]);
    assert.equal(h.allowed(2, acme), 1);
  });
});

describe('rate limits: evaluation order', () => {
  it('creation time, then id for rules made in the same second', () => {
    const rules = [
      rl('rl-b', { created_at: '2024-01-20T09:00:00Z' }),
      rl('rl-z', { created_at: '2024-01-20T08:59:59Z' }),
      rl('rl-a', { created_at: '2024-01-20T09:00:00Z' }),
    ];
    assert.deepEqual(rules.sort(rateLimitOrder).map((r) => r.rate_limit_id), ['rl-z', 'rl-a', 'rl-b']);
  });
});
