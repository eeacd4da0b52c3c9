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
}
