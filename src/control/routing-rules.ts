/**
 * The routing rules API (seed 000 §6): a tenant's layer 7 rules, which send an HTTP request that
 * matches to a pool (or a weighted split of pools), or answer it with a redirect or a fixed
 * response. What a rule means per request is in `policy/routing/`; this service checks what the
 * schema cannot (regexes, templates, host patterns, CIDRs, actions — through the same compiler
 * the data plane uses —, pools and listeners that exist in the organisation, duplicates), stores
 * the rule, and shows it with its summaries and its real hit count. The dry run asks the data
 * plane, which decides it with the code live traffic goes through.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { DEFAULT_SCOPE_ID } from '../model/common.ts';
import type { Listener } from '../model/listener.ts';
import type { Pool } from '../model/pool.ts';
import type { RateLimit } from '../model/rate-limit.ts';
import type { RouteTest, RoutingRule, RoutingRuleCreate, RoutingRulePatch, RoutingRuleReplace, RuleMatch } from '../model/routing-rule.ts';
import { parseNetwork, plainAddress } from '../policy/cidr.ts';
import { checkRule, normalizeHost } from '../policy/routing/rule.ts';
import { summarizeAction, summarizeMatch } from '../policy/routing/summary.ts';
import type { RuleHits } from '../runtime/rule-hits.ts';
import { routingRuleOrder } from '../policy/routing/matcher.ts';
import { requestFacts } from '../dataplane/http/policies.ts';
import type { ReadView } from '../store/store.ts';
import { asVersionConflict, type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { VersionConflict } from '../store/store.ts';
import { type FieldProblem, FulcrumError, notFound, validationError } from './errors.ts';
import { allocateId } from './ids.ts';
import { checkHttpListenerRefs, checkPoolRefs, HTTP_PROTOCOLS } from './tenant-refs.ts';

export interface RoutingRuleServiceDeps {
  /** Requests each rule matched (the data plane counts them): `hit_count_last_hour`. */
  hits: RuleHits;
}

export interface RoutingRuleQuery {
  pool_id?: string;
  listener_id?: string;
  enabled?: boolean;
  page?: number;
  per_page?: number;
}

type Status = 'ACTIVE' | 'DISABLED';

/** The pools a rule can send requests to. */
export function poolsOf(rule: Pick<RoutingRule, 'action'>): string[] {
  const a = rule.action;
  if (a.type === 'FORWARD') return a.pool_id === undefined ? [] : [a.pool_id];
  if (a.type === 'WEIGHTED_ROUTE') return (a.targets ?? []).map((t) => t.pool_id);
  return [];
}

/** A JSON text of a value with its object keys sorted: two matches are the same when these are. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The match as it is compared for DUPLICATE_RULE: header names without case, lists as sets. */
function matchKey(m: RuleMatch): string {
  const sorted = (xs: readonly string[] | undefined) => (xs === undefined ? undefined : [...new Set(xs)].sort());
  return canonical({
    ...m,
    hosts: sorted(m.hosts?.map((h) => normalizeHost(h))),
    paths: sorted(m.paths),
    methods: sorted(m.methods),
    headers: m.headers === undefined ? undefined : Object.fromEntries(Object.entries(m.headers).map(([k, v]) => [k.toLowerCase(), sorted(v)])),
    source_ips: sorted(m.source_ips),
    listener_ids: sorted(m.listener_ids),
  });
}

export class RoutingRuleService {
  readonly #ctx: ControlContext;
  readonly #deps: RoutingRuleServiceDeps;

  constructor(ctx: ControlContext, deps: RoutingRuleServiceDeps) {
    this.#ctx = ctx;
    this.#deps = deps;
  }

  /** Pool names by id, for action summaries (`Weighted: canary(10%) + stable(90%)`). */
  async #poolNames(): Promise<Map<string, string>> {
    return new Map((await this.#ctx.store.list<Pool>('pool')).items.map((r) => [r.id, r.body.name]));
  }

  /** The whole rule with the seed's list fields: status, summaries, hits in the last hour. */
  #view(rule: RoutingRule, poolNames: ReadonlyMap<string, string>) {
    const { rule_id, name, priority, ...rest } = rule;
    return {
      rule_id,
      name,
      priority,
      status: (rule.enabled ? 'ACTIVE' : 'DISABLED') as Status,
      match_summary: summarizeMatch(rule.match),
      action_summary: summarizeAction(rule.action, poolNames),
      hit_count_last_hour: this.#deps.hits.lastHour(rule_id, this.#ctx.clock.now()),
      ...rest,
    };
  }

  /**
   * Every problem of a rule about to be stored: what the compiler refuses, pools and listeners
   * that are not in the organisation, and a duplicate of an enabled rule.
   */
  async #check(rule: RoutingRule, view: ReadView, problems: FieldProblem[]): Promise<void> {
    problems.push(...checkRule(rule));
    const a = rule.action;
    const pools: [string, string][] = [];
    if (a.type === 'FORWARD' && a.pool_id !== undefined) pools.push(['action.pool_id', a.pool_id]);
    if (a.type === 'WEIGHTED_ROUTE') (a.targets ?? []).forEach((t, i) => pools.push([`action.targets[${i}].pool_id`, t.pool_id]));
    await checkPoolRefs(view, pools, rule.org_id, problems);
    await checkHttpListenerRefs(view, rule.match.listener_ids ?? [], rule.org_id, 'routing rules route HTTP requests (HTTP and HTTPS listeners)', problems);
    if (problems.length > 0) throw validationError(problems);
    if (!rule.enabled) return;
    const key = matchKey(rule.match);
    const twin = (await view.list<RoutingRule>('routing_rule')).items
      .map((r) => r.body)
      .find((r) => r.rule_id !== rule.rule_id && r.enabled && r.org_id === rule.org_id && r.priority === rule.priority && matchKey(r.match) === key);
    if (twin !== undefined) {
      throw new FulcrumError(
        'DUPLICATE_RULE',
        `routing rule '${twin.rule_id}' is enabled with the same priority (${rule.priority}) and the same match: only one of them could ever apply`,
        { rule_id: twin.rule_id, priority: rule.priority },
      );
    }
  }

  /** Source CIDRs as stored: canonical, so that equal matches compare equal. */
  static #normalize(match: RuleMatch): RuleMatch {
    if (match.source_ips === undefined) return match;
    return {
      ...match,
      source_ips: match.source_ips.map((c) => {
        const n = parseNetwork(c.trim());
        return typeof n === 'string' ? c : n.canonical;
      }),
    };
  }

  async create(input: RoutingRuleCreate) {
    const stamp = isoNow(this.#ctx.clock);
    const scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
    const rule = await writeAndApply(this.#ctx, async (tx) => {
      const id = await allocateId('rule', input.name, async (c) => (await tx.get('routing_rule', c)) !== undefined, this.#ctx.random, ['rule', 'route']);
      const body: RoutingRule = {
        rule_id: id,
        name: input.name,
        description: input.description ?? null,
        priority: input.priority,
        match: RoutingRuleService.#normalize(input.match),
        action: input.action,
        transforms: input.transforms ?? {},
        enabled: input.enabled ?? true,
        tags: input.tags ?? {},
        ...scope,
        created_at: stamp,
        updated_at: stamp,
        version: 0,
      };
      await this.#check(body, tx, []);
      return (await tx.put('routing_rule', id, null, scope, body, 'absent')).body;
    });
    return this.#view(rule, await this.#poolNames());
  }

  async get(ruleId: string) {
    const found = await this.#ctx.store.get<RoutingRule>('routing_rule', ruleId);
    if (!found) throw notFound.rule(ruleId);
    return this.#view(found.body, await this.#poolNames());
  }

  /**
   * Rules in the order they are tried. `pool_id`: the rules that can send requests to that pool;
   * `listener_id`: the rules that apply on that listener. `total_rules` counts every rule.
   */
  async list(query: RoutingRuleQuery) {
    const p = paging(query);
    const all = (await this.#ctx.store.list<RoutingRule>('routing_rule')).items.map((r) => r.body).sort(routingRuleOrder);
    const pools = await this.#poolNames();
    const matching = all.filter(
      (r) =>
        (query.pool_id === undefined || poolsOf(r).includes(query.pool_id)) &&
        (query.listener_id === undefined || r.match.listener_ids === undefined || r.match.listener_ids.includes(query.listener_id)) &&
        (query.enabled === undefined || r.enabled === query.enabled),
    );
    return {
      rules: matching.slice(p.offset, p.offset + p.limit).map((r) => this.#view(r, pools)),
      total_rules: all.length,
      pagination: p.block(matching.length),
    };
  }

  /** PUT: the rule replaced whole (what is left out takes its default); its id and creation stay. */
  async replace(ruleId: string, input: RoutingRuleReplace, ifMatch: string | undefined) {
    const { version, ...fields } = input;
    return this.#update(ruleId, expectedVersion(ifMatch, version), (current) => ({
      ...current,
      name: fields.name,
      description: fields.description ?? null,
      priority: fields.priority,
      match: RoutingRuleService.#normalize(fields.match),
      action: fields.action,
      transforms: fields.transforms ?? {},
      enabled: fields.enabled ?? true,
      tags: fields.tags ?? {},
    }));
  }

  /** PATCH: the given fields; `match`, `action` and `transforms` are replaced whole. */
  async patch(ruleId: string, input: RoutingRulePatch, ifMatch: string | undefined) {
    const { version, ...fields } = input;
    return this.#update(ruleId, expectedVersion(ifMatch, version), (current) => ({
      ...current,
      ...(fields.name !== undefined ? { name: fields.name } : {}),
      ...(fields.description !== undefined ? { description: fields.description } : {}),
      ...(fields.priority !== undefined ? { priority: fields.priority } : {}),
      ...(fields.match !== undefined ? { match: RoutingRuleService.#normalize(fields.match) } : {}),
      ...(fields.action !== undefined ? { action: fields.action } : {}),
      ...(fields.transforms !== undefined ? { transforms: fields.transforms } : {}),
      ...(fields.enabled !== undefined ? { enabled: fields.enabled } : {}),
      ...(fields.tags !== undefined ? { tags: fields.tags } : {}),
    }));
  }

  async #update(ruleId: string, expect: ReturnType<typeof expectedVersion>, change: (current: RoutingRule) => RoutingRule) {
    const rule = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<RoutingRule>('routing_rule', ruleId);
      if (!found) throw notFound.rule(ruleId);
      // A stale version is said first: the problems of a change made on an old copy may not be the current ones.
      if (expect !== 'any' && expect !== found.version) asVersionConflict(new VersionConflict('routing_rule', ruleId, expect, found.version));
      const next = { ...change(found.body), updated_at: isoNow(this.#ctx.clock) };
      await this.#check(next, tx, []);
      return (await tx.put('routing_rule', ruleId, found.parentId, found.scope, next, expect)).body;
    });
    return this.#view(rule, await this.#poolNames());
  }

  async delete(ruleId: string, ifMatch: string | undefined) {
    const expect = expectedVersion(ifMatch, undefined);
    await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<RoutingRule>('routing_rule', ruleId);
      if (!found) throw notFound.rule(ruleId);
      await tx.delete('routing_rule', ruleId, expect);
    });
    return { rule_id: ruleId, status: 'DELETED' as const, deleted_at: isoNow(this.#ctx.clock) };
  }

  /**
   * The dry run (seed 000 §6): the request as the data plane would see it on `listener_id` (its
   * organisation and default pool), or in `org_id` without a listener (rules narrowed to
   * listeners then never match, and there is no default pool).
   */
  async test(input: RouteTest) {
    const problems: FieldProblem[] = [];
    let orgId = input.org_id ?? DEFAULT_SCOPE_ID;
    if (input.listener_id !== undefined) {
      const found = await this.#ctx.store.get<Listener>('listener', input.listener_id);
      if (!found) problems.push({ field: 'listener_id', reason: `no listener '${input.listener_id}'` });
      else {
        if (!HTTP_PROTOCOLS.includes(found.body.protocol)) problems.push({ field: 'listener_id', reason: `listener '${input.listener_id}' is a ${found.body.protocol} listener: routing rules route HTTP requests` });
        if (input.org_id !== undefined && input.org_id !== found.body.org_id) problems.push({ field: 'org_id', reason: `listener '${input.listener_id}' belongs to organisation '${found.body.org_id}'` });
        orgId = found.body.org_id;
      }
    }
    const sourceIp = input.source_ip ?? '127.0.0.1';
    const network = parseNetwork(sourceIp);
    if (typeof network === 'string' || sourceIp.includes('/')) problems.push({ field: 'source_ip', reason: `'${sourceIp}' is not an IPv4 or IPv6 address` });
    if (problems.length > 0) throw validationError(problems);
    const headers: IncomingHttpHeaders = {};
    const raw: string[] = [];
    for (const [name, value] of Object.entries(input.headers ?? {})) {
      headers[name.toLowerCase()] = value;
      raw.push(name, value);
    }
    headers.host ??= input.host;
    // As the data plane sees a request on that listener (without one: on none, of that organisation).
    const facts = requestFacts(input.method ?? 'GET', input.host, input.path, headers, plainAddress(sourceIp), { listener_id: input.listener_id ?? '', org_id: orgId });
    const result = this.#ctx.dataPlane.routeTest(facts, raw);
    return { request: { method: facts.method, host: input.host, path: input.path, source_ip: facts.clientIp, listener_id: input.listener_id ?? null, org_id: orgId }, ...result };
  }
}

/**
 * The routing rules that send requests to any of `poolIds` and the rate limits that name any of
 * them in `match.pools`: what keeps those pools from being deleted (POOL_IN_USE).
 */
export async function policiesNamingPools(view: ReadView, poolIds: ReadonlySet<string>): Promise<{ routing_rule_ids: string[]; rate_limit_ids: string[] }> {
  const rules = (await view.list<RoutingRule>('routing_rule')).items.map((r) => r.body).sort(routingRuleOrder);
  const limits = (await view.list<RateLimit>('rate_limit')).items;
  return {
    routing_rule_ids: rules.filter((r) => poolsOf(r).some((id) => poolIds.has(id))).map((r) => r.rule_id),
    rate_limit_ids: limits.filter((r) => r.body.match.pools?.some((id) => poolIds.has(id))).map((r) => r.id),
  };
}
