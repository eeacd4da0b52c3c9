/**
 * Rate limits (seed 000 §7): the decision a request gets after the ACL and the routing rule, as
 * plain data, from configuration compiled once per revision and runtime state that outlives it.
 *
 * Budgets. Each rate limit keeps its own table of keys; the key is the scope's:
 * `PER_SOURCE_IP` the client address (IPv4-mapped IPv6 as IPv4), `GLOBAL` one key (`global`),
 * `PER_HEADER` a SHA-256 of the named header's first value (`sha256:<32 hex>`; the value itself is
 * never kept, since it is often a credential) or, for a request without the header, its client
 * address (`ip:<address>`, so leaving the header out is no way around the limit), and `PER_RULE`
 * the matched routing rule's id (`(no routing rule)` for requests no rule matched). The table is
 * found by the rate limit's id and nothing else, so one rule is one budget whatever listener, route
 * or revision a request came through (the failure of traefik#8061 and Kong#11846).
 *
 * Limits, all lazily updated at each request (no timers):
 * - `requests_per_second` + `burst_size`: a token bucket of capacity burst_size (full at first),
 *   refilled continuously at requests_per_second; a request takes one token. Exact: over any span
 *   T a key gets at most burst + rps × T requests.
 * - `requests_per_minute`, `requests_per_hour`: sliding window counters. Each keeps the count of
 *   the current clock-aligned window and of the previous one; the requests "in the last minute"
 *   are estimated as previous × (share of the previous window still within the last minute) +
 *   current. Two numbers per window and no cliff at the window edge for traffic that is even; the
 *   estimate assumes the previous window's requests were spread evenly, so a client that sent its
 *   whole allowance at the very end of one window can get up to about twice the limit within the
 *   following 60 s — no worse than fixed windows, and the token bucket bounds such bursts.
 * - A request is allowed only if every limit of every matching, non-exempt rule allows it; then
 *   each of those rules counts it. A refused request is counted by none (a client hammering at the
 *   limit does not push its own recovery further away) and is refused by the first rule, in the
 *   order given, that would refuse it.
 *
 * Bound: at most `maxKeys` keys per rule (100,000 by default). A new key at the bound first evicts
 * every key that carries no information (each configured limit whole again: bucket full, windows
 * empty); if that freed less than an eighth of the bound, the least recently seen keys go until an
 * eighth is free (amortised O(1) per new key). An evicted key
 * that had spent budget starts afresh when it comes back: at the bound the limiter errs towards
 * letting requests through, never towards refusing clients it knows nothing about.
 *
 * Cost per request: per rule of the organisation, a Set lookup (pools), glob tests (paths), the
 * exemption tests, one Map lookup and re-insertion (recency) and a few float operations; a SHA-256
 * of the header value for PER_HEADER.
 *
 * The clock is injected (milliseconds since the epoch: minute and hour windows align to the
 * wall clock and reset times are wall times). A clock that steps back neither refills nor rolls a
 * window; counting carries on in the window already current.
 */
import { createHash } from 'node:crypto';
import { creationOrder, isoSeconds } from '../model/common.ts';
import { RATE_LIMIT_PLACEHOLDERS, type RateLimit, type RateLimitPlaceholder, type RateLimitScope } from '../model/rate-limit.ts';
import { CidrSet, type Network, parseNetwork, plainAddress } from './cidr.ts';
import { compileGlob, type Glob } from './glob.ts';
import { headerValue, type RequestFacts } from './request.ts';

const SECOND_MS = 1000;
const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Lazy refills add fractions of a token, which do not sum to whole numbers exactly in binary. */
const EPSILON = 1e-9;

export const RATE_LIMIT_BOUNDS = {
  maxKeys: 100_000, // keys per rule
  eventIntervalMs: 60_000, // at most one rate_limit.triggered per rule and key in this time
  eventsPerRulePerMinute: 100, // and at most this many per rule per clock minute, whatever the keys
  metricMinutes: 1440, // minute buckets kept for /rate-limits/metrics (24 h)
  ipsPerMinute: 10_000, // client addresses counted per minute bucket while the minute is current
  keptIpsPerMinute: 100, // the most limited addresses a minute bucket keeps once the minute is over
} as const;

export const GLOBAL_KEY = 'global';
export const NO_ROUTING_RULE_KEY = '(no routing rule)';

/** The routed pool and the matched routing rule (the key of PER_RULE); null when there is none. */
export interface RateLimitContext {
  poolId: string | null;
  ruleId: string | null;
}

export type LimitWindow = 'second' | 'minute' | 'hour';

/**
 * What the data plane does with a request. Not limited: forward it, adding `headers` to the
 * response when given (only when a matching rule has `headers_on_allowed`). Limited: answer
 * `status` with `headers` and `body` and forward nothing; `ruleId` is the refusing rate limit's id.
 */
export type RateVerdict =
  | { limited: false; headers?: [string, string][] }
  | { limited: true; ruleId: string; status: number; headers: [string, string][]; body: string };

/** A `rate_limit.triggered` event's data. `limit` is the value of the limit that refused. */
export interface RateLimitTriggered {
  rate_limit_id: string;
  name: string;
  scope: RateLimitScope;
  key: string;
  limit: number;
  limit_window: LimitWindow;
}

/** One client's standing under one rule (GET /rate-limits/status). */
export interface RateLimitKeyStatus {
  rule_id: string;
  name: string;
  scope: RateLimitScope;
  key: string;
  /** The source address is in the rule's `exemptions.source_ips` (header and API key exemptions depend on the request). */
  exempt: boolean;
  /** Requests (allowed or not) the key sent over the last second, sliding estimate. */
  current_rate_rps: number;
  limit_rps: number | null;
  /** Whole tokens in the bucket now; null without requests_per_second. */
  remaining_burst: number | null;
  /** Allowed requests over the last 60 s / 3600 s, sliding estimate (counted even without a limit of that window). */
  requests_this_minute: number;
  limit_per_minute: number | null;
  requests_this_hour: number;
  limit_per_hour: number | null;
  /** The next request of this key would be refused. */
  is_limited: boolean;
  /** Limited: when the next request would be allowed. Otherwise: when every limit is back to its full allowance; null when it is already. */
  next_reset: string | null;
}

export interface RateLimitStatusQuery {
  sourceIp: string;
  /** Only rules that can apply to this pool; undefined: every rule. */
  poolId?: string;
  /** Only rules whose paths match it; undefined: paths are not considered. */
  path?: string;
  /** PER_HEADER: the header's value; undefined: a request without the header. */
  headerValue?: string;
  /** PER_RULE: the routing rule; undefined or null: requests no routing rule matched. */
  routingRuleId?: string | null;
  /** Only this organisation's rules; undefined: every organisation's. */
  orgId?: string;
}

export interface RateLimiter {
  /** Counts the request against every matching, non-exempt rule; limited by the first rule that refuses. */
  check(facts: RequestFacts, ctx: RateLimitContext): RateVerdict;
  /** The same decision without counting anything (the dry run). EXEMPT: rules matched and every one of them exempts the request. */
  peek(facts: RequestFacts, ctx: RateLimitContext): 'ALLOWED' | 'LIMITED' | 'EXEMPT';
  /** One client's standing under every enabled rule the query selects, from the live state; counts nothing. */
  status(query: RateLimitStatusQuery): RateLimitKeyStatus[];
}

// ── Counters ─────────────────────────────────────────────────────────────────────────────

/** A sliding window counter: the counts of the current and of the previous clock-aligned window. */
class WindowCount {
  index = -2;
  curr = 0;
  prev = 0;
}

interface WindowView {
  prev: number;
  curr: number;
  /** Start of the current window. */
  start: number;
}

/** The window as it stands at `now`, without changing it. */
function windowAt(w: WindowCount, now: number, ms: number): WindowView {
  const i = Math.floor(now / ms);
  if (i <= w.index) return { prev: w.prev, curr: w.curr, start: w.index * ms };
  if (i === w.index + 1) return { prev: w.curr, curr: 0, start: i * ms };
  return { prev: 0, curr: 0, start: i * ms };
}

function estimate(v: WindowView, now: number, ms: number): number {
  const elapsed = Math.min(1, Math.max(0, (now - v.start) / ms));
  return v.prev * (1 - elapsed) + v.curr;
}

function count(w: WindowCount, now: number, ms: number): void {
  const i = Math.floor(now / ms);
  if (i > w.index) {
    w.prev = i === w.index + 1 ? w.curr : 0;
    w.curr = 0;
    w.index = i;
  }
  w.curr++;
}

/** Milliseconds until one more request fits under `limit`, if nothing else is counted meanwhile. */
function windowWait(v: WindowView, now: number, ms: number, limit: number): number {
  if (estimate(v, now, ms) + 1 <= limit + EPSILON) return 0;
  if (v.curr + 1 <= limit + EPSILON) {
    // Within this window, once enough of the previous one has slid out (prev > 0 here).
    const share = 1 - (limit - 1 - v.curr) / v.prev;
    return Math.max(1, v.start + share * ms - now);
  }
  // Only in the next window, where this window's count is the previous one (curr ≥ limit ≥ 1).
  const share = 1 - (limit - 1) / v.curr;
  return Math.max(1, v.start + ms + share * ms - now);
}

/** When the estimate is back to zero. */
function windowDrainedAt(v: WindowView, now: number, ms: number): number {
  if (v.curr > 0) return v.start + 2 * ms;
  if (v.prev > 0) return v.start + ms;
  return now;
}

/** One key's state under one rule. */
class KeyEntry {
  /** NaN: a full bucket (never spent, or the rule had no bucket when the key was made). */
  tokens = Number.NaN;
  refilledAt = 0;
  /** Attempts, allowed or not: the key's current rate. */
  readonly second = new WindowCount();
  /** Allowed requests. */
  readonly minute = new WindowCount();
  readonly hour = new WindowCount();
  lastEventAt = Number.NEGATIVE_INFINITY;
}

function tokensAt(e: KeyEntry, now: number, rps: number, burst: number): number {
  if (Number.isNaN(e.tokens)) return burst;
  const elapsed = now - e.refilledAt;
  return Math.min(burst, elapsed > 0 ? e.tokens + (elapsed * rps) / SECOND_MS : e.tokens);
}

/** A rule's runtime state: its keys, least recently seen first. */
class RuleState {
  readonly keys = new Map<string, KeyEntry>();
  /** created_at, scope and header: when these change the keys mean something else, so they go. */
  identity: string;
  eventMinute = -1;
  eventsInMinute = 0;

  constructor(identity: string) {
    this.identity = identity;
  }
}

// ── Metrics ──────────────────────────────────────────────────────────────────────────────

interface IpCount {
  total: number;
  limited: number;
}

interface MinuteSlot {
  minute: number;
  evaluated: number;
  limited: number;
  triggered: Map<string, number>;
  /** Addresses limited in this minute; their `total` counts their evaluated requests in this minute. */
  ips: Map<string, IpCount>;
}

export interface RateLimitMetrics {
  total_requests_evaluated: number;
  total_requests_limited: number;
  limit_rate_percent: number;
  top_limited_ips: { ip: string; limited_count: number; total_requests: number }[];
  rules_triggered: { rule_id: string; triggered_count: number }[];
}

export interface RateLimitStateOptions {
  /** Milliseconds since the epoch (`Date.now`). */
  now: () => number;
  /** Keys per rule at most (see the bound above); 100,000 by default. */
  maxKeys?: number;
  /** Receives `rate_limit.triggered` (at most one per rule and key per minute); must not throw. */
  onTriggered?: (event: RateLimitTriggered) => void;
}

/**
 * Everything rate limiting remembers: per rule the keys' buckets and windows, and the minute
 * buckets of the metrics. One object for the whole process, kept across configuration revisions
 * (each revision's `compileRateLimits` uses the same one); a rule's state is found by its id.
 */
export class RateLimitState {
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #onTriggered: ((event: RateLimitTriggered) => void) | undefined;
  readonly #rules = new Map<string, RuleState>();
  /** The metrics' minute buckets, a ring indexed by minute number. */
  readonly #slots: (MinuteSlot | undefined)[] = new Array<MinuteSlot | undefined>(RATE_LIMIT_BOUNDS.metricMinutes);
  #current: MinuteSlot | undefined;
  /** The current minute's evaluated requests per address not (yet) limited in it. */
  readonly #seen = new Map<string, number>();

  constructor(options: RateLimitStateOptions) {
    this.#now = options.now;
    this.#maxKeys = Math.max(1, options.maxKeys ?? RATE_LIMIT_BOUNDS.maxKeys);
    this.#onTriggered = options.onTriggered;
  }

  now(): number {
    return this.#now();
  }

  /** Keys a rule tracks now (0 for an unknown rule). */
  trackedKeys(rateLimitId: string): number {
    return this.#rules.get(rateLimitId)?.keys.size ?? 0;
  }

  /** Drops a deleted rule's state. */
  forget(rateLimitId: string): void {
    this.#rules.delete(rateLimitId);
  }

  /** @internal The rule's state, started afresh when its identity changed. */
  rule(id: string, identity: string): RuleState {
    let rs = this.#rules.get(id);
    if (rs === undefined || rs.identity !== identity) this.#rules.set(id, (rs = new RuleState(identity)));
    return rs;
  }

  /** @internal The key's entry, made (and the bound kept) when new; marks it most recently seen. */
  entry(rs: RuleState, key: string, now: number, blank: (e: KeyEntry, now: number) => boolean): KeyEntry {
    let e = rs.keys.get(key);
    if (e !== undefined) {
      // Re-insertion keeps the Map in least-recently-seen order for eviction.
      rs.keys.delete(key);
      rs.keys.set(key, e);
      return e;
    }
    if (rs.keys.size >= this.#maxKeys) this.#evict(rs, now, blank);
    rs.keys.set(key, (e = new KeyEntry()));
    return e;
  }

  #evict(rs: RuleState, now: number, blank: (e: KeyEntry, now: number) => boolean): void {
    const target = Math.max(1, Math.ceil(this.#maxKeys / 8));
    let freed = 0;
    for (const [k, e] of rs.keys) {
      if (blank(e, now)) {
        rs.keys.delete(k);
        freed++;
      }
    }
    for (const k of rs.keys.keys()) {
      if (freed >= target) break;
      rs.keys.delete(k);
      freed++;
    }
  }

  /** @internal Emits a rate_limit.triggered unless this key had one within the interval or the rule had its share this minute. */
  triggered(rs: RuleState, e: KeyEntry, now: number, event: RateLimitTriggered): void {
    if (this.#onTriggered === undefined || now - e.lastEventAt < RATE_LIMIT_BOUNDS.eventIntervalMs) return;
    const minute = Math.floor(now / MINUTE_MS);
    if (minute !== rs.eventMinute) {
      rs.eventMinute = minute;
      rs.eventsInMinute = 0;
    }
    if (rs.eventsInMinute >= RATE_LIMIT_BOUNDS.eventsPerRulePerMinute) return;
    rs.eventsInMinute++;
    e.lastEventAt = now;
    this.#onTriggered(event);
  }

  /** @internal Counts one evaluated request from `ip`, limited by `limitedBy` (a rule id) or not. */
  record(now: number, ip: string, limitedBy: string | null): void {
    const slot = this.#slot(now);
    slot.evaluated++;
    let c = slot.ips.get(ip);
    if (limitedBy === null) {
      if (c !== undefined) c.total++;
      else if (this.#seen.size < RATE_LIMIT_BOUNDS.ipsPerMinute || this.#seen.has(ip)) this.#seen.set(ip, (this.#seen.get(ip) ?? 0) + 1);
      return;
    }
    slot.limited++;
    slot.triggered.set(limitedBy, (slot.triggered.get(limitedBy) ?? 0) + 1);
    if (c === undefined && slot.ips.size < RATE_LIMIT_BOUNDS.ipsPerMinute) {
      c = { total: this.#seen.get(ip) ?? 0, limited: 0 };
      this.#seen.delete(ip);
      slot.ips.set(ip, c);
    }
    if (c !== undefined) {
      c.total++;
      c.limited++;
    }
  }

  #slot(now: number): MinuteSlot {
    const minute = Math.floor(now / MINUTE_MS);
    const cur = this.#current;
    // A clock that stepped back keeps counting in the current minute.
    if (cur !== undefined && minute <= cur.minute) return cur;
    if (cur !== undefined) {
      // The minute is over: keep only its most limited addresses.
      if (cur.ips.size > RATE_LIMIT_BOUNDS.keptIpsPerMinute) {
        const kept = [...cur.ips].sort((a, b) => b[1].limited - a[1].limited).slice(0, RATE_LIMIT_BOUNDS.keptIpsPerMinute);
        cur.ips = new Map(kept);
      }
      this.#seen.clear();
    }
    const slot: MinuteSlot = { minute, evaluated: 0, limited: 0, triggered: new Map(), ips: new Map() };
    this.#slots[minute % RATE_LIMIT_BOUNDS.metricMinutes] = slot;
    this.#current = slot;
    return slot;
  }

  /** Totals over the current minute and the `minutes - 1` before it (1–1440); the `top` most limited addresses. */
  metrics(minutes: number, top = 10): RateLimitMetrics {
    const span = Math.min(RATE_LIMIT_BOUNDS.metricMinutes, Math.max(1, Math.floor(minutes)));
    const now = Math.floor(this.#now() / MINUTE_MS);
    let evaluated = 0;
    let limited = 0;
    const triggered = new Map<string, number>();
    const ips = new Map<string, IpCount>();
    for (const slot of this.#slots) {
      if (slot === undefined || slot.minute > now || slot.minute <= now - span) continue;
      evaluated += slot.evaluated;
      limited += slot.limited;
      for (const [id, n] of slot.triggered) triggered.set(id, (triggered.get(id) ?? 0) + n);
      for (const [ip, c] of slot.ips) {
        const sum = ips.get(ip);
        if (sum === undefined) ips.set(ip, { total: c.total, limited: c.limited });
        else {
          sum.total += c.total;
          sum.limited += c.limited;
        }
      }
    }
    const topIps = [...ips]
      .sort((a, b) => b[1].limited - a[1].limited || b[1].total - a[1].total || (a[0] < b[0] ? -1 : 1))
      .slice(0, Math.max(0, top))
      .map(([ip, c]) => ({ ip, limited_count: c.limited, total_requests: c.total }));
    const rules = [...triggered].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([rule_id, triggered_count]) => ({ rule_id, triggered_count }));
    return {
      total_requests_evaluated: evaluated,
      total_requests_limited: limited,
      limit_rate_percent: evaluated === 0 ? 0 : Math.round((limited / evaluated) * 10_000) / 100,
      top_limited_ips: topIps,
      rules_triggered: rules,
    };
  }
}

// ── Templates ────────────────────────────────────────────────────────────────────────────

const PLACEHOLDER = new RegExp(`\\$\\{(${RATE_LIMIT_PLACEHOLDERS.join('|')})\\}`);
const ANY_PLACEHOLDER = /\$\{([^}]*)\}/g;

/** Literal text at even indexes, placeholder names at odd ones (what `split` with one group gives). */
type Template = readonly string[];

function compileTemplate(text: string): Template {
  return text.split(PLACEHOLDER);
}

function render(t: Template, values: Record<RateLimitPlaceholder, string>): string {
  let out = t[0]!;
  for (let i = 1; i < t.length; i += 2) out += values[t[i] as RateLimitPlaceholder] + t[i + 1]!;
  return out;
}

/** The `${…}` names in `text` that are not placeholders (a template's typos, for the API to refuse). */
export function unknownPlaceholders(text: string): string[] {
  const known: readonly string[] = RATE_LIMIT_PLACEHOLDERS;
  return [...text.matchAll(ANY_PLACEHOLDER)].map((m) => m[1]!).filter((name) => !known.includes(name));
}

// ── Compilation ──────────────────────────────────────────────────────────────────────────

interface CompiledRule {
  readonly id: string;
  readonly name: string;
  readonly scope: RateLimitScope;
  /** PER_HEADER: the lower-case field name. */
  readonly header: string;
  readonly pools: ReadonlySet<string> | null;
  readonly paths: readonly Glob[] | null;
  readonly exemptIps: CidrSet | null;
  readonly exemptHeaders: readonly (readonly [string, ReadonlySet<string>])[];
  readonly exemptKeys: readonly Glob[];
  readonly rps: number | null;
  readonly burst: number;
  readonly rpm: number | null;
  readonly rph: number | null;
  readonly status: number;
  readonly headers: readonly (readonly [string, Template])[];
  readonly body: Template;
  readonly headersOnAllowed: boolean;
  readonly state: RuleState;
  /** The key carries nothing: a full bucket and empty windows (evicted first at the bound). */
  readonly blank: (e: KeyEntry, now: number) => boolean;
}

function compileRule(r: RateLimit, state: RateLimitState): CompiledRule {
  const networks = r.exemptions.source_ips.map(parseNetwork).filter((n): n is Network => typeof n !== 'string');
  const rps = r.limits.requests_per_second ?? null;
  const burst = r.limits.burst_size ?? rps ?? 0;
  const headers = Object.entries(r.action_on_limit.headers).map(([k, v]) => [k, compileTemplate(v)] as const);
  if (!headers.some(([k]) => k.toLowerCase() === 'content-type')) {
    // A body that reads as JSON is labelled so; the seed's example body is JSON.
    const t = r.action_on_limit.body.trimStart();
    headers.push(['Content-Type', [t.startsWith('{') || t.startsWith('[') ? 'application/json' : 'text/plain; charset=utf-8']]);
  }
  const rpm = r.limits.requests_per_minute ?? null;
  const rph = r.limits.requests_per_hour ?? null;
  // Only the configured limits count: the other windows are kept for the status API alone.
  const blank = (e: KeyEntry, now: number) => {
    if (rps !== null && tokensAt(e, now, rps, burst) < burst - EPSILON) return false;
    if (rpm !== null && estimate(windowAt(e.minute, now, MINUTE_MS), now, MINUTE_MS) > 0) return false;
    return rph === null || estimate(windowAt(e.hour, now, HOUR_MS), now, HOUR_MS) === 0;
  };
  return {
    id: r.rate_limit_id,
    name: r.name,
    scope: r.scope,
    header: (r.header ?? '').toLowerCase(),
    pools: r.match.pools ? new Set(r.match.pools) : null,
    paths: r.match.paths ? r.match.paths.map((g) => compileGlob(g)) : null,
    exemptIps: networks.length > 0 ? new CidrSet(networks) : null,
    exemptHeaders: Object.entries(r.exemptions.headers).map(([k, v]) => [k.toLowerCase(), new Set(v)] as const),
    exemptKeys: r.exemptions.api_keys.map((g) => compileGlob(g)),
    rps,
    burst,
    rpm,
    rph,
    status: r.action_on_limit.status_code,
    headers,
    body: compileTemplate(r.action_on_limit.body),
    headersOnAllowed: r.headers_on_allowed,
    state: state.rule(r.rate_limit_id, `${r.created_at}|${r.scope}|${(r.header ?? '').toLowerCase()}`),
    blank,
  };
}

/** Whether the rule's match holds; an undefined path or pool is not considered (the status query). */
function applies(r: CompiledRule, path: string | undefined, poolId: string | null | undefined): boolean {
  if (r.pools !== null && poolId !== undefined && (poolId === null || !r.pools.has(poolId))) return false;
  if (r.paths !== null && path !== undefined && !r.paths.some((g) => g.test(path))) return false;
  return true;
}

const BEARER = /^bearer[ \t]+([^ \t]+)[ \t]*$/i;

/**
 * The request's API key: the token of `Authorization: Bearer <key>` (RFC 6750 §2.1), else the
 * `X-API-Key` field. Fulcrum does not verify it: an exemption by API key is only as trustworthy as
 * the client sending it.
 */
export function apiKeyOf(facts: RequestFacts): string | undefined {
  const auth = headerValue(facts, 'authorization');
  if (auth !== undefined) {
    const m = BEARER.exec(auth);
    if (m) return m[1]!;
  }
  return headerValue(facts, 'x-api-key')?.trim();
}

function exempt(r: CompiledRule, facts: RequestFacts): boolean {
  if (r.exemptIps !== null && r.exemptIps.contains(facts.clientIp)) return true;
  for (const [name, values] of r.exemptHeaders) {
    const v = facts.headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v) ? v.some((x) => values.has(x)) : values.has(v)) return true;
  }
  if (r.exemptKeys.length > 0) {
    const key = apiKeyOf(facts);
    if (key !== undefined && key !== '' && r.exemptKeys.some((g) => g.test(key))) return true;
  }
  return false;
}

function headerKey(value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;
}

function keyOf(r: CompiledRule, clientIp: string, header: string | undefined, ruleId: string | null): string {
  switch (r.scope) {
    case 'GLOBAL':
      return GLOBAL_KEY;
    case 'PER_SOURCE_IP':
      return plainAddress(clientIp);
    case 'PER_RULE':
      return ruleId ?? NO_ROUTING_RULE_KEY;
    case 'PER_HEADER':
      // No usable value: the client's own budget, so leaving the header out is no way around the limit.
      return header === undefined || header === '' ? `ip:${plainAddress(clientIp)}` : headerKey(header);
  }
}

interface Refusal {
  wait: number;
  limit: number;
  window: LimitWindow;
}

/** Null when every limit lets one more request through; otherwise the limit that holds it longest. */
function refusal(r: CompiledRule, e: KeyEntry, now: number): Refusal | null {
  let worst: Refusal | null = null;
  if (r.rps !== null) {
    const t = tokensAt(e, now, r.rps, r.burst);
    if (t < 1 - EPSILON) worst = { wait: Math.max(1, ((1 - t) * SECOND_MS) / r.rps), limit: r.rps, window: 'second' };
  }
  if (r.rpm !== null) {
    const wait = windowWait(windowAt(e.minute, now, MINUTE_MS), now, MINUTE_MS, r.rpm);
    if (wait > 0 && (worst === null || wait > worst.wait)) worst = { wait, limit: r.rpm, window: 'minute' };
  }
  if (r.rph !== null) {
    const wait = windowWait(windowAt(e.hour, now, HOUR_MS), now, HOUR_MS, r.rph);
    if (wait > 0 && (worst === null || wait > worst.wait)) worst = { wait, limit: r.rph, window: 'hour' };
  }
  return worst;
}

/**
 * The limit with the fewest requests left (the one a client runs into first), and when it is whole
 * again. Fewest in number, not in share of the limit: a bucket's tokens go up to burst_size, above
 * its limit (requests_per_second), so a share would show an hour limit with 99,999 left while the
 * bucket has 3 (and the client is refused after those 3).
 */
function tightest(r: CompiledRule, e: KeyEntry, now: number): { limit: number; remaining: number; resetAt: number } | null {
  let best: { limit: number; remaining: number; resetAt: number } | null = null;
  const consider = (limit: number, remaining: number, resetAt: number) => {
    if (best === null || remaining < best.remaining) best = { limit, remaining, resetAt };
  };
  if (r.rps !== null) {
    const t = tokensAt(e, now, r.rps, r.burst);
    consider(r.rps, Math.max(0, Math.floor(t + EPSILON)), now + ((r.burst - t) * SECOND_MS) / r.rps);
  }
  if (r.rpm !== null) {
    const v = windowAt(e.minute, now, MINUTE_MS);
    consider(r.rpm, Math.max(0, Math.floor(r.rpm - estimate(v, now, MINUTE_MS) + EPSILON)), windowDrainedAt(v, now, MINUTE_MS));
  }
  if (r.rph !== null) {
    const v = windowAt(e.hour, now, HOUR_MS);
    consider(r.rph, Math.max(0, Math.floor(r.rph - estimate(v, now, HOUR_MS) + EPSILON)), windowDrainedAt(v, now, HOUR_MS));
  }
  return best;
}

/**
 * The order rate limits are evaluated and listed in: creation time (to the second), then id, so
 * rules made in the same second still have one order, the same in the API and in traffic.
 */
export function rateLimitOrder(a: Pick<RateLimit, 'created_at' | 'rate_limit_id'>, b: Pick<RateLimit, 'created_at' | 'rate_limit_id'>): number {
  return creationOrder(a, a.rate_limit_id, b, b.rate_limit_id);
}

const ALLOWED: RateVerdict = Object.freeze({ limited: false });

/**
 * Builds the limiter of one configuration revision. `rules` may hold several organisations' rate
 * limits: a request meets only those of its own (`facts.orgId`). Disabled rules are left out.
 * Rules are tried in the order given. The same `state` must be passed to every revision's
 * compilation, so budgets carry over.
 */
export function compileRateLimits(rules: readonly RateLimit[], state: RateLimitState): RateLimiter {
  const byOrg = new Map<string, CompiledRule[]>();
  for (const r of rules) {
    if (!r.enabled) continue;
    let list = byOrg.get(r.org_id);
    if (!list) byOrg.set(r.org_id, (list = []));
    list.push(compileRule(r, state));
  }

  return {
    check(facts, ctx) {
      const rules = byOrg.get(facts.orgId);
      if (rules === undefined) return ALLOWED;
      const now = state.now();
      let matched = false;
      let counted: [CompiledRule, KeyEntry][] | null = null;
      let refused: { rule: CompiledRule; entry: KeyEntry; key: string; why: Refusal } | null = null;
      for (const r of rules) {
        if (!applies(r, facts.path, ctx.poolId)) continue;
        matched = true;
        if (exempt(r, facts)) continue;
        const key = keyOf(r, facts.clientIp, r.scope === 'PER_HEADER' ? headerValue(facts, r.header) : undefined, ctx.ruleId);
        const entry = state.entry(r.state, key, now, r.blank);
        count(entry.second, now, SECOND_MS);
        if (refused === null) {
          const why = refusal(r, entry, now);
          if (why !== null) refused = { rule: r, entry, key, why };
        }
        (counted ??= []).push([r, entry]);
      }
      if (!matched) return ALLOWED;
      const ip = plainAddress(facts.clientIp);
      if (refused !== null) {
        const { rule, entry, key, why } = refused;
        state.record(now, ip, rule.id);
        state.triggered(rule.state, entry, now, { rate_limit_id: rule.id, name: rule.name, scope: rule.scope, key, limit: why.limit, limit_window: why.window });
        const values = {
          retry_after_seconds: String(Math.max(1, Math.ceil(why.wait / SECOND_MS))),
          limit: String(why.limit),
          remaining: '0',
          reset_timestamp: String(Math.ceil((now + why.wait) / SECOND_MS)),
        };
        return {
          limited: true,
          ruleId: rule.id,
          status: rule.status,
          headers: rule.headers.map(([name, t]) => [name, render(t, values)]),
          body: render(rule.body, values),
        };
      }
      state.record(now, ip, null);
      let shown: { limit: number; remaining: number; resetAt: number } | null = null;
      for (const [r, e] of counted ?? []) {
        if (r.rps !== null) {
          e.tokens = tokensAt(e, now, r.rps, r.burst) - 1;
          if (now > e.refilledAt) e.refilledAt = now;
        }
        count(e.minute, now, MINUTE_MS);
        count(e.hour, now, HOUR_MS);
        if (r.headersOnAllowed) {
          const t = tightest(r, e, now);
          if (t !== null && (shown === null || t.remaining < shown.remaining)) shown = t;
        }
      }
      if (shown === null) return ALLOWED;
      return {
        limited: false,
        headers: [
          ['X-RateLimit-Limit', String(shown.limit)],
          ['X-RateLimit-Remaining', String(shown.remaining)],
          ['X-RateLimit-Reset', String(Math.ceil(shown.resetAt / SECOND_MS))],
        ],
      };
    },

    peek(facts, ctx) {
      const rules = byOrg.get(facts.orgId);
      if (rules === undefined) return 'ALLOWED';
      const now = state.now();
      let matched = false;
      let applied = false;
      for (const r of rules) {
        if (!applies(r, facts.path, ctx.poolId)) continue;
        matched = true;
        if (exempt(r, facts)) continue;
        applied = true;
        const key = keyOf(r, facts.clientIp, r.scope === 'PER_HEADER' ? headerValue(facts, r.header) : undefined, ctx.ruleId);
        const entry = r.state.keys.get(key);
        // An unknown key has every allowance whole, and every limit is at least 1.
        if (entry !== undefined && refusal(r, entry, now) !== null) return 'LIMITED';
      }
      return matched && !applied ? 'EXEMPT' : 'ALLOWED';
    },

    status(query) {
      const now = state.now();
      const out: RateLimitKeyStatus[] = [];
      const orgs = query.orgId === undefined ? [...byOrg.values()] : [byOrg.get(query.orgId) ?? []];
      for (const rules of orgs) {
        for (const r of rules) {
          if (!applies(r, query.path, query.poolId)) continue;
          const key = keyOf(r, query.sourceIp, query.headerValue, query.routingRuleId ?? null);
          const e = r.state.keys.get(key) ?? new KeyEntry();
          const why = refusal(r, e, now);
          let resetAt: number | null = null;
          if (why !== null) resetAt = now + why.wait;
          else {
            let whole = now;
            if (r.rps !== null) whole = Math.max(whole, now + ((r.burst - tokensAt(e, now, r.rps, r.burst)) * SECOND_MS) / r.rps);
            if (r.rpm !== null) whole = Math.max(whole, windowDrainedAt(windowAt(e.minute, now, MINUTE_MS), now, MINUTE_MS));
            if (r.rph !== null) whole = Math.max(whole, windowDrainedAt(windowAt(e.hour, now, HOUR_MS), now, HOUR_MS));
            if (whole > now + EPSILON) resetAt = whole;
          }
          out.push({
            rule_id: r.id,
            name: r.name,
            scope: r.scope,
            key,
            exempt: r.exemptIps?.contains(query.sourceIp) ?? false,
            current_rate_rps: Math.round(estimate(windowAt(e.second, now, SECOND_MS), now, SECOND_MS) * 10) / 10,
            limit_rps: r.rps,
            remaining_burst: r.rps === null ? null : Math.max(0, Math.floor(tokensAt(e, now, r.rps, r.burst) + EPSILON)),
            requests_this_minute: Math.floor(estimate(windowAt(e.minute, now, MINUTE_MS), now, MINUTE_MS) + EPSILON),
            limit_per_minute: r.rpm,
            requests_this_hour: Math.floor(estimate(windowAt(e.hour, now, HOUR_MS), now, HOUR_MS) + EPSILON),
            limit_per_hour: r.rph,
            is_limited: why !== null,
            // Rounded up: a client told to come back at this second is not refused for being early.
            next_reset: resetAt === null ? null : isoSeconds(Math.ceil(resetAt / SECOND_MS) * SECOND_MS),
          });
        }
      }
      return out;
    },
  };
}
