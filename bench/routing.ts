/**
 * Micro-benchmark of the routing rule matcher (src/policy/routing/matcher.ts): ns per match over
 * 10 to 10,000 rules, the index against a plain scan of the same compiled rules in priority order
 * (stopping at the first that holds). The issue asks that matching cost stay flat from 10 to 10,000
 * rules; the scan's column shows what the index saves, the ratio columns show the growth.
 *
 * Rule sets are a realistic mix: 40 % on one shared host (`api.example.com`) told apart by path
 * globs, inner-star globs and regexes with a literal start; distinct exact hosts with globs; wildcard
 * hosts with a prefix; host-less prefixes with a header; exact paths with a method; and three
 * catch-alls at the lowest priority (OPTIONS, `/favicon.ico`, an `X-Debug` header). The requests
 * (the same 48 shapes at every size) match one of the first rules, one of the last, a catch-all,
 * or nothing — a miss is the scan's worst case and the one an index must not pay for.
 *
 * Each figure is the best of several rounds of at least ROUND_MS, after WARMUP_MS of warm-up, which
 * filters out collections and a busy machine. Before timing, the index and the scan are checked to
 * give the same answer for every request; compile time is the best of COMPILES. About 10 s in all.
 * Run: node_modules/.bin/node bench/routing.ts
 */
import { HTTP_METHODS, type RoutingRule, type RuleMatch } from '../src/model/routing-rule.ts';
import type { RequestFacts } from '../src/policy/request.ts';
import { compileRoutes, type RouteMatcher } from '../src/policy/routing/matcher.ts';
import { type CompiledRule, compileRule, normalizeHost, parseQuery } from '../src/policy/routing/rule.ts';

const SIZES = [10, 100, 1_000, 10_000];
const WARMUP_MS = 150;
const ROUND_MS = 150;
const ROUNDS = 5;
const COMPILES = 3;

function ruleAt(i: number, priority: number, match: RuleMatch): RoutingRule {
  return {
    rule_id: `rule-${i}`,
    name: `rule ${i}`,
    description: null,
    priority,
    match,
    action: { type: 'FORWARD', pool_id: `pool-${i % 50}` },
    transforms: {},
    enabled: true,
    tags: {},
    org_id: 'org-bench',
    project_id: 'proj-bench',
    created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z',
    version: 1,
  };
}

/** Rule i's conditions (kind i % 10) and a request that it matches. */
function shape(i: number): { match: RuleMatch; hit: Partial<RequestFacts> } {
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
      return { match: { hosts: [`svc${i}.example.com`], paths: [`/v${i % 3}/*`] }, hit: { host: `svc${i}.example.com`, path: `/v${i % 3}/users/42` } };
    case 3:
      return { match: { hosts: [`*.t${i}.example.net`], path_prefix: '/api/' }, hit: { host: `eu.t${i}.example.net`, path: '/api/items' } };
    case 4:
    case 5:
      return { match: { hosts: ['api.example.com'], paths: [`/svc${i}/items/*`], methods: ['GET', 'POST'] }, hit: { host: 'api.example.com', path: `/svc${i}/items/7`, method: 'POST' } };
    case 6:
      return { match: { hosts: ['api.example.com'], path_regex: `^/r${i}/v[0-9]+/items` }, hit: { host: 'api.example.com', path: `/r${i}/v3/items/9` } };
    case 7:
      return { match: { path_prefix: `/p${i}/`, headers: { 'X-Tenant': [`t${i}`] } }, hit: { host: 'any.example.org', path: `/p${i}/x`, headers: { 'x-tenant': `t${i}` } } };
    case 8:
      return { match: { hosts: [`app${i}.example.com`], path_exact: '/login', methods: ['POST'] }, hit: { host: `app${i}.example.com`, path: '/login', method: 'POST' } };
    default:
      return { match: { hosts: ['api.example.com'], paths: [`/svc${i}/*/orders`], headers: { 'X-Canary': ['true'] } }, hit: { host: 'api.example.com', path: `/svc${i}/u1/orders`, headers: { 'x-canary': 'true' } } };
  }
}

const CATCH_ALLS: RuleMatch[] = [{ methods: ['OPTIONS'] }, { paths: ['/favicon.ico'] }, { headers: { 'X-Debug': ['1'] } }];

function buildRules(n: number): RoutingRule[] {
  const rules = Array.from({ length: n - CATCH_ALLS.length }, (_, i) => ruleAt(i, 10 + i, shape(i).match));
  CATCH_ALLS.forEach((match, k) => rules.push(ruleAt(n + k, 1_000_000 - CATCH_ALLS.length + k, match)));
  return rules;
}

function facts(more: Partial<RequestFacts>): RequestFacts {
  return { method: 'GET', host: 'api.example.com', path: '/', query: '', headers: {}, clientIp: '192.0.2.10', listenerId: 'lis-1', orgId: 'org-bench', ...more };
}

/** 16 requests for the first rules, 16 for the last, 4 for the catch-alls, 12 that match nothing. */
function buildRequests(n: number): RequestFacts[] {
  const rules = n - CATCH_ALLS.length;
  const out: RequestFacts[] = [];
  for (let k = 0; k < 16; k++) out.push(facts(shape(k % rules).hit));
  for (let k = 0; k < 16; k++) out.push(facts(shape(rules - 1 - (k % rules)).hit));
  out.push(facts({ method: 'OPTIONS', path: '/anything' }), facts({ host: 'www.example.com', path: '/favicon.ico' }), facts({ host: 'x.example.org', path: '/a', headers: { 'x-debug': '1' } }), facts({ path: '/favicon.ico' }));
  const misses: Partial<RequestFacts>[] = [
    { host: 'api.example.com', path: '/nothing/here' },
    { host: 'api.example.com', path: '/svc4/items' },
    { host: 'api.example.com', path: '/svc4/items/7', method: 'DELETE' },
    { host: 'api.example.com', path: '/svc9/u1/orders' },
    { host: 'api.example.com', path: '/r6/vx/items' },
    { host: 'svc0.example.com', path: '/v9/users' },
    { host: 'unknown.example.org', path: '/v0/users/1' },
    { host: 'app8.example.com', path: '/login' },
    { host: 'a.b.c.example.net', path: '/api/items' },
    { host: '', path: '/p7/x' },
    { host: 'api.example.com', path: '/static/app.js', headers: { 'x-debug': '0' } },
    { host: 'shop.example.com', path: '/cart', query: 'id=7&ref=mail' },
  ];
  for (const m of misses) out.push(facts(m));
  return out;
}

const METHOD_BIT = new Map<string, number>(HTTP_METHODS.map((m, i) => [m, 1 << i]));

/** The plain scan: every enabled rule, compiled once, checked in priority order until one holds. */
class LinearScan {
  readonly #rules: { rule: RoutingRule; c: CompiledRule }[];

  constructor(rules: readonly RoutingRule[]) {
    this.#rules = rules
      .filter((r) => r.enabled)
      .sort((a, b) => a.priority - b.priority)
      .map((rule) => {
        const c = compileRule(rule);
        if (Array.isArray(c)) throw new Error(`${rule.rule_id}: ${JSON.stringify(c)}`);
        return { rule, c };
      });
  }

  match(f: RequestFacts): RoutingRule | null {
    const host = normalizeHost(f.host);
    const bit = METHOD_BIT.get(f.method) ?? 0;
    let query: Map<string, string[]> | null = null;
    for (const { rule, c } of this.#rules) {
      if (rule.org_id !== f.orgId) continue;
      if (c.hosts !== null) {
        let any = false;
        for (const h of c.hosts) {
          any = h.wildcard ? host.length > h.name.length && host.endsWith(h.name) && host.charCodeAt(host.length - h.name.length - 1) === 46 : host === h.name;
          if (any) break;
        }
        if (!any) continue;
      }
      if (c.methods !== 0 && (c.methods & bit) === 0) continue;
      const p = c.path;
      if (p !== null) {
        if (p.exact !== null && f.path !== p.exact) continue;
        if (p.prefix !== null && !f.path.startsWith(p.prefix)) continue;
        if (p.globs !== null && !p.globs.some((g) => g.test(f.path))) continue;
        if (p.regex !== null && !p.regex.test(f.path)) continue;
      }
      if (c.headers !== null) {
        let ok = true;
        for (const h of c.headers) {
          const v = f.headers[h.name];
          ok = v !== undefined && (typeof v === 'string' ? h.values.has(v) : v.some((x) => h.values.has(x)));
          if (!ok) break;
        }
        if (!ok) continue;
      }
      if (c.query !== null) {
        const q = (query ??= parseQuery(f.query));
        if (!c.query.every(([name, value]) => q.get(name)?.includes(value) === true)) continue;
      }
      if (c.listeners !== null && !c.listeners.has(f.listenerId)) continue;
      if (c.sources !== null && !c.sources.contains(f.clientIp)) continue;
      return rule;
    }
    return null;
  }
}

type Matcher = Pick<RouteMatcher, 'match'>;

let sink = 0;

/** Best ns per match over ROUNDS rounds of at least ROUND_MS each, after WARMUP_MS. */
function nsPerMatch(m: Matcher, requests: readonly RequestFacts[]): number {
  const pass = () => {
    for (let i = 0; i < requests.length; i++) if (m.match(requests[i]!) !== null) sink++;
  };
  const timed = (ms: number): number => {
    const limit = BigInt(ms) * 1_000_000n;
    const start = process.hrtime.bigint();
    let passes = 0;
    let elapsed: bigint;
    do {
      pass();
      passes++;
      elapsed = process.hrtime.bigint() - start;
    } while (elapsed < limit);
    return Number(elapsed) / (passes * requests.length);
  };
  timed(WARMUP_MS);
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) best = Math.min(best, timed(ROUND_MS));
  return best;
}

interface Row {
  n: number;
  compileMs: number;
  index: number;
  scan: number;
  matched: number;
}

const rows: Row[] = [];
for (const n of SIZES) {
  const rules = buildRules(n);
  const requests = buildRequests(n);
  // Compile time: the best of COMPILES (the first at a size pays for warming up the compiler).
  let index: RouteMatcher | null = null;
  let compileMs = Infinity;
  for (let k = 0; k < COMPILES; k++) {
    const started = process.hrtime.bigint();
    index = compileRoutes(rules);
    compileMs = Math.min(compileMs, Number(process.hrtime.bigint() - started) / 1e6);
  }
  const scan = new LinearScan(rules);
  let matched = 0;
  for (const f of requests) {
    const a = index!.match(f);
    const b = scan.match(f);
    if (a !== b) throw new Error(`n=${n}: the index says ${a?.rule_id ?? null}, the scan ${b?.rule_id ?? null} for ${JSON.stringify(f)}`);
    if (a !== null) matched++;
  }
  rows.push({ n, compileMs, index: nsPerMatch(index!, requests), scan: nsPerMatch(scan, requests), matched });
}

const first = rows[0]!;
const header = ['rules', 'compile (once)', 'index ns/match', 'scan ns/match', 'scan ÷ index', `index ÷ n=${first.n}`, `scan ÷ n=${first.n}`];
const table = rows.map((r) => [
  r.n.toLocaleString('en'),
  `${r.compileMs.toFixed(r.compileMs < 10 ? 2 : 1)} ms`,
  r.index.toFixed(0),
  r.scan.toFixed(0),
  `${(r.scan / r.index).toFixed(1)}x`,
  `${(r.index / first.index).toFixed(2)}x`,
  `${(r.scan / first.scan).toFixed(1)}x`,
]);
const widths = header.map((h, c) => Math.max(h.length, ...table.map((r) => r[c]!.length)));
const line = (cells: string[]) => `| ${cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
const requests = buildRequests(SIZES[0]!).length;
console.log(
  `ns per match: best of ${ROUNDS} rounds of ≥ ${ROUND_MS} ms after ${WARMUP_MS} ms of warm-up, over ${requests} requests ` +
    `(16 for the first rules, 16 for the last, 4 catch-alls, 12 that match nothing; ${rows.map((r) => r.matched).join('/')} matched)\n`,
);
console.log(line(header));
console.log(`|${widths.map((w, c) => (c === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
for (const r of table) console.log(line(r));
if (sink < 0) console.log(sink); // keeps the results alive
