/**
 * The ACL API (seed 000 §8): a tenant's layer 7 ALLOW / DENY rules, checked on every HTTP request
 * (what they mean per request is in `policy/acl.ts`). This service checks what the schema cannot —
 * networks that parse, countries only with a GeoIP database, listeners that exist in the same
 * organisation and speak HTTP, a response only on a DENY, an expiry in the future — stores the ACL
 * with its defaults filled, and shows it with its status and its real `matched_entries` count.
 */
import { type Acl, ACL_DEFAULTS, type AclCreate, type AclMatch, type AclPatch, type AclQuery, type AclStatus, fillAclResponse } from '../model/acl.ts';
import { DEFAULT_SCOPE_ID } from '../model/common.ts';
import { type AclCounters, aclExpired, aclOrder } from '../policy/acl.ts';
import { parseNetwork } from '../policy/cidr.ts';
import type { GeoIp } from '../policy/geoip.ts';
import type { ReadView } from '../store/store.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { type FieldProblem, notFound, validationError } from './errors.ts';
import { allocateId } from './ids.ts';
import { checkHttpListenerRefs } from './tenant-refs.ts';

export interface AclServiceDeps {
  /** The runtime counts the data plane increments; `matched_entries` reads them. */
  counters: AclCounters;
  /** The configured GeoIP database; null refuses `source_countries`. */
  geo: GeoIp | null;
}

/** What the API shows: the seed's fields first, then the whole ACL. */
export type AclView = { acl_id: string; name: string; status: AclStatus; matched_entries: number; created_at: string } & Omit<Acl, 'acl_id' | 'name' | 'created_at'>;

/** EXPIRED first: enabling an expired ACL would not make it apply, so that is what to say. */
export function aclStatus(acl: Pick<Acl, 'enabled' | 'expires_at'>, now: number): AclStatus {
  if (aclExpired(acl, now)) return 'EXPIRED';
  return acl.enabled ? 'ACTIVE' : 'DISABLED';
}

/** Whether an ACL applies on `listenerId` (no `listener_ids`: on every listener of its tenant). */
function appliesTo(acl: Acl, listenerId: string): boolean {
  return acl.match.listener_ids === undefined || acl.match.listener_ids.includes(listenerId);
}

export class AclService {
  readonly #ctx: ControlContext;
  readonly #deps: AclServiceDeps;

  constructor(ctx: ControlContext, deps: AclServiceDeps) {
    this.#ctx = ctx;
    this.#deps = deps;
  }

  #view(acl: Acl): AclView {
    const { acl_id, name, created_at, ...rest } = acl;
    return { acl_id, name, status: aclStatus(acl, this.#ctx.clock.now()), matched_entries: this.#deps.counters.get(acl_id), created_at, ...rest };
  }

  /**
   * The match as stored (networks canonical, countries upper-case), or every problem with it. The
   * listeners are read through `view` (the write transaction) so that a check and its write agree.
   */
  async #checkMatch(match: AclMatch, orgId: string, view: ReadView, problems: FieldProblem[]): Promise<AclMatch> {
    const out: AclMatch = {};
    if (match.source_ips === undefined && match.source_countries === undefined && match.user_agents === undefined) {
      problems.push({
        field: 'match',
        reason: 'give at least one of source_ips, source_countries, user_agents (listener_ids only narrows where an ACL applies)',
      });
    }
    if (match.source_ips !== undefined) {
      const seen = new Map<string, number>();
      out.source_ips = match.source_ips.map((text, i) => {
        const n = parseNetwork(text.trim());
        if (typeof n === 'string') {
          problems.push({ field: `match.source_ips[${i}]`, reason: n });
          return text;
        }
        const first = seen.get(n.canonical);
        if (first !== undefined) problems.push({ field: `match.source_ips[${i}]`, reason: `${n.canonical} is already given by match.source_ips[${first}]` });
        else seen.set(n.canonical, i);
        return n.canonical;
      });
    }
    if (match.source_countries !== undefined) {
      if (this.#deps.geo === null) {
        problems.push({
          field: 'match.source_countries',
          reason:
            'no GeoIP database is configured, so countries cannot be known: set geoip.database_path (FULCRUM_GEOIP_DATABASE, --geoip-database) to a MaxMind country database and restart',
        });
      }
      const seen = new Map<string, number>();
      out.source_countries = match.source_countries.map((code, i) => {
        const upper = code.toUpperCase();
        const first = seen.get(upper);
        if (first !== undefined) problems.push({ field: `match.source_countries[${i}]`, reason: `${upper} is already given by match.source_countries[${first}]` });
        else seen.set(upper, i);
        return upper;
      });
    }
    if (match.user_agents !== undefined) out.user_agents = [...match.user_agents];
    if (match.listener_ids !== undefined) {
      out.listener_ids = [...match.listener_ids];
      await checkHttpListenerRefs(view, match.listener_ids, orgId, 'ACLs are checked on HTTP requests (its access list works on connections)', problems);
    }
    return out;
  }

  /** An `expires_at` given in a request must lie ahead: a rule that never applies is a mistake. */
  #checkExpiry(expiresAt: string | null | undefined, problems: FieldProblem[]): void {
    if (expiresAt === undefined || expiresAt === null) return;
    const at = Date.parse(expiresAt);
    if (Number.isNaN(at)) problems.push({ field: 'expires_at', reason: `'${expiresAt}' is not an ISO 8601 date-time` });
    else if (at <= this.#ctx.clock.now()) problems.push({ field: 'expires_at', reason: `${expiresAt} is in the past: the ACL would never apply` });
  }

  /** Normalises an accepted expiry to the API's form (UTC, whole seconds kept as given otherwise). */
  static #expiry(expiresAt: string | null | undefined): string | null {
    if (expiresAt === undefined || expiresAt === null) return null;
    return new Date(Date.parse(expiresAt)).toISOString().replace(/\.000Z$/, 'Z');
  }

  async create(input: AclCreate): Promise<AclView> {
    const stamp = isoNow(this.#ctx.clock);
    const scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
    const acl = await writeAndApply(this.#ctx, async (tx) => {
      const problems: FieldProblem[] = [];
      const match = await this.#checkMatch(input.match, scope.org_id, tx, problems);
      if (input.action === 'ALLOW' && input.response !== undefined) {
        problems.push({ field: 'response', reason: 'only a DENY answers with a response; an ALLOW lets the request through' });
      }
      this.#checkExpiry(input.expires_at, problems);
      if (problems.length > 0) throw validationError(problems);
      const id = await allocateId('acl', input.name, async (c) => (await tx.get('acl', c)) !== undefined, this.#ctx.random, ['acl', 'acls']);
      const body: Acl = {
        acl_id: id,
        name: input.name,
        description: input.description ?? null,
        priority: input.priority,
        action: input.action,
        match,
        response: input.action === 'DENY' ? fillAclResponse(input.response ?? {}) : null,
        logging: input.logging ?? ACL_DEFAULTS.logging,
        expires_at: AclService.#expiry(input.expires_at),
        enabled: input.enabled ?? ACL_DEFAULTS.enabled,
        tags: input.tags ?? {},
        ...scope,
        created_at: stamp,
        updated_at: stamp,
        version: 0,
      };
      return (await tx.put('acl', id, null, scope, body, 'absent')).body;
    });
    return this.#view(acl);
  }

  async get(aclId: string): Promise<AclView> {
    const found = await this.#ctx.store.get<Acl>('acl', aclId);
    if (!found) throw notFound.acl(aclId);
    return this.#view(found.body);
  }

  /** Ordered as they are evaluated (priority, then creation); filters by listener and status. */
  async list(query: AclQuery) {
    const p = paging(query);
    const now = this.#ctx.clock.now();
    const all = (await this.#ctx.store.list<Acl>('acl')).items.map((r) => r.body).sort(aclOrder);
    const summary = { total: all.length, active: 0, disabled: 0, expired: 0 };
    for (const a of all) {
      const s = aclStatus(a, now);
      if (s === 'ACTIVE') summary.active++;
      else if (s === 'DISABLED') summary.disabled++;
      else summary.expired++;
    }
    const matching = all.filter((a) => (query.listener_id === undefined || appliesTo(a, query.listener_id)) && (query.status === undefined || aclStatus(a, now) === query.status));
    return { acls: matching.slice(p.offset, p.offset + p.limit).map((a) => this.#view(a)), pagination: p.block(matching.length), summary };
  }

  /**
   * Changes the given fields; `match` and `response` are replaced whole. `version` or If-Match
   * guard against a lost update. Turning a DENY into an ALLOW drops its response; turning an
   * ALLOW into a DENY gives it the default response unless one is given.
   */
  async patch(aclId: string, input: AclPatch, ifMatch: string | undefined): Promise<AclView> {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const acl = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Acl>('acl', aclId);
      if (!found) throw notFound.acl(aclId);
      const next: Acl = { ...found.body };
      const problems: FieldProblem[] = [];
      if (fields.name !== undefined) next.name = fields.name;
      if (fields.description !== undefined) next.description = fields.description;
      if (fields.priority !== undefined) next.priority = fields.priority;
      if (fields.action !== undefined) next.action = fields.action;
      if (fields.match !== undefined) next.match = await this.#checkMatch(fields.match, found.scope.org_id, tx, problems);
      if (fields.logging !== undefined) next.logging = fields.logging;
      if (fields.enabled !== undefined) next.enabled = fields.enabled;
      if (fields.tags !== undefined) next.tags = fields.tags;
      if (fields.expires_at !== undefined) {
        this.#checkExpiry(fields.expires_at, problems);
        next.expires_at = AclService.#expiry(fields.expires_at);
      }
      if (next.action === 'ALLOW') {
        if (fields.response !== undefined && fields.response !== null) {
          problems.push({ field: 'response', reason: 'only a DENY answers with a response; an ALLOW lets the request through' });
        }
        next.response = null;
      } else if (fields.response !== undefined) {
        next.response = fillAclResponse(fields.response ?? {});
      } else {
        next.response ??= fillAclResponse({});
      }
      if (problems.length > 0) throw validationError(problems);
      next.updated_at = isoNow(this.#ctx.clock);
      return (await tx.put('acl', aclId, found.parentId, found.scope, next, expect)).body;
    });
    return this.#view(acl);
  }

  /** Removes the ACL (If-Match honoured) and its count: an ACL made later under the same id starts at 0. */
  async delete(aclId: string, ifMatch: string | undefined) {
    const expect = expectedVersion(ifMatch, undefined);
    await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Acl>('acl', aclId);
      if (!found) throw notFound.acl(aclId);
      await tx.delete('acl', aclId, expect);
    });
    this.#deps.counters.forget(aclId);
    return { acl_id: aclId, status: 'DELETED' as const, deleted_at: isoNow(this.#ctx.clock) };
  }
}

