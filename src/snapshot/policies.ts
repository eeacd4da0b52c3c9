/**
 * The layer 7 policies of one configuration revision (ACLs, routing rules, rate limits), compiled
 * for the HTTP data plane. Each kind is compiled again only when its own records changed: a
 * backend or pool change makes a new revision, and 10,000 routing rules need not be re-indexed for
 * it. What they remember at run time (counts, budgets, hits) lives in `PolicyState`, so a
 * recompile loses nothing.
 */
import type { Acl } from '../model/acl.ts';
import type { RateLimit } from '../model/rate-limit.ts';
import type { RoutingRule } from '../model/routing-rule.ts';
import { type AclEngine, compileAcls } from '../policy/acl.ts';
import { compileRateLimits, type RateLimiter } from '../policy/rate-limit.ts';
import { compileRoutes, type RouteMatcher } from '../policy/routing/matcher.ts';
import type { PolicyState } from '../runtime/policies.ts';
import type { PoolRuntime } from './snapshot.ts';

/** What an HTTP listener of one organisation asks per request. */
export interface L7Policies {
  /** Every organisation's rules; the matcher keeps to the request's (`facts.orgId`). */
  readonly routes: RouteMatcher;
  /** The organisation's ACLs; null when it has none. */
  readonly acl: AclEngine | null;
  /** Every organisation's rate limits; the limiter keeps to the request's. */
  readonly rateLimits: RateLimiter;
  readonly state: PolicyState;
  /** The revision's pools, where rules send requests. */
  readonly pools: ReadonlyMap<string, PoolRuntime>;
}

export interface PolicyRecords {
  routingRules: RoutingRule[];
  rateLimits: RateLimit[];
  acls: Acl[];
}

/** Which records a compiled object was made from: ids and versions in order. */
function fingerprint<T extends { version: number; created_at: string; updated_at: string }>(items: readonly T[], id: (item: T) => string): string {
  // created_at too: a record deleted and made again under the same id starts again at version 1.
  return items.map((i) => `${id(i)}@${i.version}@${i.created_at}@${i.updated_at}`).join(',');
}

/** The last compiled value and what it was made from. */
class Memo<T> {
  #key: string | undefined;
  #value: T | undefined;

  get(key: string, make: () => T): T {
    if (this.#key !== key || this.#value === undefined) {
      this.#value = make();
      this.#key = key;
    }
    return this.#value;
  }
}

export interface PolicyCompilerOptions {
  state: PolicyState;
  /** A routing rule stored before a check that now refuses it: skipped, and said here. */
  onInvalidRule?: (ruleId: string, reason: string) => void;
  /** An ACL with `logging` matched a request. */
  logAcl?: (entry: Record<string, unknown>) => void;
}

export class PolicyCompiler {
  readonly #options: PolicyCompilerOptions;
  readonly #routes = new Memo<RouteMatcher>();
  readonly #rateLimits = new Memo<RateLimiter>();
  readonly #acls = new Memo<ReadonlyMap<string, AclEngine>>();

  constructor(options: PolicyCompilerOptions) {
    this.#options = options;
  }

  get state(): PolicyState {
    return this.#options.state;
  }

  /** The policies of `orgId` by organisation; null for an organisation with none at all (its requests skip this stage). */
  compile(records: PolicyRecords, pools: ReadonlyMap<string, PoolRuntime>): (orgId: string) => L7Policies | null {
    const { state } = this.#options;
    const routes = this.#routes.get(fingerprint(records.routingRules, (r: RoutingRule) => r.rule_id), () =>
      compileRoutes(records.routingRules, {
        onInvalid: (rule, problems) => this.#options.onInvalidRule?.(rule.rule_id, problems.map((p) => `${p.field}: ${p.reason}`).join('; ')),
      }),
    );
    state.ruleHits.retain(new Set(records.routingRules.map((r) => r.rule_id)));
    const rateLimits = this.#rateLimits.get(fingerprint(records.rateLimits, (r: RateLimit) => r.rate_limit_id), () => compileRateLimits(records.rateLimits, state.rateLimits));
    const acls = this.#acls.get(fingerprint(records.acls, (a: Acl) => a.acl_id), () => {
      const byOrg = new Map<string, Acl[]>();
      for (const a of records.acls) {
        let list = byOrg.get(a.org_id);
        if (!list) byOrg.set(a.org_id, (list = []));
        list.push(a);
      }
      const engines = new Map<string, AclEngine>();
      for (const [org, list] of byOrg) engines.set(org, compileAcls(list, { counters: state.aclCounters, geo: state.geo, log: this.#options.logAcl }));
      return engines;
    });

    const orgs = new Set<string>();
    for (const r of records.routingRules) if (r.enabled) orgs.add(r.org_id);
    for (const r of records.rateLimits) if (r.enabled) orgs.add(r.org_id);
    for (const a of records.acls) if (a.enabled) orgs.add(a.org_id);
    const byOrg = new Map<string, L7Policies>();
    for (const org of orgs) byOrg.set(org, { routes, acl: acls.get(org) ?? null, rateLimits, state, pools });
    return (orgId) => byOrg.get(orgId) ?? null;
  }
}
