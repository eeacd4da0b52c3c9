import { Type, type Static } from 'typebox';
import { Name, Paging, ScopeFields, Strict } from './common.ts';

const Pem = Type.String({ minLength: 1, maxLength: 262_144 });

/** POST /certificates (seed 000 §5). `domains`, when given, must be among the certificate's names. */
export const CertificateCreate = Strict({
  name: Name,
  domains: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 1000 })),
  certificate_pem: Pem,
  private_key_pem: Pem,
  chain_pem: Type.Optional(Pem),
  auto_renew: Type.Optional(Type.Boolean()),
  notify_before_expiry_days: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 3650 }), { maxItems: 20, uniqueItems: true })),
  ...ScopeFields,
});
export type CertificateCreate = Static<typeof CertificateCreate>;

export const CertificateQuery = Strict({
  ...Paging.properties,
  expiring_within_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650 })),
});
export type CertificateQuery = Static<typeof CertificateQuery>;

export const CERTIFICATE_DEFAULTS = { notify_before_expiry_days: [30, 14, 7, 1], expiring_soon_days: 30 } as const;

/** A certificate as stored. The private key is only ever stored sealed (see tls/secret-box.ts). */
export interface Certificate {
  cert_id: string;
  name: string;
  domains: string[];
  type: 'SINGLE' | 'WILDCARD' | 'MULTI_DOMAIN';
  key_type: string;
  issuer: string;
  subject: string;
  valid_from: string;
  valid_until: string;
  fingerprint_sha256: string;
  certificate_pem: string;
  chain_pem: string | null;
  /** AES-256-GCM, never returned by the API. */
  private_key_sealed: string;
  auto_renew: boolean;
  notify_before_expiry_days: number[];
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
