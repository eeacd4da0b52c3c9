import { Type, type Static } from 'typebox';
import { Description, Name, Patch, ScopeFields, Strict, StringMap, VersionField } from './common.ts';

export const LoadBalancerCreate = Strict({
  name: Name,
  description: Type.Optional(Description),
  tags: Type.Optional(StringMap),
  metadata: Type.Optional(StringMap),
  ...ScopeFields,
});
export type LoadBalancerCreate = Static<typeof LoadBalancerCreate>;

export const LoadBalancerPatch = Patch(
  { name: Name, description: Type.Union([Description, Type.Null()]), tags: StringMap, metadata: StringMap },
  { version: VersionField },
);
export type LoadBalancerPatch = Static<typeof LoadBalancerPatch>;

export interface LoadBalancer {
  lb_id: string;
  name: string;
  description: string | null;
  tags: Record<string, string>;
  metadata: Record<string, string>;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
