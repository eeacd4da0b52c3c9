/**
 * Layer 7 ACLs (seed 000 §8), rate limits (§7) and the dry run (§6, `POST /routing-rules/test`)
 * through real HTTP traffic: every answer here comes from a listener of a running Fulcrum, every
 * client is a loopback address of its own (127.0.0.0/8 is all loopback on Linux, so `localAddress`
 * makes a distinct client), and every count is read back through the API.
 *
 * ACLs and rate limits apply to a whole organisation, so each part runs its own Fulcrum: the ACL
 * tests delete their ACLs after each test, and every rate limit names its own pool
 * (`match.pools`) so that one test's budgets are not another's. Client addresses are never reused
 * between tests.
 */
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import { connect as connectH2 } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as connectTls } from 'node:tls';
import WebSocket from 'ws';
import { CertFactory } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, tempDir, type TestFulcrum } from '../helpers/fulcrum.ts';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { writeCountryMmdb } from '../helpers/mmdb.ts';
import { h2Request, uploadCert } from '../helpers/tls.ts';
import type { FulcrumEvent } from '../../src/observability/events.ts';

const ACLS = '/api/v1/acls';
const RATE_LIMITS = '/api/v1/rate-limits';
const DRY_RUN = '/api/v1/routing-rules/test';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface SendOptions {
  /** The client's loopback address. */
  from?: string;
  path?: string;
  headers?: Record<string, string>;
  /** A keep-alive agent; a connection of its own per request otherwise. */
  agent?: Agent;
}

/** One GET to a listener on 127.0.0.1:`port`. */
function send(port: number, options: SendOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: options.path ?? '/', localAddress: options.from ?? '127.0.0.1', agent: options.agent ?? false, headers: options.headers ?? {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The statuses of `n` requests sent one after another. */
async function statuses(port: number, n: number, options: SendOptions = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(port, options)).status);
  return out;
}

/** `n` times `status`, to compare with `statuses`. */
const times = (n: number, status: number) => new Array<number>(n).fill(status);

/**
 * Sliding minute windows are exact only within one clock minute (across its edge the previous
 * minute's count is weighted down): a test that reads `requests_this_minute` back starts with at
 * least `ms` of the minute left.
 */
async function awayFromMinuteEdge(ms = 6000): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < ms) await sleep(left + 100);
}

/** A listener on `lbId` whose default pool is `poolId`; returns its id and port. */
async function addListener(t: TestFulcrum, lbId: string, poolId: string): Promise<{ listenerId: string; port: number }> {
  const port = await freePort();
  const r = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, { name: `extra-${port}`, protocol: 'HTTP', bind_address: '127.0.0.1', port, default_pool_id: poolId });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { listenerId: r.body.listener_id, port };
}

// ── ACLs ─────────────────────────────────────────────────────────────────────────────────

describe('ACLs on live traffic', () => {
  let t: TestFulcrum;
  let geoDir: { path: string; remove: () => void };
  let backend: TestBackend;
  let lb: LbSetup;
  /** ACLs a test created, deleted after it: an ACL applies to every listener of the organisation. */
  const created: string[] = [];

  before(async () => {
    geoDir = tempDir('fulcrum-l7-geo-');
    // Three client networks: two with a country, one the database does not know.
    const geoipDatabasePath = writeCountryMmdb(join(geoDir.path, 'countries.mmdb'), { '127.0.4.0/24': 'NL', '127.0.5.0/24': 'DE' });
    t = await startTestFulcrum({ geoipDatabasePath, relayWorkers: 0 });
    backend = await startBackend('a', { websocket: true });
    lb = await setupLb([backend], { fulcrum: t });
  });
  afterEach(async () => {
    while (created.length > 0) {
      const r = await t.api.delete(`${ACLS}/${created.pop()}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });
  after(async () => {
    await t.close();
    await backend.close();
    geoDir.remove();
  });

  async function createAcl(body: Record<string, unknown>): Promise<string> {
    const r = await t.api.post(ACLS, { name: `acl ${created.length} ${Math.random().toString(36).slice(2, 6)}`, ...body });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.push(r.body.acl_id);
    return r.body.acl_id as string;
  }

  async function patchAcl(id: string, body: Record<string, unknown>): Promise<any> {
    const r = await t.api.patch(`${ACLS}/${id}`, body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }

  const matched = async (id: string): Promise<number> => (await t.api.get(`${ACLS}/${id}`)).body.matched_entries;

  it('a DENY on a CIDR answers its own status, body and content type, forwards nothing, and lets other clients through', async () => {
    await createAcl({
      priority: 10,
      action: 'DENY',
      match: { source_ips: ['127.0.1.0/24'] },
      response: { status_code: 451, body: 'not from your network', content_type: 'text/plain; charset=utf-8' },
    });
    // Defaults: 403, and a JSON body is labelled application/json.
    await createAcl({ priority: 11, action: 'DENY', match: { source_ips: ['127.0.3.0/24'] }, response: { body: '{"error": "forbidden"}' } });
    const seen = backend.seen.length;

    const denied = await send(lb.port, { from: '127.0.1.9' });
    assert.equal(denied.status, 451);
    assert.equal(denied.body, 'not from your network');
    assert.equal(denied.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(denied.headers['content-length'], String(Buffer.byteLength('not from your network')));
    const json = await send(lb.port, { from: '127.0.3.200' });
    assert.equal(json.status, 403);
    assert.deepEqual(JSON.parse(json.body), { error: 'forbidden' });
    assert.equal(json.headers['content-type'], 'application/json');
    assert.equal(backend.seen.length, seen, 'a denied request reaches no backend');

    const other = await send(lb.port, { from: '127.0.2.9' });
    assert.equal(other.status, 200);
    assert.equal(other.body, 'a');
    assert.equal(backend.seen.length, seen + 1);
  });

  it('the lower priority number decides: an ALLOW above a broad DENY lets its client through, and a PATCH of the priorities applies to the next request', async () => {
    const allow = await createAcl({ priority: 10, action: 'ALLOW', match: { source_ips: ['127.0.0.2/32'] } });
    const deny = await createAcl({ priority: 20, action: 'DENY', match: { source_ips: ['127.0.0.0/8'] } });
    assert.equal((await send(lb.port, { from: '127.0.0.2' })).status, 200);
    assert.equal((await send(lb.port, { from: '127.0.0.3' })).status, 403);
    assert.equal((await send(lb.port, { from: '127.0.0.1' })).status, 403);

    await patchAcl(allow, { priority: 30 });
    assert.equal((await send(lb.port, { from: '127.0.0.2' })).status, 403, 'the DENY now comes first');
    await patchAcl(allow, { priority: 5 });
    assert.equal((await send(lb.port, { from: '127.0.0.2' })).status, 200, 'and back');
    await patchAcl(deny, { priority: 1 });
    assert.equal((await send(lb.port, { from: '127.0.0.2' })).status, 403, 'moving the DENY up has the same effect');
    assert.equal(await matched(allow), 2);
    assert.equal(await matched(deny), 4);
  });

  it('user_agents are globs matched against the whole User-Agent, without regard to case', async () => {
    await createAcl({ priority: 10, action: 'DENY', match: { user_agents: ['BadBot/*', 'Scrapy/*'] } });
    const from = '127.0.14.1';
    const ua = async (agent: string | undefined) => (await send(lb.port, { from, headers: agent === undefined ? {} : { 'user-agent': agent } })).status;
    assert.equal(await ua('BadBot/1.0'), 403);
    assert.equal(await ua('badbot/2.1 (+http://bad.example)'), 403);
    assert.equal(await ua('BADBOT/'), 403, '* matches nothing too');
    assert.equal(await ua('Scrapy/2.11'), 403);
    assert.equal(await ua('Mozilla/5.0 BadBot/1.0'), 200, 'a glob matches the whole value');
    assert.equal(await ua('BadBot'), 200);
    assert.equal(await ua('GoodBot/1.0'), 200);
    assert.equal(await ua(undefined), 200);
  });

  it('every condition of an ACL must hold: network and User-Agent together', async () => {
    await createAcl({ priority: 10, action: 'DENY', match: { source_ips: ['127.0.7.0/24'], user_agents: ['curl/*'] } });
    assert.equal((await send(lb.port, { from: '127.0.7.1', headers: { 'user-agent': 'curl/8.5.0' } })).status, 403);
    assert.equal((await send(lb.port, { from: '127.0.8.1', headers: { 'user-agent': 'curl/8.5.0' } })).status, 200);
    assert.equal((await send(lb.port, { from: '127.0.7.1', headers: { 'user-agent': 'Firefox/128.0' } })).status, 200);
  });

  it('source_countries looks the client up in the GeoIP database; an unknown address matches no country', async () => {
    const deny = await createAcl({ priority: 10, action: 'DENY', match: { source_countries: ['nl'] }, response: { status_code: 403, body: 'geo' } });
    assert.deepEqual((await t.api.get(`${ACLS}/${deny}`)).body.match.source_countries, ['NL']);
    assert.equal((await send(lb.port, { from: '127.0.4.1' })).status, 403, 'NL');
    assert.equal((await send(lb.port, { from: '127.0.4.250' })).body, 'geo');
    assert.equal((await send(lb.port, { from: '127.0.5.1' })).status, 200, 'DE');
    assert.equal((await send(lb.port, { from: '127.0.6.1' })).status, 200, 'no country');

    // A country allow-list: DE above a DENY of everything ('*' matches every User-Agent, even none).
    await patchAcl(deny, { enabled: false });
    await createAcl({ priority: 1, action: 'ALLOW', match: { source_countries: ['DE'] } });
    await createAcl({ priority: 2, action: 'DENY', match: { user_agents: ['*'] } });
    assert.equal((await send(lb.port, { from: '127.0.5.7' })).status, 200, 'DE');
    assert.equal((await send(lb.port, { from: '127.0.4.7' })).status, 403, 'NL');
    assert.equal((await send(lb.port, { from: '127.0.6.7' })).status, 403, 'no country is not DE');
  });

  it('an ACL past its expires_at stops applying by itself: no recompile, no API call', async () => {
    const expiresAt = Date.now() + 2000;
    const id = await createAcl({ priority: 10, action: 'DENY', match: { source_ips: ['127.0.15.1/32'] }, expires_at: new Date(expiresAt).toISOString() });
    assert.equal((await t.api.get(`${ACLS}/${id}`)).body.status, 'ACTIVE');
    assert.equal((await send(lb.port, { from: '127.0.15.1' })).status, 403);
    const deadline = Date.now() + 10_000;
    let status = 403;
    while (status === 403 && Date.now() < deadline) {
      await sleep(100);
      status = (await send(lb.port, { from: '127.0.15.1' })).status;
    }
    const passedAt = Date.now();
    assert.equal(status, 200, 'let through within 10 s');
    assert.ok(passedAt >= expiresAt, `not before the expiry (${passedAt - expiresAt} ms)`);
    assert.ok(passedAt < expiresAt + 2000, `soon after it (${passedAt - expiresAt} ms)`);
    assert.equal((await t.api.get(`${ACLS}/${id}`)).body.status, 'EXPIRED');
  });

  it('match.listener_ids narrows an ACL to those listeners; another listener of the same Fulcrum is not affected', async () => {
    const other = await setupLb([backend], { fulcrum: t });
    await createAcl({ priority: 10, action: 'DENY', match: { source_ips: ['127.0.0.0/8'], listener_ids: [lb.listenerId] } });
    assert.equal((await send(lb.port, { from: '127.0.16.1' })).status, 403);
    assert.equal((await send(other.port, { from: '127.0.16.1' })).status, 200);
    const listed = (await t.api.get(`${ACLS}?listener_id=${other.listenerId}`)).body.acls;
    assert.deepEqual(listed, [], 'the API agrees: nothing applies to the other listener');
  });

  it('matched_entries counts the requests each ACL decided (the first match only)', async () => {
    const deny = await createAcl({ priority: 20, action: 'DENY', match: { source_ips: ['127.0.9.0/24'] } });
    const allow = await createAcl({ priority: 10, action: 'ALLOW', match: { source_ips: ['127.0.9.2/32'] } });
    assert.deepEqual(await statuses(lb.port, 7, { from: '127.0.9.1' }), times(7, 403));
    assert.deepEqual(await statuses(lb.port, 4, { from: '127.0.9.2' }), times(4, 200));
    assert.deepEqual(await statuses(lb.port, 3, { from: '127.0.10.1' }), times(3, 200));
    assert.equal(await matched(deny), 7);
    assert.equal(await matched(allow), 4);
    const listed = (await t.api.get(ACLS)).body.acls as { acl_id: string; matched_entries: number }[];
    assert.deepEqual(
      listed.map((a) => [a.acl_id, a.matched_entries]),
      [
        [allow, 4],
        [deny, 7],
      ],
      'listed in evaluation order, with the same counts',
    );
  });

  it('a disabled ACL stops applying, and applies again once enabled', async () => {
    const id = await createAcl({ priority: 10, action: 'DENY', match: { source_ips: ['127.0.12.0/24'] } });
    assert.equal((await send(lb.port, { from: '127.0.12.1' })).status, 403);
    assert.equal((await patchAcl(id, { enabled: false })).status, 'DISABLED');
    assert.equal((await send(lb.port, { from: '127.0.12.1' })).status, 200);
    assert.equal(await matched(id), 1, 'a disabled ACL matches nothing');
    assert.equal((await patchAcl(id, { enabled: true })).status, 'ACTIVE');
    assert.equal((await send(lb.port, { from: '127.0.12.1' })).status, 403);
    assert.equal(await matched(id), 2);
  });

  it('a WebSocket handshake is an HTTP request: a DENY answers it, other clients upgrade', async () => {
    await createAcl({ priority: 10, action: 'DENY', match: { source_ips: ['127.0.13.1/32'] }, response: { status_code: 403, body: 'no sockets for you' } });
    const url = `ws://127.0.0.1:${lb.port}/chat`;
    const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const ws = new WebSocket(url, { localAddress: '127.0.13.1' });
      ws.on('open', () => reject(new Error('the denied client upgraded')));
      ws.on('error', reject);
      ws.on('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          ws.terminate();
          resolve({ status: res.statusCode!, body });
        });
      });
    });
    assert.deepEqual(refused, { status: 403, body: 'no sockets for you' });
    const ws = new WebSocket(url, { localAddress: '127.0.13.2' });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
      ws.send('hi');
      assert.equal(await echoed, 'a:hi');
    } finally {
      ws.terminate();
    }
  });
});

// ── Rate limits ──────────────────────────────────────────────────────────────────────────

describe('rate limits on live traffic', () => {
  let t: TestFulcrum;
  let backend: TestBackend;
  const events: FulcrumEvent<'rate_limit.triggered'>[] = [];
  let unsubscribe: () => void;

  before(async () => {
    t = await startTestFulcrum({ relayWorkers: 0 });
    backend = await startBackend('r', { websocket: true });
    unsubscribe = t.fulcrum.events.on('rate_limit.triggered', (e) => {
      events.push(e);
    });
  });
  after(async () => {
    unsubscribe();
    await t.close();
    await backend.close();
  });

  /** A pool, load balancer and listener of the test's own, and a rate limit on that pool only. */
  async function limited(rule: Record<string, unknown>, listener?: Record<string, unknown>): Promise<{ lb: LbSetup; ruleId: string }> {
    const lb = await setupLb([backend], { fulcrum: t, listener });
    const r = await t.api.post(RATE_LIMITS, { name: `limit ${lb.poolId}`, scope: 'PER_SOURCE_IP', match: { pools: [lb.poolId] }, ...rule });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { lb, ruleId: r.body.rate_limit_id };
  }

  const eventsOf = (ruleId: string) => events.filter((e) => e.data.rate_limit_id === ruleId);

  it('holds a client sending 1,000 requests/s for 5 s to burst + rate × time (100/s, burst 200) within 5%', async (tc: TestContext) => {
    const { lb, ruleId } = await limited({ limits: { requests_per_second: 100, burst_size: 200 } });
    const agent = new Agent({ keepAlive: true, maxSockets: 100 });
    try {
      // Warm the path first from another client (its own key): a cold process answers its very
      // first requests late, which would shorten the span Fulcrum sees against the one measured.
      await Promise.all(Array.from({ length: 300 }, () => send(lb.port, { from: '127.0.20.2', agent })));

      const rate = 1000;
      const total = rate * 5;
      const counts = new Map<number, number>();
      const pending: Promise<void>[] = [];
      let sent = 0;
      let first = 0;
      let last = 0;
      let worstLateMs = 0;
      const one = () =>
        send(lb.port, { from: '127.0.20.1', agent }).then((a) => {
          counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
        });
      // Paced by the clock: every 10 ms, as many requests as are due by then (10 when on time), so
      // a late timer is caught up rather than lowering the rate.
      const start = performance.now();
      await new Promise<void>((resolve) => {
        const tick = () => {
          const now = performance.now();
          const due = Math.min(total, Math.floor(((now - start) / 1000) * rate) + 10);
          worstLateMs = Math.max(worstLateMs, ((due - sent) / rate) * 1000 - 10);
          while (sent < due) {
            if (sent === 0) first = performance.now();
            pending.push(one());
            sent++;
            last = performance.now();
          }
          if (sent < total) setTimeout(tick, 10);
          else resolve();
        };
        tick();
      });
      await Promise.all(pending);
      const answeredIn = (performance.now() - start) / 1000;
      const span = (last - first) / 1000;
      const allowed = counts.get(200) ?? 0;
      const refused = counts.get(429) ?? 0;
      const expected = 200 + 100 * span;
      tc.diagnostic(
        `sent ${sent} in ${span.toFixed(3)} s (${(sent / span).toFixed(0)}/s, timer at worst ${worstLateMs.toFixed(0)} ms late), all answered in ${answeredIn.toFixed(3)} s: ` +
          `${allowed} allowed, ${refused} refused; expected ${expected.toFixed(1)} allowed (ratio ${(allowed / expected).toFixed(4)})`,
      );
      assert.equal(allowed + refused, total, `only 200 and 429: ${JSON.stringify([...counts])}`);
      assert.ok(sent / span >= 950, `the client kept up 1,000/s: ${(sent / span).toFixed(0)}/s`);
      assert.ok(answeredIn < span + 1, `Fulcrum kept up: the last answer came ${(answeredIn - span).toFixed(3)} s after the last request`);
      assert.ok(allowed >= 0.95 * expected && allowed <= 1.05 * expected, `${allowed} allowed, expected ${expected.toFixed(1)} ± 5%`);
      const burstEvents = eventsOf(ruleId).filter((e) => e.data.key === '127.0.20.1');
      assert.equal(burstEvents.length, 1, 'one rate_limit.triggered for the whole burst');
      assert.deepEqual([burstEvents[0]!.data.limit, burstEvents[0]!.data.limit_window], [100, 'second']);
    } finally {
      agent.destroy();
    }
  });

  it('a 429 carries the templated headers and body of action_on_limit, and forwards nothing', async () => {
    const { lb } = await limited({
      limits: { requests_per_minute: 2 },
      headers_on_allowed: true,
      action_on_limit: {
        status_code: 429,
        headers: {
          'Retry-After': '${retry_after_seconds}',
          'X-RateLimit-Limit': '${limit}',
          'X-RateLimit-Remaining': '${remaining}',
          'X-RateLimit-Reset': '${reset_timestamp}',
        },
        body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}, "limit": ${limit}}',
      },
    });
    const from = '127.0.21.1';
    const first = await send(lb.port, { from });
    assert.equal(first.status, 200);
    assert.equal(first.headers['x-ratelimit-limit'], '2', 'headers_on_allowed');
    assert.equal(first.headers['x-ratelimit-remaining'], '1');
    assert.equal((await send(lb.port, { from })).headers['x-ratelimit-remaining'], '0');
    const seen = backend.seen.length;
    const before = Math.floor(Date.now() / 1000);
    const r = await send(lb.port, { from });
    assert.equal(r.status, 429);
    assert.equal(backend.seen.length, seen, 'a refused request reaches no backend');
    const retryAfter = r.headers['retry-after']!;
    assert.match(retryAfter, /^[1-9][0-9]*$/, 'Retry-After: a positive integer of seconds');
    assert.ok(Number(retryAfter) <= 120, `a minute window refills within two minutes: ${retryAfter}`);
    assert.equal(r.headers['x-ratelimit-limit'], '2');
    assert.equal(r.headers['x-ratelimit-remaining'], '0');
    const reset = Number(r.headers['x-ratelimit-reset']);
    assert.ok(Number.isInteger(reset), `X-RateLimit-Reset: unix seconds: ${r.headers['x-ratelimit-reset']}`);
    assert.ok(Math.abs(reset - (before + Number(retryAfter))) <= 2, `reset ${reset} ≈ now ${before} + Retry-After ${retryAfter}`);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(r.body), { error: 'rate_limit_exceeded', retry_after: Number(retryAfter), limit: 2 });
  });

  it('GLOBAL is one budget for every client; PER_SOURCE_IP is one per client address', async () => {
    const global = await limited({ scope: 'GLOBAL', limits: { requests_per_minute: 4 } });
    assert.deepEqual(await statuses(global.lb.port, 2, { from: '127.0.22.1' }), [200, 200]);
    assert.deepEqual(await statuses(global.lb.port, 3, { from: '127.0.22.2' }), [200, 200, 429]);
    assert.equal((await send(global.lb.port, { from: '127.0.22.1' })).status, 429, 'the first client shares the spent budget');

    const perIp = await limited({ scope: 'PER_SOURCE_IP', limits: { requests_per_minute: 4 } });
    assert.deepEqual(await statuses(perIp.lb.port, 5, { from: '127.0.22.1' }), [200, 200, 200, 200, 429]);
    assert.deepEqual(await statuses(perIp.lb.port, 5, { from: '127.0.22.2' }), [200, 200, 200, 200, 429], 'the other client has a budget of its own');
  });

  it('PER_HEADER keys by the header value, whichever address sends it; without the header, by address', async () => {
    const { lb } = await limited({ scope: 'PER_HEADER', header: 'X-Tenant-Key', limits: { requests_per_minute: 3 } });
    const alpha = { 'x-tenant-key': 'alpha' };
    assert.deepEqual(await statuses(lb.port, 2, { from: '127.0.23.1', headers: alpha }), [200, 200]);
    assert.deepEqual(await statuses(lb.port, 2, { from: '127.0.23.2', headers: alpha }), [200, 429], 'the same key from another address');
    assert.deepEqual(await statuses(lb.port, 4, { from: '127.0.23.1', headers: { 'x-tenant-key': 'beta' } }), [200, 200, 200, 429]);
    assert.deepEqual(await statuses(lb.port, 4, { from: '127.0.23.1' }), [200, 200, 200, 429], 'no header: the address is the key');
    assert.deepEqual(await statuses(lb.port, 1, { from: '127.0.23.3' }), [200]);
  });

  it('exempt requests (source CIDR, header value, API key glob) pass unlimited and spend nothing', async () => {
    const { lb } = await limited({
      limits: { requests_per_minute: 2 },
      exemptions: { source_ips: ['127.0.24.0/30'], headers: { 'X-Internal-Service': ['true'] }, api_keys: ['key-internal-*'] },
    });
    assert.deepEqual(await statuses(lb.port, 8, { from: '127.0.24.1' }), times(8, 200), 'exempt network');
    assert.deepEqual(await statuses(lb.port, 8, { from: '127.0.24.9', headers: { 'x-internal-service': 'true' } }), times(8, 200), 'exempt header value');
    assert.deepEqual(await statuses(lb.port, 4, { from: '127.0.24.9', headers: { 'x-internal-service': 'yes' } }), [200, 200, 429, 429], 'another value is not exempt, and the exempt requests spent nothing');
    assert.deepEqual(await statuses(lb.port, 5, { from: '127.0.24.10', headers: { authorization: 'Bearer key-internal-billing' } }), times(5, 200), 'Bearer API key');
    assert.deepEqual(await statuses(lb.port, 5, { from: '127.0.24.10', headers: { 'x-api-key': 'key-internal-search' } }), times(5, 200), 'X-API-Key');
    assert.deepEqual(await statuses(lb.port, 3, { from: '127.0.24.10', headers: { authorization: 'Bearer key-external-1' } }), [200, 200, 429], 'a key the glob does not match');
    assert.deepEqual(await statuses(lb.port, 3, { from: '127.0.24.5' }), [200, 200, 429], 'outside the exempt network');
  });

  it('a rule is one budget across every listener that routes to its pool', async () => {
    const { lb } = await limited({ limits: { requests_per_minute: 6 } });
    const sameLb = await addListener(t, lb.lbId, lb.poolId);
    const otherLb = await t.api.post('/api/v1/load-balancers', { name: `other-${lb.poolId}` });
    assert.equal(otherLb.status, 201, JSON.stringify(otherLb.body));
    const elsewhere = await addListener(t, otherLb.body.lb_id, lb.poolId);
    const from = '127.0.25.1';
    assert.deepEqual(await statuses(lb.port, 2, { from }), [200, 200]);
    assert.deepEqual(await statuses(sameLb.port, 2, { from }), [200, 200]);
    assert.deepEqual(await statuses(elsewhere.port, 2, { from }), [200, 200]);
    assert.equal((await send(lb.port, { from })).status, 429);
    assert.equal((await send(sameLb.port, { from })).status, 429);
    assert.equal((await send(elsewhere.port, { from })).status, 429);
  });

  it('GET /rate-limits/status shows the real numbers of a client after its traffic', async () => {
    const { lb, ruleId } = await limited({ limits: { requests_per_minute: 8, requests_per_hour: 1000 } });
    await awayFromMinuteEdge();
    const from = '127.0.26.1';
    const status = async (ip: string) => {
      const r = await t.api.get(`${RATE_LIMITS}/status?source_ip=${ip}&pool_id=${lb.poolId}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.limits.length, 1, JSON.stringify(r.body));
      return r.body.limits[0];
    };
    assert.deepEqual(await statuses(lb.port, 5, { from }), times(5, 200));
    let s = await status(from);
    assert.equal(s.rule_id, ruleId);
    assert.equal(s.requests_this_minute, 5);
    assert.equal(s.requests_this_hour, 5);
    assert.equal(s.limit_per_minute, 8);
    assert.equal(s.limit_per_hour, 1000);
    assert.equal(s.is_limited, false);

    assert.deepEqual(await statuses(lb.port, 5, { from }), [200, 200, 200, 429, 429]);
    s = await status(from);
    assert.equal(s.requests_this_minute, 8, 'the allowed requests, not the refused ones');
    assert.equal(s.requests_this_hour, 8);
    assert.equal(s.is_limited, true);
    assert.ok(Date.parse(s.next_reset) > Date.now(), `next_reset ahead: ${s.next_reset}`);

    const fresh = await status('127.0.26.2');
    assert.equal(fresh.requests_this_minute, 0);
    assert.equal(fresh.is_limited, false);
  });

  it('GET /rate-limits/metrics?window=1h counts evaluated and limited requests, the limited address and the rule', async () => {
    const { lb, ruleId } = await limited({ limits: { requests_per_minute: 5 } });
    await awayFromMinuteEdge();
    const metrics = async () => {
      const r = await t.api.get(`${RATE_LIMITS}/metrics?window=1h`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };
    const before = await metrics();
    assert.deepEqual(await statuses(lb.port, 8, { from: '127.0.27.1' }), [...times(5, 200), 429, 429, 429]);
    assert.deepEqual(await statuses(lb.port, 2, { from: '127.0.27.2' }), [200, 200]);
    const m = await metrics();
    assert.equal(m.window, '1h');
    assert.equal(m.total_requests_evaluated - before.total_requests_evaluated, 10);
    assert.equal(m.total_requests_limited - before.total_requests_limited, 3);
    assert.equal(m.limit_rate_percent, Math.round((m.total_requests_limited / m.total_requests_evaluated) * 10_000) / 100);
    const ip = (m.top_limited_ips as { ip: string }[]).find((x) => x.ip === '127.0.27.1');
    assert.deepEqual(ip, { ip: '127.0.27.1', limited_count: 3, total_requests: 8 });
    assert.ok(!(m.top_limited_ips as { ip: string }[]).some((x) => x.ip === '127.0.27.2'), 'a client never limited is not listed');
    assert.deepEqual(
      (m.rules_triggered as { rule_id: string }[]).find((x) => x.rule_id === ruleId),
      { rule_id: ruleId, triggered_count: 3 },
    );
  });

  it('the ACL comes first: a denied client spends no budget and is not a request of the metrics', async () => {
    const { lb } = await limited({ limits: { requests_per_minute: 2 } });
    const acl = await t.api.post(ACLS, { name: 'deny before limit', priority: 1, action: 'DENY', match: { source_ips: ['127.0.31.1/32'], listener_ids: [lb.listenerId] } });
    assert.equal(acl.status, 201, JSON.stringify(acl.body));
    const evaluated = async () => (await t.api.get(`${RATE_LIMITS}/metrics?window=1h`)).body.total_requests_evaluated as number;
    const before = await evaluated();
    assert.deepEqual(await statuses(lb.port, 5, { from: '127.0.31.1' }), times(5, 403));
    assert.equal(await evaluated(), before);
    assert.equal((await t.api.delete(`${ACLS}/${acl.body.acl_id}`)).status, 200);
    assert.deepEqual(await statuses(lb.port, 3, { from: '127.0.31.1' }), [200, 200, 429], 'the whole budget is still there');
  });

  it('a WebSocket handshake spends budget like any request, and over the limit is answered the 429', async () => {
    const { lb } = await limited({ limits: { requests_per_minute: 1 } });
    const url = `ws://127.0.0.1:${lb.port}/`;
    const ws = new WebSocket(url, { localAddress: '127.0.32.1' });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.terminate();
    const refused = await new Promise<{ status: number; retryAfter: unknown }>((resolve, reject) => {
      const again = new WebSocket(url, { localAddress: '127.0.32.1' });
      again.on('open', () => reject(new Error('upgraded over the limit')));
      again.on('error', reject);
      again.on('unexpected-response', (_req, res) => {
        res.resume();
        again.terminate();
        resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'] });
      });
    });
    assert.equal(refused.status, 429);
    assert.match(String(refused.retryAfter), /^[1-9][0-9]*$/);
    assert.equal((await send(lb.port, { from: '127.0.32.1' })).status, 429, 'and so is a plain request of the same client');
  });

  it('on an HTTPS listener over HTTP/2, an ACL denial and a 429 are answered the same way', async () => {
    const certs = new CertFactory();
    try {
      const ca = certs.ca('L7 CA');
      const certId = await uploadCert(t.api, 'l7', certs.leaf(['localhost'], { ca }), ca.cert);
      const { lb } = await limited(
        { limits: { requests_per_minute: 2 }, action_on_limit: { headers: { 'Retry-After': '${retry_after_seconds}', 'X-RateLimit-Limit': '${limit}' }, body: 'slow down' } },
        { protocol: 'HTTPS', tls: { certificate_ids: [certId] } },
      );
      // Narrowed to this listener: ACLs apply to the whole organisation, and this suite's other tests share it.
      const acl = await t.api.post(ACLS, { name: 'h2 deny', priority: 1, action: 'DENY', match: { source_ips: ['127.0.29.2/32'], listener_ids: [lb.listenerId] }, response: { status_code: 403, body: 'denied over h2' } });
      assert.equal(acl.status, 201, JSON.stringify(acl.body));
      const session = async (from: string) => {
        // From a client address of its own: node:http2 passes no localAddress on, so the TLS socket is made here.
        const s = connectH2(`https://127.0.0.1:${lb.port}`, {
          createConnection: () => connectTls({ socket: connectTcp({ host: '127.0.0.1', port: lb.port, localAddress: from }), ca: ca.cert, servername: 'localhost', ALPNProtocols: ['h2'] }),
        });
        await new Promise<void>((resolve, reject) => {
          s.once('connect', () => resolve());
          s.once('error', reject);
        });
        return s;
      };
      const get = { ':method': 'GET', ':path': '/', ':authority': 'localhost' };
      const limitedClient = await session('127.0.29.1');
      const deniedClient = await session('127.0.29.2');
      try {
        assert.equal((await h2Request(limitedClient, get)).status, 200);
        assert.equal((await h2Request(limitedClient, get)).status, 200);
        const r = await h2Request(limitedClient, get);
        assert.equal(r.status, 429);
        assert.match(String(r.headers['retry-after']), /^[1-9][0-9]*$/);
        assert.equal(r.headers['x-ratelimit-limit'], '2');
        assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
        assert.equal(r.body, 'slow down');
        const d = await h2Request(deniedClient, get);
        assert.equal(d.status, 403);
        assert.equal(d.body, 'denied over h2');
        assert.equal(d.headers['content-type'], 'text/plain');
      } finally {
        limitedClient.close();
        deniedClient.close();
      }
      assert.equal((await t.api.delete(`${ACLS}/${acl.body.acl_id}`)).status, 200);
    } finally {
      certs.remove();
    }
  });

  it('rate_limit.triggered is emitted once per rule and client key, not once per refused request', async () => {
    const { ruleId, lb } = await limited({ name: 'event rule', limits: { requests_per_minute: 3 } });
    assert.deepEqual(await statuses(lb.port, 10, { from: '127.0.28.1' }), [...times(3, 200), ...times(7, 429)]);
    const mine = eventsOf(ruleId);
    assert.equal(mine.length, 1, JSON.stringify(mine));
    const e = mine[0]!;
    assert.equal(e.type, 'rate_limit.triggered');
    assert.ok(Math.abs(Date.parse(e.at) - Date.now()) < 5000, e.at);
    assert.deepEqual(e.data, { rate_limit_id: ruleId, name: 'event rule', scope: 'PER_SOURCE_IP', key: '127.0.28.1', limit: 3, limit_window: 'minute' });

    assert.deepEqual(await statuses(lb.port, 5, { from: '127.0.28.2' }), [...times(3, 200), 429, 429]);
    assert.deepEqual(
      eventsOf(ruleId).map((x) => x.data.key),
      ['127.0.28.1', '127.0.28.2'],
      'another key has an event of its own',
    );
    assert.equal((await send(lb.port, { from: '127.0.28.1' })).status, 429);
    assert.equal(eventsOf(ruleId).length, 2, 'still one for the first key');
  });
});

// ── Dry run ──────────────────────────────────────────────────────────────────────────────

describe('the dry run (POST /routing-rules/test) reports ACL and rate limit decisions and changes nothing', () => {
  let t: TestFulcrum;
  let backend: TestBackend;
  let lb: LbSetup;

  before(async () => {
    t = await startTestFulcrum({ relayWorkers: 0 });
    backend = await startBackend('d');
    lb = await setupLb([backend], { fulcrum: t });
  });
  after(async () => {
    await t.close();
    await backend.close();
  });

  async function dryRun(sourceIp: string): Promise<any> {
    const r = await t.api.post(DRY_RUN, { method: 'GET', host: 'app.example.test', path: '/', headers: {}, source_ip: sourceIp, listener_id: lb.listenerId });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }

  it('a DENY ACL: DENIED with its id, without counting a match', async () => {
    const acl = await t.api.post(ACLS, { name: 'deny five', priority: 10, action: 'DENY', match: { source_ips: ['127.0.0.5/32'] } });
    assert.equal(acl.status, 201, JSON.stringify(acl.body));
    const aclId = acl.body.acl_id as string;
    try {
      assert.equal((await send(lb.port, { from: '127.0.0.5' })).status, 403, 'live traffic is denied');
      const matched = async () => (await t.api.get(`${ACLS}/${aclId}`)).body.matched_entries;
      assert.equal(await matched(), 1);
      for (let i = 0; i < 3; i++) {
        const d = await dryRun('127.0.0.5');
        assert.equal(d.acl_status, 'DENIED');
        assert.equal(d.acl_id, aclId);
        assert.equal(d.selected_pool, lb.poolId, 'routing is still reported');
      }
      assert.equal(await matched(), 1, 'the dry run counts no match');
      const other = await dryRun('127.0.0.6');
      assert.equal(other.acl_status, 'ALLOWED');
      assert.equal(other.acl_id, null);
      assert.equal(other.selected_pool, lb.poolId);
      assert.equal(other.selected_backend, lb.backendIds[0]);
    } finally {
      assert.equal((await t.api.delete(`${ACLS}/${aclId}`)).status, 200);
    }
  });

  it('a rate limit: LIMITED for an exhausted client, ALLOWED for another, EXEMPT for an exempt one, and no budget spent', async () => {
    const rule = await t.api.post(RATE_LIMITS, {
      name: 'dry run limit',
      scope: 'PER_SOURCE_IP',
      match: { pools: [lb.poolId] },
      limits: { requests_per_minute: 3 },
      exemptions: { source_ips: ['127.0.30.7/32'] },
    });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    await awayFromMinuteEdge();
    const status = async (ip: string) => {
      const r = await t.api.get(`${RATE_LIMITS}/status?source_ip=${ip}&pool_id=${lb.poolId}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      // Not current_rate_rps: a per-second estimate that decays as time passes.
      const { requests_this_minute, requests_this_hour, is_limited } = r.body.limits[0];
      return { requests_this_minute, requests_this_hour, is_limited };
    };
    const evaluated = async () => (await t.api.get(`${RATE_LIMITS}/metrics?window=1h`)).body.total_requests_evaluated as number;

    assert.deepEqual(await statuses(lb.port, 4, { from: '127.0.30.1' }), [200, 200, 200, 429]);
    assert.deepEqual(await statuses(lb.port, 1, { from: '127.0.30.2' }), [200]);
    const before = { exhausted: await status('127.0.30.1'), partial: await status('127.0.30.2'), evaluated: await evaluated() };
    assert.equal(before.exhausted.is_limited, true);
    assert.equal(before.partial.requests_this_minute, 1);

    for (let i = 0; i < 5; i++) {
      assert.equal((await dryRun('127.0.30.1')).rate_limit_status, 'LIMITED');
      assert.equal((await dryRun('127.0.30.2')).rate_limit_status, 'ALLOWED', 'two requests are left; five dry runs spend none');
      assert.equal((await dryRun('127.0.30.3')).rate_limit_status, 'ALLOWED');
      assert.equal((await dryRun('127.0.30.7')).rate_limit_status, 'EXEMPT');
    }
    assert.deepEqual(await status('127.0.30.1'), before.exhausted);
    assert.deepEqual(await status('127.0.30.2'), before.partial);
    assert.equal(await evaluated(), before.evaluated, 'the dry run is not a request of the metrics');
    // Live traffic agrees: the partial client still has its two requests.
    assert.deepEqual(await statuses(lb.port, 3, { from: '127.0.30.2' }), [200, 200, 429]);
    assert.deepEqual(await statuses(lb.port, 5, { from: '127.0.30.7' }), times(5, 200));
  });
});
