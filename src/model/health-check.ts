import { Type, type Static } from 'typebox';
import { Port, Strict, StringEnum, StringMap } from './common.ts';

export const HEALTH_CHECK_PROTOCOLS = ['TCP', 'HTTP', 'HTTPS', 'REDIS', 'PGSQL', 'MYSQL', 'LDAP', 'DNS', 'GRPC'] as const;
export const HEALTH_CHECK_METHODS = ['GET', 'HEAD', 'POST', 'OPTIONS'] as const;

/** Defaults of an active check (seed 003 §8 `[health_check]`, seed 000 §3). */
export const HEALTH_CHECK_DEFAULTS = {
  protocol: 'TCP',
  method: 'GET',
  path: '/',
  interval_seconds: 30,
  timeout_seconds: 10,
  healthy_threshold: 2,
  unhealthy_threshold: 3,
  expected_status_codes: [200],
  jitter_percent: 10,
  tls_enabled: false, // HTTPS probes use TLS regardless; this turns it on for other protocols
  tls_verify: true,
  enabled: true,
} as const;

const StatusCode = Type.Integer({ minimum: 100, maximum: 599 });

/** Sent as a C string (PostgreSQL, MySQL) or a counted one: a NUL byte would cut or corrupt it. */
function CString(maxLength: number, description: string, minLength = 1) {
  return Type.String({ minLength, maxLength, pattern: '^[^\\x00]*$', description });
}

/** A secret the probe sends: accepted on write, never shown in clear (see `redactHealthCheck`). */
function Secret(description: string) {
  return Type.String({ minLength: 1, maxLength: 512, writeOnly: true, description });
}

/** A DNS name: dot-separated labels of letters, digits, '-' and '_', at most 253 characters. */
const DnsName = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\\.?$',
  description: 'DNS: the name to query',
});

export const HealthCheckProps = {
  protocol: StringEnum(HEALTH_CHECK_PROTOCOLS),
  enabled: Type.Boolean(),
  path: Type.String({ minLength: 1, maxLength: 2048, pattern: '^/' }),
  port: Port,
  method: StringEnum(HEALTH_CHECK_METHODS),
  host_header: Type.String({ minLength: 1, maxLength: 255 }),
  interval_seconds: Type.Integer({ minimum: 1, maximum: 3600 }),
  timeout_seconds: Type.Integer({ minimum: 1, maximum: 3600 }),
  unhealthy_threshold: Type.Integer({ minimum: 1, maximum: 100 }),
  healthy_threshold: Type.Integer({ minimum: 1, maximum: 100 }),
  jitter_percent: Type.Integer({ minimum: 0, maximum: 50 }),
  expected_status_codes: Type.Array(StatusCode, { minItems: 1, maxItems: 100, uniqueItems: true }),
  expected_status_regex: Type.String({ minLength: 1, maxLength: 256 }),
  expected_body_regex: Type.String({ minLength: 1, maxLength: 1024 }),
  headers: StringMap,
  tls_enabled: Type.Boolean(),
  tls_verify: Type.Boolean(),
  // Probe-specific settings: each applies to one protocol and is ignored by the others.
  redis_password: Secret('REDIS: sent with AUTH before PING'),
  pgsql_user: CString(63, 'PGSQL: the user of the startup message (default postgres)'),
  pgsql_database: CString(63, 'PGSQL: the database of the startup message (default: the user)'),
  mysql_user: CString(80, 'MYSQL: log in as this passwordless account and quit cleanly, instead of reading the greeting only'),
  ldap_bind_dn: CString(1024, 'LDAP: bind as this DN (default: an anonymous bind)'),
  ldap_password: Secret('LDAP: the password of the simple bind as ldap_bind_dn'),
  dns_name: DnsName,
  expected_address: Type.String({ minLength: 2, maxLength: 45, description: 'DNS: an IPv4 (A) or IPv6 (AAAA) address the answer must contain' }),
  grpc_service: CString(256, 'GRPC: the service asked about in grpc.health.v1.Health/Check (default "", the whole server)', 0),
};

/** A health check as a request states it: every field optional, defaults fill the rest. */
export const HealthCheckInput = Strict(
  Object.fromEntries(Object.entries(HealthCheckProps).map(([k, v]) => [k, Type.Optional(v)])) as {
    [K in keyof typeof HealthCheckProps]: ReturnType<typeof Type.Optional<(typeof HealthCheckProps)[K]>>;
  },
);
export type HealthCheckInput = Static<typeof HealthCheckInput>;

/** A stored health check: defaults applied. Optional fields stay absent when not set. */
export interface HealthCheck {
  protocol: (typeof HEALTH_CHECK_PROTOCOLS)[number];
  enabled: boolean;
  path: string;
  port?: number;
  method: (typeof HEALTH_CHECK_METHODS)[number];
  host_header?: string;
  interval_seconds: number;
  timeout_seconds: number;
  unhealthy_threshold: number;
  healthy_threshold: number;
  jitter_percent: number;
  expected_status_codes: number[];
  expected_status_regex?: string;
  expected_body_regex?: string;
  headers: Record<string, string>;
  tls_enabled: boolean;
  tls_verify: boolean;
  redis_password?: string;
  pgsql_user?: string;
  pgsql_database?: string;
  mysql_user?: string;
  ldap_bind_dn?: string;
  ldap_password?: string;
  dns_name?: string;
  expected_address?: string;
  grpc_service?: string;
}

/** Fields a check holds that the API must never return in clear. */
export const HEALTH_CHECK_SECRETS = ['redis_password', 'ldap_password'] as const;
export const REDACTED = '********';

/**
 * The check as the API may show it: a secret that is set reads as REDACTED, so a client sees that
 * it is set but not what it is. Returns the same object when there is nothing to hide.
 */
export function redactHealthCheck<T extends { redis_password?: string; ldap_password?: string } | null>(hc: T): T {
  if (!hc || !HEALTH_CHECK_SECRETS.some((k) => hc[k] !== undefined)) return hc;
  const out = { ...hc };
  for (const k of HEALTH_CHECK_SECRETS) if (out[k] !== undefined) out[k] = REDACTED;
  return out;
}
