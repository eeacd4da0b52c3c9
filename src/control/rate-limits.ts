/**
 * The rate limit API (seed 000 §7): a tenant's request budgets, what they are per request being
 * `policy/rate-limit.ts`. This service checks what the schema cannot — a header with PER_HEADER
 * and only then, at least one limit, a burst only with a per-second rate, paths that start with
 * '/', pools of the same organisation, known template placeholders, networks that parse, header
 * names that are field names — and stores the rule with every default filled, so what GET shows is
 * what applies. Status and metrics are read from the one `RateLimitState` of the process.
 *
 * Rules are evaluated in creation order (`created_at`, then id: `rateLimitOrder`, the order the
 * data plane compiles them in; an update keeps a rule's place), and listed in that order too.
 */
import { checkPoolRefs } from './tenant-refs.ts';
import { FIELD_VALUE_REASON, hasControlCharacter, isOwnedField } from '../policy/routing/transforms.ts';
import { isIP } from 'node:net';
import { DEFAULT_SCOPE_ID } from '../model/common.ts';
import {
  METRICS_WINDOWS,
  type RateLimit,
  type RateLimitCreate,
  RATE_LIMIT_DEFAULTS,
  type RateLimitLimits,
  type RateLimitListQuery,
  type RateLimitMatch,
  type RateLimitMetricsQuery,
  type RateLimitPatch,
  type RateLimitScope,
  type RateLimitStatusQuery,
} from '../model/rate-limit.ts';
import { parseNetwork } from '../policy/cidr.ts';
import { compileRateLimits, rateLimitOrder, type RateLimitState, unknownPlaceholders } from '../policy/rate-limit.ts';
import type { ReadView } from '../store/store.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, type FieldProblem, notFound, validationError } from './errors.ts';
import { allocateId } from './ids.ts';

export interface RateLimitServiceDeps {
  /** The process's budgets and metrics; the data plane counts into it, status and metrics read it. */
  state: RateLimitState;
}

export type RateLimitStatus = 'ACTIVE' | 'DISABLED';

/** What the API shows: the seed's fields first, then the whole stored rule. */
export type RateLimitView = { rate_limit_id: string; name: string; status: RateLimitStatus; created_at: string } & Omit<RateLimit, 'rate_limit_id' | 'name' | 'created_at'>;

/** An HTTP field name: a token (RFC 9110 §5.1, §5.6.2). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Words that only repeat the type in an id (`Per-IP API Rate Limit` → `rl-per-ip-api`). */
const REDUNDANT_WORDS = ['rate', 'limit', 'limits', 'rl'];

/** The fields that are validated together: any of them can make another one wrong. */
interface RuleFields {
  scope: RateLimitScope;
  header: string | null;
  match: RateLimitMatch;
  limits: RateLimitLimits;
  action_on_limit: RateLimitCreate['action_on_limit'];
  exemptions: RateLimitCreate['exemptions'];
}

type Checked = Pick<RateLimit, 'scope' | 'header' | 'match' | 'limits' | 'action_on_limit' | 'exemptions'>;

/** Whether a rule can apply to requests routed to `poolId` (no `match.pools`: to every pool). */
function canApplyTo(rule: RateLimit, poolId: string): boolean {
  return rule.match.pools === undefined || rule.match.pools.includes(poolId);
}

function problemsOfFieldNames(names: string[], prefix: string, problems: FieldProblem[]): void {
  const seen = new Map<string, string>();
  for (const name of names) {
    if (!FIELD_NAME.test(name)) {
      problems.push({ field: `${prefix}.${name}`, reason: 'not a valid HTTP header name (RFC 9110 §5.1: letters, digits and !#$%&\'*+-.^_`|~)' });
      continue;
    }
    const lower = name.toLowerCase();
    const first = seen.get(lower);
    if (first !== undefined) problems.push({ field: `${prefix}.${name}`, reason: `the same header as ${prefix}.${first}: header names are case-insensitive` });
    else seen.set(lower, name);
  }
}

export class RateLimitService {
  readonly #ctx: ControlContext;
  readonly #deps: RateLimitServiceDeps;

  constructor(ctx: ControlContext, deps: { state: RateLimitState }) {
    this.#ctx = ctx;
    this.#deps = deps;
  }

  /** Every stored rate limit, in evaluation order. */
  async #all(): Promise<RateLimit[]> {
    return (await this.#ctx.store.list<RateLimit>('rate_limit')).items.map((r) => r.body).sort(rateLimitOrder);
  }

  static #view(rule: RateLimit): RateLimitView {
    const { rate_limit_id, name, created_at, ...rest } = rule;
    return { rate_limit_id, name, status: rule.enabled ? 'ACTIVE' : 'DISABLED', created_at, ...rest };
  }

  /**
   * The rule's fields as stored (defaults filled, networks canonical), every problem with them
   * pushed to `problems`. Pools are read through `view` (the write transaction), so a check and
   * its write agree.
   */
  async #check(input: RuleFields, orgId: string, view: ReadView, problems: FieldProblem[]): Promise<Checked> {
    // Scope and header.
    if (input.scope === 'PER_HEADER') {
      if (input.header === null) problems.push({ field: 'header', reason: 'required with scope PER_HEADER: the header whose value is the key' });
      else if (!FIELD_NAME.test(input.header)) problems.push({ field: 'header', reason: `'${input.header}' is not a valid HTTP header name (RFC 9110 §5.1)` });
    } else if (input.header !== null) {
      problems.push({ field: 'header', reason: `only with scope PER_HEADER; scope ${input.scope} does not key on a header` });
    }

    // Limits: at least one; the burst belongs to the token bucket of requests_per_second.
    const l = input.limits;
    if (l.requests_per_second === undefined && l.requests_per_minute === undefined && l.requests_per_hour === undefined) {
      problems.push({ field: 'limits', reason: 'give at least one of requests_per_second, requests_per_minute, requests_per_hour' });
    }
    if (l.burst_size !== undefined) {
      if (l.requests_per_second === undefined) {
        problems.push({ field: 'limits.burst_size', reason: 'only with requests_per_second: the burst is the capacity of its token bucket' });
      } else if (l.burst_size < 1) {
        problems.push({ field: 'limits.burst_size', reason: 'must be at least 1: a bucket that holds no token refuses every request' });
      }
    }
    const limits: RateLimitLimits = {};
    if (l.requests_per_second !== undefined) {
      limits.requests_per_second = l.requests_per_second;
      limits.burst_size = l.burst_size ?? l.requests_per_second;
    }
    if (l.requests_per_minute !== undefined) limits.requests_per_minute = l.requests_per_minute;
    if (l.requests_per_hour !== undefined) limits.requests_per_hour = l.requests_per_hour;

    // Match: paths are request paths; pools are this organisation's.
    for (const [i, p] of (input.match.paths ?? []).entries()) {
      if (!p.startsWith('/')) problems.push({ field: `match.paths[${i}]`, reason: `'${p}' does not start with '/': it would never match a request path` });
    }
    await checkPoolRefs(view, (input.match.pools ?? []).map((id, i) => [`match.pools[${i}]`, id] as const), orgId, problems);
    const match: RateLimitMatch = {};
    if (input.match.pools !== undefined) match.pools = [...input.match.pools];
    if (input.match.paths !== undefined) match.paths = [...input.match.paths];

    // The refusal: defaults filled, templates with known placeholders only, sendable headers.
    const a = input.action_on_limit ?? {};
    const headers = a.headers ?? { ...RATE_LIMIT_DEFAULTS.headers };
    const body = a.body ?? RATE_LIMIT_DEFAULTS.body;
    problemsOfFieldNames(Object.keys(headers), 'action_on_limit.headers', problems);
    for (const [name, value] of Object.entries(headers)) {
      const unknown = unknownPlaceholders(value);
      if (unknown.length > 0) problems.push({ field: `action_on_limit.headers.${name}`, reason: RateLimitService.#placeholderReason(unknown) });
      if (hasControlCharacter(value)) problems.push({ field: `action_on_limit.headers.${name}`, reason: FIELD_VALUE_REASON });
      const lower = name.toLowerCase();
      if (isOwnedField(name) || lower === 'x-request-id') {
        problems.push({ field: `action_on_limit.headers.${name}`, reason: `'${name}' is Fulcrum's to set on the refusal (message framing, the connection, the request id)` });
      }
    }
    const unknownInBody = unknownPlaceholders(body);
    if (unknownInBody.length > 0) problems.push({ field: 'action_on_limit.body', reason: RateLimitService.#placeholderReason(unknownInBody) });

    // Exemptions: networks canonical and each given once; header names that are field names.
    const e = input.exemptions ?? {};
    const seen = new Map<string, number>();
    const sourceIps = (e.source_ips ?? []).map((text, i) => {
      const n = parseNetwork(text.trim());
      if (typeof n === 'string') {
        problems.push({ field: `exemptions.source_ips[${i}]`, reason: n });
        return text;
      }
      const first = seen.get(n.canonical);
      if (first !== undefined) problems.push({ field: `exemptions.source_ips[${i}]`, reason: `${n.canonical} is already given by exemptions.source_ips[${first}]` });
      else seen.set(n.canonical, i);
      return n.canonical;
    });
    const exemptHeaders = e.headers ?? {};
    problemsOfFieldNames(Object.keys(exemptHeaders), 'exemptions.headers', problems);

    return {
      scope: input.scope,
      header: input.header,
      match,
      limits,
      action_on_limit: { status_code: a.status_code ?? RATE_LIMIT_DEFAULTS.status_code, headers, body },
      exemptions: {
        source_ips: sourceIps,
        headers: Object.fromEntries(Object.entries(exemptHeaders).map(([k, v]) => [k, [...v]])),
        api_keys: [...(e.api_keys ?? [])],
      },
    };
  }

  static #placeholderReason(unknown: string[]): string {
    return `unknown placeholder${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `\${${n}}`).join(', ')}: the placeholders are \${retry_after_seconds}, \${limit}, \${remaining}, \${reset_timestamp}`;
  }

  async create(input: RateLimitCreate): Promise<RateLimitView> {
    const stamp = isoNow(this.#ctx.clock);
    const scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
    const rule = await writeAndApply(this.#ctx, async (tx) => {
      const problems: FieldProblem[] = [];
      const checked = await this.#check(
        {
          scope: input.scope,
          header: input.header ?? null,
          match: input.match ?? {},
          limits: input.limits,
          action_on_limit: input.action_on_limit,
          exemptions: input.exemptions,
        },
        scope.org_id,
        tx,
        problems,
      );
      if (problems.length > 0) throw validationError(problems);
      const id = await allocateId('rl', input.name, async (c) => (await tx.get('rate_limit', c)) !== undefined, this.#ctx.random, REDUNDANT_WORDS);
      const body: RateLimit = {
        rate_limit_id: id,
        name: input.name,
        description: input.description ?? null,
        ...checked,
        headers_on_allowed: input.headers_on_allowed ?? false,
        enabled: input.enabled ?? true,
        tags: input.tags ?? {},
        ...scope,
        created_at: stamp,
        updated_at: stamp,
        version: 0,
      };
      return (await tx.put('rate_limit', id, null, scope, body, 'absent')).body;
    });
    return RateLimitService.#view(rule);
  }

  async get(rateLimitId: string): Promise<RateLimitView> {
    const found = await this.#ctx.store.get<RateLimit>('rate_limit', rateLimitId);
    if (!found) throw notFound.rateLimit(rateLimitId);
    return RateLimitService.#view(found.body);
  }

  /** Every rate limit in evaluation order (creation order); `pool_id` keeps those that can apply to that pool. */
  async list(query: RateLimitListQuery) {
    const p = paging(query);
    const all = await this.#all();
    const summary = { total: all.length, active: 0, disabled: 0 };
    for (const r of all) {
      if (r.enabled) summary.active++;
      else summary.disabled++;
    }
    const matching = query.pool_id === undefined ? all : all.filter((r) => canApplyTo(r, query.pool_id!));
    return {
      rate_limits: matching.slice(p.offset, p.offset + p.limit).map((r) => RateLimitService.#view(r)),
      pagination: p.block(matching.length),
      summary,
    };
  }

  /**
   * Changes the given fields; `match`, `limits`, `action_on_limit` and `exemptions` are replaced
   * whole (their defaults filled again). Leaving PER_HEADER drops the stored header unless the
   * same request gives one (which is refused). A change of scope or header starts every budget
   * afresh: the engine keys a rule's state by its id, creation time, scope and header.
   */
  async patch(rateLimitId: string, input: RateLimitPatch, ifMatch: string | undefined): Promise<RateLimitView> {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const rule = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<RateLimit>('rate_limit', rateLimitId);
      if (!found) throw notFound.rateLimit(rateLimitId);
      const cur = found.body;
      const scope = fields.scope ?? cur.scope;
      let header = fields.header !== undefined ? fields.header : cur.header;
      if (fields.header === undefined && scope !== 'PER_HEADER') header = null;
      const problems: FieldProblem[] = [];
      const checked = await this.#check(
        {
          scope,
          header,
          match: fields.match ?? cur.match,
          limits: fields.limits ?? cur.limits,
          action_on_limit: fields.action_on_limit ?? cur.action_on_limit,
          exemptions: fields.exemptions ?? cur.exemptions,
        },
        found.scope.org_id,
        tx,
        problems,
      );
      if (problems.length > 0) throw validationError(problems);
      const next: RateLimit = { ...cur, ...checked };
      if (fields.name !== undefined) next.name = fields.name;
      if (fields.description !== undefined) next.description = fields.description;
      if (fields.headers_on_allowed !== undefined) next.headers_on_allowed = fields.headers_on_allowed;
      if (fields.enabled !== undefined) next.enabled = fields.enabled;
      if (fields.tags !== undefined) next.tags = fields.tags;
      next.updated_at = isoNow(this.#ctx.clock);
      return (await tx.put('rate_limit', rateLimitId, found.parentId, found.scope, next, expect)).body;
    });
    return RateLimitService.#view(rule);
  }

  /** Removes the rule (If-Match honoured) and its budgets: a rule made later under the same id starts afresh. */
  async delete(rateLimitId: string, ifMatch: string | undefined) {
    const expect = expectedVersion(ifMatch, undefined);
    await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<RateLimit>('rate_limit', rateLimitId);
      if (!found) throw notFound.rateLimit(rateLimitId);
      await tx.delete('rate_limit', rateLimitId, expect);
    });
    this.#deps.state.forget(rateLimitId);
    return { rate_limit_id: rateLimitId, status: 'DELETED' as const, deleted_at: isoNow(this.#ctx.clock) };
  }

  /**
   * One client's standing under every enabled rule that can apply to it, from the live budgets;
   * counts nothing. The stored rules are compiled against the process's state, as the data plane
   * compiles them, so a rule's keys are the ones its traffic spends.
   */
  async status(query: RateLimitStatusQuery) {
    const sourceIp = query.source_ip.trim();
    if (isIP(sourceIp) === 0) {
      const reason = `'${query.source_ip}' is not an IPv4 or IPv6 address`;
      throw new FulcrumError('INVALID_PARAMETER', `Invalid querystring: source_ip: ${reason}`, {
        location: 'querystring',
        fields: [{ field: 'source_ip', reason }],
      });
    }
    if (query.pool_id !== undefined && !(await this.#ctx.store.get('pool', query.pool_id))) throw notFound.pool(query.pool_id);
    const limiter = compileRateLimits(await this.#all(), this.#deps.state);
    const limits = limiter.status({
      sourceIp,
      poolId: query.pool_id,
      path: query.path,
      headerValue: query.header_value,
      routingRuleId: query.routing_rule_id ?? null,
      orgId: query.org_id,
    });
    return { source_ip: query.source_ip, limits };
  }

  /** Totals over the window (`5m`, `1h` — the default — or `24h`) of this process. */
  metrics(query: RateLimitMetricsQuery) {
    const window = query.window ?? '1h';
    return { window, ...this.#deps.state.metrics(METRICS_WINDOWS[window], query.top ?? 10) };
  }
}
