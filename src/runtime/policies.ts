/**
 * The runtime state of the layer 7 policies, one object per process: what ACLs, routing rules and
 * rate limits remember between requests (counts, budgets, hits). It outlives configuration
 * revisions — each revision's compiled policies write into it — and the control plane reads it for
 * the API's counters (`matched_entries`, `hit_count_last_hour`, `/rate-limits/status`).
 */
import { AclCounters } from '../policy/acl.ts';
import type { GeoIp } from '../policy/geoip.ts';
import { type RateLimitTriggered, RateLimitState } from '../policy/rate-limit.ts';
import { RuleHits } from './rule-hits.ts';

export interface PolicyState {
  readonly aclCounters: AclCounters;
  /** The GeoIP database of `geoip.database_path`; null when none is configured. */
  readonly geo: GeoIp | null;
  readonly rateLimits: RateLimitState;
  readonly ruleHits: RuleHits;
}

export interface PolicyStateOptions {
  geo: GeoIp | null;
  now: () => number;
  onRateLimited?: (event: RateLimitTriggered) => void;
}

export function createPolicyState(options: PolicyStateOptions): PolicyState {
  return {
    aclCounters: new AclCounters(),
    geo: options.geo,
    rateLimits: new RateLimitState({ now: options.now, onTriggered: options.onRateLimited }),
    ruleHits: new RuleHits(),
  };
}
