/**
 * Layer 7 ACLs (seed 000 §8): a tenant's priority-ordered ALLOW / DENY rules, asked once per HTTP
 * request before rate limiting and routing. Compiled once per configuration revision for one
 * organisation; a request only reads the compiled engine.
 *
 * The rule: the enabled, unexpired ACLs are tried in order of `priority` (lower first; equal
 * priorities in order of creation, then id), and the first whose every given condition holds
 * decides. DENY answers with its response; ALLOW lets the request through and stops evaluation,
 * so a lower-priority DENY never sees it (an allow-list exception above a broad DENY). No match lets
 * the request through (`aclId` null).
 *
 * Conditions: `source_ips` (the client address in one of the networks), `source_countries` (the
 * GeoIP country of the client address is one of them; an address without a known country, or no
 * database at all, matches no country list), `user_agents` (the User-Agent matches one of the
 * globs, case-insensitively; a request without one is matched as the empty string, so the glob
 * `""` picks out requests without a User-Agent and `*` matches every request), `listener_ids`
 * (the request came in on one of these listeners; absent: every listener of the tenant).
 *
 * Cost of `evaluate`: a scan of the enabled ACLs in order, each rejected at its first failing
 * condition, checked cheapest first (expiry and listener: a comparison and a Set lookup). The
 * client address is first tested once against the union of every ACL's networks, so a client in
 * none of them (the usual case) fails every `source_ips` condition without another lookup; the
 * User-Agent is lower-cased and the country looked up at most once per request, and only when an
 * ACL reached that condition. Globs are compiled at compile time (no regular expressions, linear
 * matching: see glob.ts). A match costs one counter increment; nothing is allocated but the
 * lower-cased User-Agent, and a log entry when the ACL logs. Meant for the tens to hundreds of
 * ACLs a tenant has, not as an index over thousands.
 */
import { type Acl, type AclAction, fillAclResponse } from '../model/acl.ts';
import { creationOrder } from '../model/common.ts';
import { CidrSet, type Network, parseNetwork } from './cidr.ts';
import type { GeoIp } from './geoip.ts';
import { compileGlob, type Glob } from './glob.ts';
import { headerValue, type RequestFacts } from './request.ts';

export type AclVerdict =
  | { action: 'ALLOW'; aclId: string | null }
  | { action: 'DENY'; aclId: string; status: number; body: string; contentType: string };

export interface AclEngine {
  /** First matching ACL by priority decides (ALLOW stops evaluation); no match: ALLOW with aclId null. Counts matched_entries. */
  evaluate(facts: RequestFacts, now: number): AclVerdict;
  /** The same without counting or logging (the dry run). */
  peek(facts: RequestFacts, now: number): AclVerdict;
}

export interface AclDeps {
  counters: AclCounters;
  geo: GeoIp | null;
  /** Called once per match of an ACL with `logging` on (never by `peek`). */
  log?: (entry: Record<string, unknown>) => void;
}

/** One counter an engine increments in place, so a match costs no Map lookup. */
interface Cell {
  value: number;
}

/**
 * How many requests each ACL matched (`matched_entries`), keyed by ACL id. Runtime state: it
 * lives outside compiled engines, so it survives every configuration revision; an ACL's count
 * starts again only when the ACL is deleted (`forget`) and an ACL with that id is created anew.
 * Counts are this process's own.
 */
export class AclCounters {
  readonly #cells = new Map<string, Cell>();

  /** The cell an engine increments for `aclId`, made on first use. */
  cell(aclId: string): Cell {
    let c = this.#cells.get(aclId);
    if (!c) this.#cells.set(aclId, (c = { value: 0 }));
    return c;
  }

  /** Requests `aclId` matched so far. */
  get(aclId: string): number {
    return this.#cells.get(aclId)?.value ?? 0;
  }

  /** Drops a deleted ACL's count. An engine compiled before still holds the old cell; its increments go nowhere. */
  forget(aclId: string): void {
    this.#cells.delete(aclId);
  }
}

/**
 * The order ACLs are evaluated and listed in: priority, then creation time, then id (so that equal
 * priorities still give one order, the same in the API and in traffic).
 */
export function aclOrder(a: Pick<Acl, 'priority' | 'created_at' | 'acl_id'>, b: Pick<Acl, 'priority' | 'created_at' | 'acl_id'>): number {
  return a.priority - b.priority || creationOrder(a, a.acl_id, b, b.acl_id);
}

/** Whether an ACL has stopped applying at `now` (ms since the epoch). */
export function aclExpired(acl: Pick<Acl, 'expires_at'>, now: number): boolean {
  return acl.expires_at !== null && Date.parse(acl.expires_at) <= now;
}

interface CompiledAcl {
  readonly id: string;
  readonly action: AclAction;
  /** ms since the epoch; Infinity for never. */
  readonly expiresAt: number;
  readonly listeners: ReadonlySet<string> | null;
  readonly networks: CidrSet | null;
  readonly countries: ReadonlySet<string> | null;
  /** Lower-cased globs, matched against the User-Agent lower-cased once per request (not once per glob). */
  readonly agents: readonly Glob[] | null;
  readonly logging: boolean;
  readonly verdict: AclVerdict;
  readonly cell: Cell;
}

const NO_MATCH: AclVerdict = Object.freeze({ action: 'ALLOW', aclId: null });

function networksOf(acl: Acl): Network[] {
  return (acl.match.source_ips ?? []).map((text) => {
    const n = parseNetwork(text);
    // Stored ACLs were checked on write; a bad one here is a corrupt store, and skipping its
    // network could let a DENY's clients through, so refuse the whole compile.
    if (typeof n === 'string') throw new Error(`ACL ${acl.acl_id}: ${n}`);
    return n;
  });
}

function compileOne(acl: Acl, counters: AclCounters, networks: Network[]): CompiledAcl {
  const m = acl.match;
  let verdict: AclVerdict;
  if (acl.action === 'ALLOW') verdict = { action: 'ALLOW', aclId: acl.acl_id };
  else {
    // Stored DENYs carry their response with defaults filled; filling again covers older bodies.
    const r = fillAclResponse(acl.response ?? {});
    verdict = { action: 'DENY', aclId: acl.acl_id, status: r.status_code, body: r.body, contentType: r.content_type };
  }
  return {
    id: acl.acl_id,
    action: acl.action,
    expiresAt: acl.expires_at === null ? Infinity : Date.parse(acl.expires_at),
    listeners: m.listener_ids ? new Set(m.listener_ids) : null,
    networks: networks.length > 0 ? new CidrSet(networks) : null,
    countries: m.source_countries ? new Set(m.source_countries.map((c) => c.toUpperCase())) : null,
    agents: m.user_agents ? m.user_agents.map((g) => compileGlob(g.toLowerCase())) : null,
    logging: acl.logging,
    verdict: Object.freeze(verdict),
    cell: counters.cell(acl.acl_id),
  };
}

/** Whether one of `globs` matches `text` (a loop, not `some`: no closure per request). */
function anyGlob(globs: readonly Glob[], text: string): boolean {
  for (const glob of globs) if (glob.test(text)) return true;
  return false;
}

class CompiledAclEngine implements AclEngine {
  readonly #acls: readonly CompiledAcl[];
  /** Every ACL's networks together: a client outside it fails every `source_ips` condition at once. */
  readonly #union: CidrSet;
  readonly #geo: GeoIp | null;
  readonly #log: ((entry: Record<string, unknown>) => void) | undefined;

  constructor(acls: readonly CompiledAcl[], union: CidrSet, deps: AclDeps) {
    this.#acls = acls;
    this.#union = union;
    this.#geo = deps.geo;
    this.#log = deps.log;
  }

  evaluate(facts: RequestFacts, now: number): AclVerdict {
    return this.#decide(facts, now, true);
  }

  peek(facts: RequestFacts, now: number): AclVerdict {
    return this.#decide(facts, now, false);
  }

  #countryOf(ip: string): string | null {
    return this.#geo ? this.#geo.country(ip) : null;
  }

  #decide(facts: RequestFacts, now: number, live: boolean): AclVerdict {
    // Facts computed at most once per request, and only once an ACL reaches their condition.
    let inUnion: boolean | undefined;
    let agent: string | undefined;
    let country: string | null | undefined;
    for (const acl of this.#acls) {
      if (acl.expiresAt <= now) continue;
      if (acl.listeners !== null && !acl.listeners.has(facts.listenerId)) continue;
      if (acl.networks !== null) {
        inUnion ??= this.#union.contains(facts.clientIp);
        if (!inUnion || !acl.networks.contains(facts.clientIp)) continue;
      }
      if (acl.agents !== null) {
        agent ??= (headerValue(facts, 'user-agent') ?? '').toLowerCase();
        if (!anyGlob(acl.agents, agent)) continue;
      }
      if (acl.countries !== null) {
        if (country === undefined) country = this.#countryOf(facts.clientIp);
        if (country === null || !acl.countries.has(country)) continue;
      }
      if (live) {
        acl.cell.value++;
        if (acl.logging && this.#log) {
          if (country === undefined) country = this.#countryOf(facts.clientIp);
          this.#log({
            event: 'acl.matched',
            acl_id: acl.id,
            action: acl.action,
            client_ip: facts.clientIp,
            country,
            user_agent: headerValue(facts, 'user-agent') ?? null,
            host: facts.host,
            path: facts.path,
            method: facts.method,
            listener_id: facts.listenerId,
            org_id: facts.orgId,
          });
        }
      }
      return acl.verdict;
    }
    return NO_MATCH;
  }
}

/**
 * Compiles one organisation's ACLs (as stored) into an engine. Disabled ACLs are left out; expired
 * ones are kept and skipped per request by `now`, so an engine stays right as time passes without
 * a recompile. Throws on an ACL the API could not have stored (a network that does not parse).
 */
export function compileAcls(acls: Acl[], deps: AclDeps): AclEngine {
  const all: Network[] = [];
  const compiled: CompiledAcl[] = [];
  for (const acl of [...acls].filter((a) => a.enabled).sort(aclOrder)) {
    const networks = networksOf(acl);
    all.push(...networks);
    compiled.push(compileOne(acl, deps.counters, networks));
  }
  return new CompiledAclEngine(compiled, new CidrSet(all), deps);
}
