/**
 * The layer 7 policy stage of an HTTP request (DESIGN.md's data plane stages): ACL, then routing
 * rule, then rate limit, then the rule's action. One function decides for live traffic and for the
 * dry run (`POST /routing-rules/test`), so the two cannot disagree; the dry run only reads (it
 * counts no ACL match, rule hit or rate limit budget, and draws no pool from a weighted split).
 *
 * Order and why:
 * 1. ACL: a denied client learns nothing about routes and spends no rate limit budget.
 * 2. Routing rule: the lowest priority rule whose conditions hold; none → the listener's default pool.
 *    A WEIGHTED_ROUTE draws its pool here, so rate limits matching by pool see the drawn one.
 * 3. Rate limit: keyed by the routed pool and rule (PER_RULE).
 * 4. Action: REDIRECT and FIXED_RESPONSE are answered by Fulcrum; FORWARD and WEIGHTED_ROUTE go to
 *    the balancer with the rule's transforms.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Listener, RedirectSettings } from '../../model/listener.ts';
import type { RequestFacts } from '../../policy/request.ts';
import type { Route } from '../../policy/routing/matcher.ts';
import { NO_CONTENT, normalizeHost, redirectLocation } from '../../policy/routing/rule.ts';
import { TransformContext, type TransformPreview } from '../../policy/routing/transforms.ts';
import type { L7Policies } from '../../snapshot/policies.ts';
import type { PoolRuntime, RuntimeSnapshot } from '../../snapshot/snapshot.ts';

/** The Host without its port, as sent: `Example.com:8080` → `Example.com`, `[::1]:80` → `[::1]`. */
export function hostPart(authority: string): string {
  // An IPv6 literal given without brackets (the dry run's `host`): every colon is the address's.
  if (authority[0] !== '[' && authority.indexOf(':') !== authority.lastIndexOf(':')) return authority;
  const bracket = authority.startsWith('[') ? authority.indexOf(']') : -1;
  const colon = bracket >= 0 ? authority.indexOf(':', bracket) : authority.lastIndexOf(':');
  return colon >= 0 ? authority.slice(0, colon) : authority;
}

/** The Host as policies match it: no port, lower case, no brackets: `[::1]:80` → `::1`. */
export function hostName(authority: string | undefined): string {
  return authority === undefined || authority === '' ? '' : normalizeHost(hostPart(authority));
}

/** Where `redirect_to_https` sends a request for `host` (without port) and `target`; the port left out when it is 443. */
export function httpsLocation(host: string, r: RedirectSettings, target: string): string {
  return `https://${host}${r.port === 443 ? '' : `:${r.port}`}${target}`;
}

/** What the policies see of a request whose target (origin-form) is `target`. */
export function requestFacts(
  method: string,
  authority: string | undefined,
  target: string,
  headers: IncomingHttpHeaders,
  clientIp: string,
  listener: Pick<Listener, 'listener_id' | 'org_id'>,
): RequestFacts {
  const q = target.indexOf('?');
  return {
    method,
    host: hostName(authority),
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? '' : target.slice(q + 1),
    headers,
    clientIp,
    listenerId: listener.listener_id,
    orgId: listener.org_id,
  };
}

/** A response Fulcrum gives itself in place of the backend's. */
export interface PolicyAnswer {
  kind: 'answer';
  /** Which stage answered. */
  by: 'acl' | 'rate_limit' | 'redirect' | 'fixed_response';
  status: number;
  headers: [string, string][];
  body: string;
  /** The pool the request was routed to, for metrics ('none' when there is none). */
  poolId: string;
  route: Route | null;
}

/** Forward the request to `pool` (null: the listener has no default pool and no rule gave one). */
interface PolicyForward {
  kind: 'forward';
  pool: PoolRuntime | null;
  /** The pool id the request was routed to, even when it no longer exists. */
  poolId: string | null;
  route: Route | null;
  /** Headers a rate limit adds to the response (`headers_on_allowed`), if any. */
  rateHeaders: [string, string][] | undefined;
}

type PolicyDecision = PolicyAnswer | PolicyForward;

/**
 * Decides a live request: counts the ACL match, the rule hit and the rate limit budget. `pools` is
 * the snapshot's (the request's revision), `defaultPool` the listener's.
 */
/**
 * The pool id a request goes to: its rule's (a WEIGHTED_ROUTE drawn with `random`), the default
 * pool's when no rule matched, null for a rule that answers itself.
 */
function routedPoolId(route: Route | null, defaultPool: PoolRuntime | null, random: () => number): string | null {
  if (route === null) return defaultPool?.pool.pool_id ?? null;
  const a = route.action;
  if (a.type === 'FORWARD') return a.poolId;
  if (a.type === 'WEIGHTED_ROUTE') return a.choice.pick(random);
  return null;
}

/** That pool in this revision: the listener's own runtime without a rule, null when it no longer exists. */
function poolOf(poolId: string | null, route: Route | null, defaultPool: PoolRuntime | null, pools: ReadonlyMap<string, PoolRuntime>): PoolRuntime | null {
  if (poolId === null) return null;
  return route === null ? defaultPool : (pools.get(poolId) ?? null);
}

function decide(p: L7Policies, facts: RequestFacts, defaultPool: PoolRuntime | null, now: number, random: () => number): PolicyDecision {
  if (p.acl !== null) {
    const v = p.acl.evaluate(facts, now);
    if (v.action === 'DENY') {
      return { kind: 'answer', by: 'acl', status: v.status, headers: [['content-type', v.contentType]], body: v.body, poolId: 'none', route: null };
    }
  }
  const route = p.routes.route(facts);
  if (route !== null) p.state.ruleHits.hit(route.rule.rule_id, now);
  const poolId = routedPoolId(route, defaultPool, random);
  const limit = p.rateLimits.check(facts, { poolId, ruleId: route?.rule.rule_id ?? null });
  if (limit.limited) {
    return { kind: 'answer', by: 'rate_limit', status: limit.status, headers: limit.headers, body: limit.body, poolId: poolId ?? 'none', route };
  }
  if (route !== null) {
    const a = route.action;
    // A rate limit's headers_on_allowed fields go on these answers too: the request was counted.
    const extra = limit.headers ?? [];
    if (a.type === 'REDIRECT') {
      const location = redirectLocation(a, facts.path, facts.query);
      return { kind: 'answer', by: 'redirect', status: a.statusCode, headers: [['location', location], ...extra], body: '', poolId: 'none', route };
    }
    if (a.type === 'FIXED_RESPONSE') {
      return { kind: 'answer', by: 'fixed_response', status: a.statusCode, headers: [['content-type', a.contentType], ...extra], body: a.body, poolId: 'none', route };
    }
  }
  return { kind: 'forward', pool: poolOf(poolId, route, defaultPool, p.pools), poolId, route, rateHeaders: limit.headers };
}

/** What the policy stage makes of a request, for the HTTP proxy and the WebSocket tunnel alike. */
export interface Routed {
  /** Fulcrum answers it itself (an ACL, a rate limit, a rule's redirect or fixed response); null: it is forwarded. */
  answer: PolicyAnswer | null;
  /** Where it is forwarded; null (with `missing` saying why) when there is nowhere. */
  pool: PoolRuntime | null;
  /** The routed pool's id for metrics ('none' when there is none). */
  poolId: string;
  missing: string;
  /** The request target to send: the rule's `url_rewrite` applied. */
  target: string;
  /** The request id: the one it came with, or the one its rule sets as X-Request-ID. */
  id: string;
  /** The rule's header edits; null when there is no rule or it edits nothing. */
  transforms: BoundTransforms | null;
  /** Headers a rate limit adds to the response (`headers_on_allowed`), if any. */
  rateHeaders: [string, string][] | undefined;
}

/** Runs the policy stage on a live request whose target (origin-form) is `target` and id `id`. */
export function routeRequest(p: L7Policies, facts: RequestFacts, target: string, defaultPool: PoolRuntime | null, id: string, now: number, random: () => number): Routed {
  const d = decide(p, facts, defaultPool, now, random);
  const transforms = d.route === null || d.route.transforms.empty ? null : new BoundTransforms(d.route, facts, id);
  // A rule that sets X-Request-ID gives the request its id: Fulcrum's own answers and the backend then agree.
  const routedId = transforms?.requestId() ?? id;
  if (d.kind === 'answer') return { answer: d, pool: null, poolId: d.poolId, missing: '', target, id: routedId, transforms, rateHeaders: undefined };
  return {
    answer: null,
    pool: d.pool,
    poolId: d.poolId ?? 'none',
    missing: d.poolId === null ? 'the listener has no default pool' : `pool ${d.poolId} of routing rule ${d.route?.rule.rule_id ?? '?'} does not exist`,
    target: d.route?.transforms.rewrite(facts.path, facts.query) ?? target,
    id: routedId,
    transforms,
    rateHeaders: d.rateHeaders,
  };
}

/** A request's transforms, bound to it (templates read its facts and request id). */
export class BoundTransforms {
  readonly route: Route;
  readonly context: TransformContext;

  constructor(route: Route, facts: RequestFacts, requestId: string) {
    this.route = route;
    this.context = new TransformContext(facts, requestId, randomUUID);
  }

  /** The X-Request-ID this rule sets, rendered (the same value every time for this request); undefined when it sets none. */
  requestId(): string | undefined {
    const edit = this.route.transforms.request;
    if (!edit.added.some((n) => n.length === 12 && n.toLowerCase() === 'x-request-id')) return undefined;
    const out = edit.apply(['x-request-id', this.context.requestId], this.context);
    for (let i = 0; i < out.length; i += 2) if (out[i]!.toLowerCase() === 'x-request-id') return out[i + 1];
    return undefined;
  }

  requestHeaders(headers: string[]): string[] {
    return this.route.transforms.applyRequest(headers, this.context);
  }

  responseHeaders(headers: string[]): string[] {
    return this.route.transforms.applyResponse(headers, this.context);
  }
}

/**
 * The fields of a policy answer, flat: its own, the request id, the rule's response transforms,
 * `Cache-Control: no-store` on a refusal (set last: a rule cannot make a denial cacheable), the
 * length (none for statuses without content), then the listener's own (HSTS).
 */
export function answerFields(d: PolicyAnswer, id: string, transforms: BoundTransforms | null, listenerFields: readonly string[]): string[] {
  let fields: string[] = [];
  for (const [name, value] of d.headers) fields.push(name, value);
  fields.push('x-request-id', id);
  if (transforms !== null) fields = transforms.responseHeaders(fields);
  if (d.by === 'acl' || d.by === 'rate_limit') fields = setFields(fields, [['cache-control', 'no-store']]);
  if (!NO_CONTENT.has(d.status)) fields.push('content-length', String(Buffer.byteLength(d.body)));
  for (let i = 0; i < listenerFields.length; i++) fields.push(listenerFields[i]!);
  return fields;
}

/** `fields` with each of `pairs` set: fields of the same name (without case) dropped, the pair appended. */
export function setFields(fields: string[], pairs: readonly (readonly [string, string])[]): string[] {
  const names = new Set(pairs.map(([n]) => n.toLowerCase()));
  const out: string[] = [];
  for (let i = 0; i < fields.length; i += 2) if (!names.has(fields[i]!.toLowerCase())) out.push(fields[i]!, fields[i + 1]!);
  for (const [name, value] of pairs) out.push(name, value);
  return out;
}

// ── Dry run ──────────────────────────────────────────────────────────────────────────────

export interface DryRunResult {
  matched_rule: { rule_id: string; name: string; priority: number } | null;
  /** The action that would be taken: the matched rule's, or FORWARD to the default pool. */
  action: string;
  selected_pool: string | null;
  selected_backend: string | null;
  /** Why there is no pool or backend, when there is none. */
  reason: string | null;
  /** A WEIGHTED_ROUTE draws per request: each pool's share (the selected pool is one draw). */
  weighted_shares: { pool_id: string; share_percent: number }[] | null;
  transforms_applied: TransformPreview;
  /** REDIRECT: where the client would be sent; FIXED_RESPONSE: the status it would get. */
  response: { status_code: number; location?: string; content_type?: string } | null;
  rate_limit_status: 'ALLOWED' | 'LIMITED' | 'EXEMPT';
  acl_status: 'ALLOWED' | 'DENIED';
  acl_id: string | null;
}

/** How a dry run picks a backend from a pool without counting it as traffic. */
export type PreviewPick = (pool: PoolRuntime, facts: RequestFacts) => { index: number; reason: string | null };

/**
 * What `decide` would do with this request, read-only: every stage is evaluated (an ACL denial is
 * reported together with what routing would have done), nothing is counted, and the backend comes
 * from `pick` (a balancer built afresh from the pool's targets, so no traffic is counted either).
 */
export function dryRun(p: L7Policies | null, facts: RequestFacts, rawHeaders: readonly string[], pools: RuntimeSnapshot['pools'], defaultPool: PoolRuntime | null, now: number, pick: PreviewPick): DryRunResult {
  const acl = p?.acl?.peek(facts, now) ?? { action: 'ALLOW' as const, aclId: null };
  const route = p?.routes.route(facts) ?? null;
  // A WEIGHTED_ROUTE draws once, as a live request would; `weighted_shares` says what the draw is from.
  const poolId = routedPoolId(route, defaultPool, Math.random);
  let action = 'FORWARD (default pool)';
  let shares: DryRunResult['weighted_shares'] = null;
  let response: DryRunResult['response'] = null;
  let reason: string | null = null;
  if (route !== null) {
    const a = route.action;
    action = a.type;
    if (a.type === 'WEIGHTED_ROUTE') {
      shares = a.choice.items.map((id, i) => ({ pool_id: id, share_percent: Math.round(a.choice.share(i) * 1000) / 10 }));
    } else if (a.type !== 'FORWARD') {
      if (a.type === 'REDIRECT') response = { status_code: a.statusCode, location: redirectLocation(a, facts.path, facts.query) };
      else response = { status_code: a.statusCode, content_type: a.contentType };
      reason = `the rule answers with ${a.type === 'REDIRECT' ? 'a redirect' : 'a fixed response'}: nothing is forwarded`;
    }
  } else if (defaultPool === null) reason = facts.listenerId === '' ? 'no rule matched and no listener_id was given, so there is no default pool' : 'no rule matched and the listener has no default pool';
  const rate = p?.rateLimits.peek(facts, { poolId, ruleId: route?.rule.rule_id ?? null }) ?? 'ALLOWED';
  let backend: string | null = null;
  const pool = poolOf(poolId, route, defaultPool, pools);
  if (poolId !== null && pool === null) reason = `pool ${poolId} does not exist`;
  if (pool !== null) {
    const picked = pick(pool, facts);
    if (picked.index >= 0) backend = pool.targets[picked.index]!.id;
    else reason = picked.reason;
  }
  const empty: TransformPreview = { headers_added: [], headers_removed: [], url_rewritten: null };
  return {
    matched_rule: route === null ? null : { rule_id: route.rule.rule_id, name: route.rule.name, priority: route.rule.priority },
    action,
    selected_pool: poolId,
    selected_backend: backend,
    reason,
    weighted_shares: shares,
    transforms_applied: route === null || route.transforms.empty ? empty : route.transforms.preview(rawHeaders, facts.path, facts.query),
    response,
    rate_limit_status: rate,
    acl_status: acl.action === 'DENY' ? 'DENIED' : 'ALLOWED',
    acl_id: acl.aclId,
  };
}

/** A listener with `redirect_to_https` answers every request with the redirect, before any policy. */
export function redirectedDryRun(facts: RequestFacts, r: RedirectSettings): DryRunResult {
  const host = facts.host.includes(':') ? `[${facts.host}]` : facts.host;
  const target = facts.query === '' ? facts.path : `${facts.path}?${facts.query}`;
  const location = httpsLocation(host, r, target);
  return {
    matched_rule: null,
    action: 'REDIRECT_TO_HTTPS',
    selected_pool: null,
    selected_backend: null,
    reason: 'the listener redirects every request to HTTPS before ACLs, rules and rate limits are asked',
    weighted_shares: null,
    transforms_applied: { headers_added: [], headers_removed: [], url_rewritten: null },
    response: { status_code: r.status_code, location },
    rate_limit_status: 'ALLOWED',
    acl_status: 'ALLOWED',
    acl_id: null,
  };
}
