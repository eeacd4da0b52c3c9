import { Type, type Static } from 'typebox';
import { Name, Paging, Patch, ScopeFields, Strict, StringEnum, VersionField } from './common.ts';

const Pem = Type.String({ minLength: 1, maxLength: 262_144 });
const NotifyDays = Type.Array(Type.Integer({ minimum: 0, maximum: 3650 }), { maxItems: 20, uniqueItems: true, description: 'Days before expiry at which a certificate.expiring event is emitted' });

/** POST /certificates (seed 000 §5). `domains`, when given, must be among the certificate's names. */
export const CertificateCreate = Strict({
  name: Name,
  domains: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 1000 })),
  certificate_pem: Pem,
  private_key_pem: Pem,
  chain_pem: Type.Optional(Pem),
  auto_renew: Type.Optional(Type.Boolean()),
  notify_before_expiry_days: Type.Optional(NotifyDays),
  ...ScopeFields,
});
export type CertificateCreate = Static<typeof CertificateCreate>;

export const CertificateQuery = Strict({
  ...Paging.properties,
  expiring_within_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 3650 })),
});
export type CertificateQuery = Static<typeof CertificateQuery>;

/**
 * PATCH /certificates/{id}: the settings around a certificate. Its contents (PEMs, key, the facts
 * read from them) change only through rotate, so that every change of what is served is recorded.
 */
export const CertificatePatch = Patch(
  {
    name: Name,
    auto_renew: Type.Boolean(),
    notify_before_expiry_days: NotifyDays,
  },
  { version: VersionField },
);
export type CertificatePatch = Static<typeof CertificatePatch>;

export const ROLLOUT_STRATEGIES = ['ROLLING', 'IMMEDIATE'] as const;
export type RolloutStrategy = (typeof ROLLOUT_STRATEGIES)[number];

/** POST /certificates/{id}/rotate (seed 000 §5): new material for the same names, same cert_id. */
export const CertificateRotate = Strict({
  new_certificate_pem: Pem,
  new_private_key_pem: Pem,
  new_chain_pem: Type.Optional(Pem),
  rollout_strategy: Type.Optional(StringEnum(ROLLOUT_STRATEGIES)),
  rollout_percent_per_minute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'ROLLING only: share of instances switched per minute' })),
});
export type CertificateRotate = Static<typeof CertificateRotate>;

export const CERTIFICATE_DEFAULTS = {
  notify_before_expiry_days: [30, 14, 7, 1],
  expiring_soon_days: 30,
  rollout_strategy: 'IMMEDIATE',
  rollout_percent_per_minute: 10, // % of instances per minute, ROLLING only
} as const;

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
  /** When the material was last replaced by a rotation; null (or absent when stored before rotation existed) if never. */
  rotated_at?: string | null;
  /** The fingerprint of the certificate the last rotation replaced. */
  previous_fingerprint_sha256?: string | null;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}

/**
 * One rotation of a certificate, stored as kind `certificate_rotation` under its certificate and
 * deleted with it. On one instance a rotation is complete once the write has reached the data
 * plane, which happens before the API answers, so records are stored COMPLETED.
 */
export interface CertificateRotation {
  rotation_id: string;
  cert_id: string;
  /** The seed's name for the certificate rotated; a rotation keeps the id, so it equals cert_id. */
  old_cert_id: string;
  status: 'COMPLETED';
  rollout_strategy: RolloutStrategy;
  /** ROLLING only; null for IMMEDIATE. */
  rollout_percent_per_minute: number | null;
  rollout_progress_percent: number;
  old_cert_fingerprint: string;
  new_cert_fingerprint: string;
  old_valid_until: string;
  new_valid_until: string;
  started_at: string;
  estimated_completion: string;
  completed_at: string;
  org_id: string;
  project_id: string;
}
