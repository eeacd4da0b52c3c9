import { Type, type Static } from 'typebox';
import { Description, Name, Patch, ScopeFields, Strict, StringEnum, VersionField } from './common.ts';
import { type HealthCheck, HealthCheckInput } from './health-check.ts';
import { BackendTls } from './backend.ts';

export const ALGORITHMS = [
  'ROUND_ROBIN',
  'WEIGHTED_ROUND_ROBIN',
  'LEAST_CONNECTIONS',
  'WEIGHTED_LEAST_CONNECTIONS',
  'RANDOM',
  'IP_HASH',
  'CONSISTENT_HASH',
  'LEAST_RESPONSE_TIME',
] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** PROXY protocol to backends (seed 002 `send_proxy_v2`): the real client's address first on each backend connection. */
export const PROXY_PROTOCOL_VERSIONS = ['NONE', 'V1', 'V2'] as const;
export type ProxyProtocolVersion = (typeof PROXY_PROTOCOL_VERSIONS)[number];
/** Seed 002 `on_marked_down_action`: what happens to a backend's open connections when it turns unhealthy. */
export const MARKED_DOWN_ACTIONS = ['NONE', 'SHUTDOWN_SESSIONS'] as const;

export const PERSISTENCE_TYPES = ['SOURCE_IP', 'COOKIE', 'APP_COOKIE'] as const;

export const AlgorithmConfig = Strict({
  weighted: Type.Optional(Type.Boolean()),
  power_of_two_choices: Type.Optional(Type.Boolean()),
  slow_start_duration_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
  hash_key: Type.Optional(
    Strict(
      {
        header: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" })),
        cookie: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\s;=,]+$' })),
      },
      { description: 'Key for CONSISTENT_HASH: one of header or cookie; the client IP when absent' },
    ),
  ),
});
export type AlgorithmConfig = Static<typeof AlgorithmConfig>;

export const SessionPersistence = Strict({
  enabled: Type.Optional(Type.Boolean()),
  type: Type.Optional(StringEnum(PERSISTENCE_TYPES)),
  cookie_name: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\s;=,]+$', description: 'COOKIE: the cookie Fulcrum inserts (default FULCRUM_BACKEND)' })),
  app_cookie_name: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[^\\s;=,]+$', description: 'APP_COOKIE: the application cookie to follow' })),
  ttl_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 31_536_000 })),
});
export type SessionPersistence = Static<typeof SessionPersistence>;

export const ConnectionLimits = Strict({
  max_connections_per_backend: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
  connection_timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  idle_timeout_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
});
export type ConnectionLimits = Static<typeof ConnectionLimits>;

export const CircuitBreaker = Strict({
  enabled: Type.Optional(Type.Boolean()),
  error_threshold_percent: Type.Optional(Type.Number({ minimum: 1, maximum: 100 })),
  evaluation_window_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  recovery_timeout_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  min_request_volume: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  slow_call_threshold_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  slow_call_rate_percent: Type.Optional(Type.Number({ minimum: 1, maximum: 100 })),
  half_open_requests: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});
export type CircuitBreaker = Static<typeof CircuitBreaker>;

/** Passive health (live traffic as the probe): on unless a pool turns it off. */
export const PassiveHealth = Strict({
  enabled: Type.Optional(Type.Boolean()),
});
export type PassiveHealth = Static<typeof PassiveHealth>;

const PoolProps = {
  name: Name,
  description: Description,
  algorithm: StringEnum(ALGORITHMS),
  algorithm_config: AlgorithmConfig,
  health_check: HealthCheckInput,
  session_persistence: SessionPersistence,
  connection_limits: ConnectionLimits,
  circuit_breaker: CircuitBreaker,
  passive_health: PassiveHealth,
  backend_tls: BackendTls,
  proxy_protocol: StringEnum(PROXY_PROTOCOL_VERSIONS),
  send_proxy_v2: Type.Boolean({ description: 'Seed 002 spelling: true is proxy_protocol V2, false NONE' }),
  on_marked_down_action: StringEnum(MARKED_DOWN_ACTIONS),
  retries: Type.Integer({ minimum: 0, maximum: 10, description: 'Connect retries on another backend' }),
  load_balancer_id: Type.String({ minLength: 1, description: 'Owning load balancer; the pool is deleted with it' }),
};

export const PoolCreate = Strict({
  name: PoolProps.name,
  description: Type.Optional(PoolProps.description),
  algorithm: Type.Optional(PoolProps.algorithm),
  algorithm_config: Type.Optional(PoolProps.algorithm_config),
  health_check: Type.Optional(PoolProps.health_check),
  session_persistence: Type.Optional(PoolProps.session_persistence),
  connection_limits: Type.Optional(PoolProps.connection_limits),
  circuit_breaker: Type.Optional(PoolProps.circuit_breaker),
  passive_health: Type.Optional(PoolProps.passive_health),
  backend_tls: Type.Optional(PoolProps.backend_tls),
  proxy_protocol: Type.Optional(PoolProps.proxy_protocol),
  send_proxy_v2: Type.Optional(PoolProps.send_proxy_v2),
  on_marked_down_action: Type.Optional(PoolProps.on_marked_down_action),
  retries: Type.Optional(PoolProps.retries),
  load_balancer_id: Type.Optional(PoolProps.load_balancer_id),
  ...ScopeFields,
});
export type PoolCreate = Static<typeof PoolCreate>;

export const PoolPatch = Patch(
  {
    name: PoolProps.name,
    description: Type.Union([PoolProps.description, Type.Null()]),
    algorithm: PoolProps.algorithm,
    algorithm_config: PoolProps.algorithm_config,
    health_check: Type.Union([PoolProps.health_check, Type.Null()]),
    session_persistence: PoolProps.session_persistence,
    connection_limits: PoolProps.connection_limits,
    circuit_breaker: PoolProps.circuit_breaker,
    passive_health: PoolProps.passive_health,
    backend_tls: Type.Union([PoolProps.backend_tls, Type.Null()]),
    proxy_protocol: PoolProps.proxy_protocol,
    send_proxy_v2: PoolProps.send_proxy_v2,
    on_marked_down_action: PoolProps.on_marked_down_action,
    retries: PoolProps.retries,
  },
  { version: VersionField },
);
export type PoolPatch = Static<typeof PoolPatch>;

export const AlgorithmUpdate = Strict({
  algorithm: PoolProps.algorithm,
  algorithm_config: Type.Optional(PoolProps.algorithm_config),
  version: Type.Optional(VersionField),
});
export type AlgorithmUpdate = Static<typeof AlgorithmUpdate>;

export const POOL_DEFAULTS = {
  algorithm: 'ROUND_ROBIN' as Algorithm,
  retries: 2,
  connection_limits: { connection_timeout_ms: 5000, idle_timeout_seconds: 300 },
  circuit_breaker: {
    enabled: false,
    error_threshold_percent: 50,
    evaluation_window_seconds: 30,
    recovery_timeout_seconds: 60,
    min_request_volume: 10,
    slow_call_threshold_ms: 5000,
    slow_call_rate_percent: 80,
    half_open_requests: 3,
  },
  session_persistence: { enabled: false, ttl_seconds: 3600 },
};

/** A pool as stored. */
export interface Pool {
  pool_id: string;
  name: string;
  description: string | null;
  algorithm: Algorithm;
  algorithm_config: AlgorithmConfig;
  health_check: HealthCheck | null;
  session_persistence: SessionPersistence;
  connection_limits: ConnectionLimits;
  circuit_breaker: CircuitBreaker;
  /** Absent in pools stored before it existed: read as enabled. */
  passive_health?: PassiveHealth;
  /** TLS to the pool's backends, the default of each backend's own `tls`; absent or null: plain. */
  backend_tls?: BackendTls | null;
  /** Absent in pools stored before it existed: NONE. */
  proxy_protocol?: ProxyProtocolVersion;
  on_marked_down_action?: (typeof MARKED_DOWN_ACTIONS)[number];
  retries: number;
  load_balancer_id: string | null;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
