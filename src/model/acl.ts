import { STATUS_CODES } from 'node:http';
import { Type, type Static } from 'typebox';
import { Description, Name, Paging, Patch, ScopeFields, Strict, StringEnum, StringMap, VersionField } from './common.ts';

/** Seed 000 §8: a request an ACL matches is let through (ALLOW) or answered by Fulcrum (DENY). */
export const ACL_ACTIONS = ['ALLOW', 'DENY'] as const;
export type AclAction = (typeof ACL_ACTIONS)[number];

/** ACTIVE: applies; DISABLED: `enabled` is false; EXPIRED: `expires_at` has passed (whatever `enabled` says). */
export const ACL_STATUSES = ['ACTIVE', 'DISABLED', 'EXPIRED'] as const;
export type AclStatus = (typeof ACL_STATUSES)[number];

/** Networks, countries and agents one ACL may list: bounds what a compile and a request scan. */
export const ACL_LIMITS = { source_ips: 1000, source_countries: 300, user_agents: 100, listener_ids: 1000 } as const;

/**
 * Defaults of a DENY's response and of the flags. A body not given is the status's reason phrase
 * (`Forbidden`); a content type not given is `application/json` when the body is a JSON object or
 * array (as in the seed's example), else `text/plain`.
 */
export const ACL_DEFAULTS = {
  status_code: 403,
  logging: false,
  enabled: true,
} as const;

/**
 * When an ACL applies: every condition given must hold, and at least one of `source_ips`,
 * `source_countries` and `user_agents` must be given (`listener_ids` alone would match everything).
 */
export const AclMatch = Strict({
  source_ips: Type.Optional(
    Type.Array(Type.String({ minLength: 2, maxLength: 49, description: 'an IPv4 or IPv6 address or CIDR' }), { minItems: 1, maxItems: ACL_LIMITS.source_ips }),
  ),
  source_countries: Type.Optional(
    Type.Array(Type.String({ minLength: 2, maxLength: 2, pattern: '^[A-Za-z]{2}$', description: 'ISO 3166-1 alpha-2 code' }), {
      minItems: 1,
      maxItems: ACL_LIMITS.source_countries,
    }),
  ),
  user_agents: Type.Optional(
    Type.Array(Type.String({ maxLength: 512, description: 'a glob: * matches any characters; case-insensitive; "" matches a request without a User-Agent' }), {
      minItems: 1,
      maxItems: ACL_LIMITS.user_agents,
    }),
  ),
  listener_ids: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: ACL_LIMITS.listener_ids, uniqueItems: true })),
});
export type AclMatch = Static<typeof AclMatch>;

/** What a DENY answers. */
export const AclResponseInput = Strict({
  status_code: Type.Optional(Type.Integer({ minimum: 400, maximum: 599, description: 'default 403' })),
  body: Type.Optional(Type.String({ maxLength: 65_536, description: "default: the status's reason phrase" })),
  content_type: Type.Optional(
    Type.String({ minLength: 1, maxLength: 256, pattern: '^[\\t\\x20-\\x7e]+$', description: 'default application/json for a JSON object or array body, else text/plain' }),
  ),
});
export type AclResponseInput = Static<typeof AclResponseInput>;

/** The stored response: the input with its defaults filled. */
export interface AclResponse {
  status_code: number;
  body: string;
  content_type: string;
}

/** Whether a body reads as a JSON object or array (then it is served as application/json by default). */
function looksLikeJson(body: string): boolean {
  const t = body.trim();
  if (!(t.startsWith('{') && t.endsWith('}')) && !(t.startsWith('[') && t.endsWith(']'))) return false;
  try {
    JSON.parse(t);
    return true;
  } catch {
    return false;
  }
}

/** A DENY's response with the defaults of `ACL_DEFAULTS` filled. */
export function fillAclResponse(input: AclResponseInput): AclResponse {
  const status = input.status_code ?? ACL_DEFAULTS.status_code;
  const body = input.body ?? STATUS_CODES[status] ?? 'Forbidden';
  return { status_code: status, body, content_type: input.content_type ?? (looksLikeJson(body) ? 'application/json' : 'text/plain') };
}

const ExpiresAt = Type.String({ format: 'date-time', description: 'ISO 8601; after it the ACL no longer applies' });

export const AclCreate = Strict({
  name: Name,
  description: Type.Optional(Description),
  priority: Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'Lower is evaluated first' }),
  action: StringEnum(ACL_ACTIONS),
  match: AclMatch,
  response: Type.Optional(AclResponseInput),
  logging: Type.Optional(Type.Boolean()),
  expires_at: Type.Optional(Type.Union([ExpiresAt, Type.Null()])),
  enabled: Type.Optional(Type.Boolean()),
  tags: Type.Optional(StringMap),
  ...ScopeFields,
});
export type AclCreate = Static<typeof AclCreate>;

/** PATCH: `match` and `response` are replaced whole; null clears `response`, `expires_at`, `description`. */
export const AclPatch = Patch(
  {
    name: Name,
    description: Type.Union([Description, Type.Null()]),
    priority: AclCreate.properties.priority,
    action: StringEnum(ACL_ACTIONS),
    match: AclMatch,
    response: Type.Union([AclResponseInput, Type.Null()]),
    logging: Type.Boolean(),
    expires_at: Type.Union([ExpiresAt, Type.Null()]),
    enabled: Type.Boolean(),
    tags: StringMap,
  },
  { version: VersionField },
);
export type AclPatch = Static<typeof AclPatch>;

export const AclQuery = Strict({
  ...Paging.properties,
  listener_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'only ACLs that apply to this listener' })),
  status: Type.Optional(StringEnum(ACL_STATUSES)),
});
export type AclQuery = Static<typeof AclQuery>;

/** The stored ACL. */
export interface Acl {
  acl_id: string;
  name: string;
  description: string | null;
  priority: number;
  action: AclAction;
  /** Networks canonical (`192.0.2.0/24`), countries upper-case. */
  match: AclMatch;
  /** DENY only; null for ALLOW. */
  response: AclResponse | null;
  logging: boolean;
  /** ISO 8601 UTC, or null for never. */
  expires_at: string | null;
  enabled: boolean;
  tags: Record<string, string>;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
