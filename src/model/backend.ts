import { Type, type Static } from 'typebox';
import { Name, Patch, Port, Strict, StringEnum, StringMap, VersionField } from './common.ts';
import { HealthCheckInput } from './health-check.ts';

/** The operator's intent for a backend; health is separate and comes from checks. */
export const ADMIN_STATUSES = ['ENABLED', 'DISABLED', 'DRAINING'] as const;
export type AdminStatus = (typeof ADMIN_STATUSES)[number];

/** What the API reports: admin intent and health folded into one word. */
export const BACKEND_STATUSES = ['STARTING', 'HEALTHY', 'UNHEALTHY', 'OFFLINE', 'DRAINING', 'DISABLED'] as const;
export type BackendStatus = (typeof BACKEND_STATUSES)[number];

const Hostname = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?$',
});

/** TLS from Fulcrum to a backend (seed 000's backend `tls`), also a pool's `backend_tls` default. */
export const BackendTls = Strict({
  enabled: Type.Optional(Type.Boolean({ description: 'TLS to the backend (default false)' })),
  verify: Type.Optional(Type.Boolean({ description: "Verify the backend's certificate (default true)" })),
  sni_hostname: Type.Optional(Type.String({ minLength: 1, maxLength: 253, pattern: '^(?=.*[A-Za-z])[A-Za-z0-9.-]+$', description: 'SNI and the name verified; a host name, not an IP' })),
  ca_pem: Type.Optional(Type.String({ minLength: 1, maxLength: 1_048_576, description: 'CA bundle to verify against; Node\'s roots when absent' })),
  http2: Type.Optional(Type.Boolean({ description: 'HTTP/2 to the backend: ALPN h2 over TLS, or cleartext h2 (prior knowledge) without' })),
});
export type BackendTls = Static<typeof BackendTls>;

const IpAddress = Type.String({ minLength: 2, maxLength: 45, description: 'IPv4 or IPv6 address' });

const BackendProps = {
  name: Name,
  hostname: Hostname,
  ip_address: IpAddress,
  port: Port,
  weight: Type.Integer({ minimum: 0, maximum: 1000, description: '0 takes no new traffic' }),
  max_connections: Type.Integer({ minimum: 1, maximum: 10_000_000 }),
  metadata: StringMap,
  health_check: HealthCheckInput,
  tls: BackendTls,
  proxy_protocol: StringEnum(['NONE', 'V1', 'V2'] as const),
  send_proxy_v2: Type.Boolean({ description: 'Seed 002 spelling: true is proxy_protocol V2, false NONE' }),
  slow_start_seconds: Type.Integer({ minimum: 0, maximum: 3600 }),
};

export const BackendCreate = Strict({
  name: Type.Optional(BackendProps.name),
  hostname: Type.Optional(BackendProps.hostname),
  ip_address: Type.Optional(BackendProps.ip_address),
  port: BackendProps.port,
  weight: Type.Optional(BackendProps.weight),
  max_connections: Type.Optional(BackendProps.max_connections),
  metadata: Type.Optional(BackendProps.metadata),
  health_check: Type.Optional(BackendProps.health_check),
  tls: Type.Optional(BackendProps.tls),
  proxy_protocol: Type.Optional(BackendProps.proxy_protocol),
  send_proxy_v2: Type.Optional(BackendProps.send_proxy_v2),
  slow_start_seconds: Type.Optional(BackendProps.slow_start_seconds),
  admin_status: Type.Optional(StringEnum(['ENABLED', 'DISABLED'] as const)),
});
export type BackendCreate = Static<typeof BackendCreate>;

export const BackendPatch = Patch(
  {
    name: BackendProps.name,
    hostname: Type.Union([BackendProps.hostname, Type.Null()]),
    ip_address: Type.Union([BackendProps.ip_address, Type.Null()]),
    port: BackendProps.port,
    weight: BackendProps.weight,
    max_connections: Type.Union([BackendProps.max_connections, Type.Null()]),
    metadata: BackendProps.metadata,
    health_check: Type.Union([BackendProps.health_check, Type.Null()]),
    tls: Type.Union([BackendProps.tls, Type.Null()]),
    proxy_protocol: Type.Union([BackendProps.proxy_protocol, Type.Null()]),
    send_proxy_v2: BackendProps.send_proxy_v2,
    slow_start_seconds: Type.Union([BackendProps.slow_start_seconds, Type.Null()]),
    admin_status: StringEnum(ADMIN_STATUSES),
  },
  { version: VersionField },
);
export type BackendPatch = Static<typeof BackendPatch>;

export const DrainRequest = Strict({
  timeout_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  close_idle_connections: Type.Optional(Type.Boolean()),
  reason: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type DrainRequest = Static<typeof DrainRequest>;

/** POST …/health-override (seed 000 §3). */
export const HealthOverrideRequest = Strict({
  status: StringEnum(['HEALTHY', 'UNHEALTHY'] as const),
  reason: Type.Optional(Type.String({ maxLength: 1024 })),
  duration_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 604_800, description: 'Default 3600; at most a week' })),
  operator: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
});
export type HealthOverrideRequest = Static<typeof HealthOverrideRequest>;

/** GET …/health-check/results */
export const HealthResultsQuery = Strict({
  include_history: Type.Optional(Type.Boolean()),
  history_minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440 })),
});
export type HealthResultsQuery = Static<typeof HealthResultsQuery>;

export const BACKEND_DEFAULTS = { weight: 100, drain_timeout_seconds: 300, override_seconds: 3600 } as const;

export interface Drain {
  drain_id: string;
  started_at: string;
  timeout_seconds: number;
  close_idle_connections: boolean;
  reason: string | null;
}

/** A backend as stored. Runtime facts (health, connections) live outside the store. */
export interface Backend {
  server_id: string;
  pool_id: string;
  name: string;
  hostname: string | null;
  ip_address: string | null;
  port: number;
  weight: number;
  max_connections: number | null;
  metadata: Record<string, string>;
  /** Overrides of the pool's check for this backend only, as given. */
  health_check: HealthCheckInput | null;
  tls: BackendTls | null;
  /** Overrides the pool's proxy_protocol; null (or absent in backends stored before it existed) follows the pool. */
  proxy_protocol?: 'NONE' | 'V1' | 'V2' | null;
  slow_start_seconds: number | null;
  admin_status: AdminStatus;
  drain: Drain | null;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
