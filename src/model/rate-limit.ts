import { Type, type Static } from 'typebox';
import { Name, Paging, Patch, ScopeFields, Strict, StringEnum, StringMap, VersionField } from './common.ts';

/**
 * Rate limits (seed 000 §7). The schema checks shapes and ranges; the rules that need more than
 * one field or a parser (burst_size only with requests_per_second, paths that do not start with '/', CIDRs, header
 * names, template placeholders, `header` with PER_HEADER) are checked by the service, which names
 * the field in each refusal.
 */

export const RATE_LIMIT_SCOPES = ['PER_SOURCE_IP', 'GLOBAL', 'PER_HEADER', 'PER_RULE'] as const;
export type RateLimitScope = (typeof RATE_LIMIT_SCOPES)[number];

/** The placeholders `action_on_limit` headers and body may use. */
export const RATE_LIMIT_PLACEHOLDERS = ['retry_after_seconds', 'limit', 'remaining', 'reset_timestamp'] as const;
export type RateLimitPlaceholder = (typeof RATE_LIMIT_PLACEHOLDERS)[number];

const Id = Type.String({ minLength: 1, maxLength: 128 });
const FieldName = Type.String({ minLength: 1, maxLength: 128, description: 'an HTTP field name (RFC 9110 §5.1)' });

export const RateLimitMatch = Strict({
  pools: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 1000, uniqueItems: true, description: 'the routed pool must be one of these' })),
  paths: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 2048 }), { minItems: 1, maxItems: 100, description: "globs starting with '/'; * matches any characters" })),
});
export type RateLimitMatch = Static<typeof RateLimitMatch>;

export const RateLimitLimits = Strict({
  requests_per_second: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'token bucket refill rate' })),
  burst_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000, description: 'token bucket capacity; default requests_per_second' })),
  requests_per_minute: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000 })),
  requests_per_hour: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000_000_000 })),
});
export type RateLimitLimits = Static<typeof RateLimitLimits>;

export const ActionOnLimit = Strict({
  status_code: Type.Optional(Type.Integer({ minimum: 400, maximum: 599, default: 429 })),
  headers: Type.Optional(Type.Record(FieldName, Type.String({ maxLength: 4096 }))),
  body: Type.Optional(Type.String({ maxLength: 65_536 })),
});
export type ActionOnLimit = Static<typeof ActionOnLimit>;

export const RateLimitExemptions = Strict({
  source_ips: Type.Optional(Type.Array(Type.String({ minLength: 2, maxLength: 49 }), { maxItems: 10_000 })),
  headers: Type.Optional(Type.Record(FieldName, Type.Array(Type.String({ maxLength: 1024 }), { minItems: 1, maxItems: 100 }))),
  api_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { maxItems: 1000, description: 'globs matched against the API key (Authorization: Bearer, or X-API-Key)' })),
});
export type RateLimitExemptions = Static<typeof RateLimitExemptions>;

const Props = {
  name: Name,
  description: Type.String({ maxLength: 1024 }),
  scope: StringEnum(RATE_LIMIT_SCOPES),
  header: FieldName,
  match: RateLimitMatch,
  limits: RateLimitLimits,
  action_on_limit: ActionOnLimit,
  exemptions: RateLimitExemptions,
  headers_on_allowed: Type.Boolean({ description: 'add X-RateLimit-Limit/-Remaining/-Reset to the responses this rule lets through' }),
  enabled: Type.Boolean(),
  tags: StringMap,
};

/** POST /rate-limits (seed 000 §7). */
export const RateLimitCreate = Strict({
  name: Props.name,
  description: Type.Optional(Props.description),
  scope: Props.scope,
  header: Type.Optional(Props.header),
  match: Type.Optional(Props.match),
  limits: Props.limits,
  action_on_limit: Type.Optional(Props.action_on_limit),
  exemptions: Type.Optional(Props.exemptions),
  headers_on_allowed: Type.Optional(Props.headers_on_allowed),
  enabled: Type.Optional(Props.enabled),
  tags: Type.Optional(Props.tags),
  ...ScopeFields,
});
export type RateLimitCreate = Static<typeof RateLimitCreate>;

/** PATCH: each object given (`match`, `limits`, `action_on_limit`, `exemptions`) replaces the stored one whole. */
export const RateLimitPatch = Patch(
  {
    name: Props.name,
    description: Type.Union([Props.description, Type.Null()]),
    scope: Props.scope,
    header: Type.Union([Props.header, Type.Null()]),
    match: Props.match,
    limits: Props.limits,
    action_on_limit: Props.action_on_limit,
    exemptions: Props.exemptions,
    headers_on_allowed: Props.headers_on_allowed,
    enabled: Props.enabled,
    tags: Props.tags,
  },
  { version: VersionField },
);
export type RateLimitPatch = Static<typeof RateLimitPatch>;

export const RateLimitListQuery = Strict({
  ...Paging.properties,
  pool_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'only the rate limits that can apply to this pool' })),
});
export type RateLimitListQuery = Static<typeof RateLimitListQuery>;

/** GET /rate-limits/status: one client's standing under every rule that applies to it. */
export const RateLimitStatusQuery = Strict({
  source_ip: Type.String({ minLength: 2, maxLength: 45 }),
  pool_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  path: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'narrows to rules whose paths match it' })),
  header_value: Type.Optional(Type.String({ maxLength: 8192, description: 'PER_HEADER: the value of the rule’s header; absent = a request without it' })),
  routing_rule_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'PER_RULE: the routing rule; absent = requests no routing rule matched' })),
  org_id: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
});
export type RateLimitStatusQuery = Static<typeof RateLimitStatusQuery>;

export const METRICS_WINDOWS = { '5m': 5, '1h': 60, '24h': 1440 } as const;
export type MetricsWindow = keyof typeof METRICS_WINDOWS;

export const RateLimitMetricsQuery = Strict({
  window: Type.Optional(StringEnum(Object.keys(METRICS_WINDOWS) as MetricsWindow[])),
  top: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'how many top_limited_ips' })),
});
export type RateLimitMetricsQuery = Static<typeof RateLimitMetricsQuery>;

export const RATE_LIMIT_DEFAULTS = {
  status_code: 429,
  /** Used when `action_on_limit.headers` is not given: RFC 6585 §4 suggests Retry-After on a 429. */
  headers: { 'Retry-After': '${retry_after_seconds}' } as Record<string, string>,
  body: '{"error": "rate_limit_exceeded", "retry_after": ${retry_after_seconds}}',
} as const;

/** A rate limit as stored: every default filled in, so what is shown is what applies. */
export interface RateLimit {
  rate_limit_id: string;
  name: string;
  description: string | null;
  scope: RateLimitScope;
  /** PER_HEADER only: the field keyed on, as given (matched without regard to case). */
  header: string | null;
  match: RateLimitMatch;
  limits: RateLimitLimits;
  action_on_limit: { status_code: number; headers: Record<string, string>; body: string };
  exemptions: { source_ips: string[]; headers: Record<string, string[]>; api_keys: string[] };
  headers_on_allowed: boolean;
  enabled: boolean;
  tags: Record<string, string>;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
