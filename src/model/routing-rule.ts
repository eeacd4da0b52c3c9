import { Type, type Static } from 'typebox';
import { Name, Patch, ScopeFields, Strict, StringEnum, StringMap, VersionField } from './common.ts';

/** HTTP field name (RFC 9110 §5.1). */
const HeaderName = Type.String({ minLength: 1, maxLength: 128, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" });
const HostPattern = Type.String({ minLength: 1, maxLength: 253, description: 'exact host name, or *.example.com' });
const PathGlob = Type.String({ minLength: 1, maxLength: 2048, pattern: '^/', description: 'a path; * matches any characters (/v2/*)' });

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'] as const;

/**
 * When a rule applies: every condition given must hold (seed 000 §6, FiberLB's L7 conditions).
 * `paths` are globs; `path_prefix`, `path_exact` and `path_regex` are FiberLB's other path forms.
 */
export const RuleMatch = Strict({
  hosts: Type.Optional(Type.Array(HostPattern, { minItems: 1, maxItems: 100 })),
  paths: Type.Optional(Type.Array(PathGlob, { minItems: 1, maxItems: 100 })),
  path_prefix: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, pattern: '^/' })),
  path_exact: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, pattern: '^/' })),
  path_regex: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  methods: Type.Optional(Type.Array(StringEnum(HTTP_METHODS), { minItems: 1, uniqueItems: true })),
  headers: Type.Optional(Type.Record(HeaderName, Type.Array(Type.String({ maxLength: 1024 }), { minItems: 1, maxItems: 100 }))),
  query: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 256 }), Type.String({ maxLength: 1024 }))),
  source_ips: Type.Optional(Type.Array(Type.String({ minLength: 2, maxLength: 49 }), { minItems: 1, maxItems: 1000 })),
  listener_ids: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 1000, uniqueItems: true })),
});
export type RuleMatch = Static<typeof RuleMatch>;

export const ACTION_TYPES = ['FORWARD', 'WEIGHTED_ROUTE', 'REDIRECT', 'FIXED_RESPONSE'] as const;

export const RuleAction = Strict({
  type: StringEnum(ACTION_TYPES),
  /** FORWARD */
  pool_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  /** WEIGHTED_ROUTE */
  targets: Type.Optional(Type.Array(Strict({ pool_id: Type.String({ minLength: 1, maxLength: 128 }), weight: Type.Integer({ minimum: 0, maximum: 1_000_000 }) }), { minItems: 1, maxItems: 100 })),
  /** REDIRECT */
  url: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  status_code: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
  keep_path_and_query: Type.Optional(Type.Boolean()),
  /** FIXED_RESPONSE */
  content_type: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  body: Type.Optional(Type.String({ maxLength: 65_536 })),
});
export type RuleAction = Static<typeof RuleAction>;

export const RuleTransforms = Strict({
  add_request_headers: Type.Optional(Type.Record(HeaderName, Type.String({ maxLength: 4096 }))),
  remove_request_headers: Type.Optional(Type.Array(HeaderName, { maxItems: 100 })),
  add_response_headers: Type.Optional(Type.Record(HeaderName, Type.String({ maxLength: 4096 }))),
  remove_response_headers: Type.Optional(Type.Array(HeaderName, { maxItems: 100 })),
  url_rewrite: Type.Optional(Type.String({ minLength: 4, maxLength: 2048, description: '"<regex> -> <replacement>", $1… for groups' })),
});
export type RuleTransforms = Static<typeof RuleTransforms>;

const RuleProps = {
  name: Name,
  priority: Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Lower wins' }),
  match: RuleMatch,
  action: RuleAction,
  transforms: RuleTransforms,
  enabled: Type.Boolean(),
};

/** What a whole rule is given as, in POST and PUT. */
const RuleBodyProps = {
  name: RuleProps.name,
  priority: RuleProps.priority,
  match: RuleProps.match,
  action: RuleProps.action,
  transforms: Type.Optional(RuleProps.transforms),
  enabled: Type.Optional(RuleProps.enabled),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
  tags: Type.Optional(StringMap),
};

export const RoutingRuleCreate = Strict({ ...RuleBodyProps, ...ScopeFields });
export type RoutingRuleCreate = Static<typeof RoutingRuleCreate>;

/** PUT: the whole rule again (version optional, If-Match honoured). */
export const RoutingRuleReplace = Strict({ ...RuleBodyProps, version: Type.Optional(VersionField) });
export type RoutingRuleReplace = Static<typeof RoutingRuleReplace>;

export const RoutingRulePatch = Patch(
  {
    name: RuleProps.name,
    priority: RuleProps.priority,
    match: RuleProps.match,
    action: RuleProps.action,
    transforms: RuleProps.transforms,
    enabled: RuleProps.enabled,
    description: Type.Union([Type.String({ maxLength: 1024 }), Type.Null()]),
    tags: StringMap,
  },
  { version: VersionField },
);
export type RoutingRulePatch = Static<typeof RoutingRulePatch>;

/** POST /routing-rules/test: a request to route without sending it (seed 000 §6 dry run). */
export const RouteTest = Strict({
  method: Type.Optional(StringEnum(HTTP_METHODS)),
  host: Type.String({ minLength: 1, maxLength: 253 }),
  path: Type.String({ minLength: 1, maxLength: 8192, pattern: '^/' }),
  headers: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 128 }), Type.String({ maxLength: 8192 }))),
  source_ip: Type.Optional(Type.String({ minLength: 2, maxLength: 45 })),
  listener_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  org_id: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
});
export type RouteTest = Static<typeof RouteTest>;

export interface RoutingRule {
  rule_id: string;
  name: string;
  description: string | null;
  priority: number;
  match: RuleMatch;
  action: RuleAction;
  transforms: RuleTransforms;
  enabled: boolean;
  tags: Record<string, string>;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
