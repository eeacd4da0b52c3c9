import { Type, type TSchema, type TObject, type TOptional, type TProperties } from 'typebox';

/**
 * Schema building blocks shared by every resource. Request schemas refuse unknown fields
 * (`additionalProperties: false`) so that a typo is an error, not a silently ignored setting.
 */

export function StringEnum<const T extends readonly string[]>(values: T, description?: string) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });
}

export function Strict<P extends TProperties>(properties: P, options: { description?: string } = {}): TObject<P> {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

type OptionalAll<P extends TProperties> = { [K in keyof P]: TOptional<P[K]> };

/** The same properties, each optional: the body of a PATCH. */
export function Patch<P extends TProperties, E extends TProperties = Record<never, never>>(
  properties: P,
  extra?: E,
): TObject<OptionalAll<P & E>> {
  const out: Record<string, TSchema> = {};
  for (const [k, v] of Object.entries(properties)) out[k] = Type.Optional(v);
  for (const [k, v] of Object.entries(extra ?? {})) out[k] = Type.Optional(v);
  return Type.Object(out, { additionalProperties: false, minProperties: 1 }) as unknown as TObject<OptionalAll<P & E>>;
}

export const Name = Type.String({ minLength: 1, maxLength: 128, pattern: '\\S', description: 'Display name' });
export const Description = Type.String({ maxLength: 1024 });
export const StringMap = Type.Record(Type.String({ maxLength: 128 }), Type.String({ maxLength: 1024 }));
export const ScopeId = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9_-]*$' });
export const Port = Type.Integer({ minimum: 1, maximum: 65535 });

/** Tenant scope carried by every resource; `default` when not given. */
export const ScopeFields = {
  org_id: Type.Optional(ScopeId),
  project_id: Type.Optional(ScopeId),
};

/** Optimistic concurrency: a PATCH may carry the version it was based on (or send If-Match). */
export const VersionField = Type.Integer({ minimum: 1, description: 'Expected current version' });

export const Paging = Strict({
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  per_page: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
});

export const ForceQuery = Strict({ force: Type.Optional(Type.Boolean({ default: false })) });

export interface Scope {
  org_id: string;
  project_id: string;
}

export const DEFAULT_SCOPE_ID = 'default';

/**
 * Creation order: `created_at` (whole seconds), then the id, so that resources made within one
 * second still have one order — the same in API listings and in traffic.
 */
export function creationOrder(a: { created_at: string }, aId: string, b: { created_at: string }, bId: string): number {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1;
  return aId < bId ? -1 : aId > bId ? 1 : 0;
}

/** Timestamps in the API: ISO 8601 UTC to the second (`2024-01-20T14:30:00Z`), as the seed writes them. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
