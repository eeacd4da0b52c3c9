import { Type, type Static } from 'typebox';
import { Name, Patch, Port, Strict, StringEnum, VersionField } from './common.ts';

export const LISTENER_PROTOCOLS = ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TLS_PASSTHROUGH'] as const;
export type ListenerProtocol = (typeof LISTENER_PROTOCOLS)[number];

/** Protocols the data plane serves. */
export const SUPPORTED_LISTENER_PROTOCOLS: readonly ListenerProtocol[] = ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TLS_PASSTHROUGH'];

export const TLS_VERSIONS = ['TLS1_2', 'TLS1_3'] as const;
export const CLIENT_AUTH_MODES = ['NONE', 'OPTIONAL', 'REQUIRED'] as const;
export const ALPN_PROTOCOLS = ['h2', 'http/1.1'] as const;

/** An HTTP field name (RFC 9110 §5.1). */
const HeaderName = Type.String({ minLength: 1, maxLength: 128, pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" });
const Pem = Type.String({ minLength: 1, maxLength: 1_048_576 });

/**
 * TLS of an HTTPS listener. Every field is optional in the schema so a PATCH can name only what
 * changes; an HTTPS listener must end up with `certificate_ids` (a domain rule).
 */
export const ListenerTls = Strict({
  certificate_ids: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 100, uniqueItems: true, description: 'The first serves names no other covers, and clients without SNI' })),
  min_version: Type.Optional(StringEnum(TLS_VERSIONS)),
  ciphers: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'OpenSSL cipher list for TLS 1.2' })),
  alpn: Type.Optional(Type.Array(StringEnum(ALPN_PROTOCOLS), { minItems: 1, uniqueItems: true, description: 'Protocols offered by ALPN, in order of preference' })),
  client_auth: Type.Optional(StringEnum(CLIENT_AUTH_MODES)),
  client_ca_pem: Type.Optional(Pem),
  client_subject_header: Type.Optional(HeaderName),
});
export type ListenerTlsInput = Static<typeof ListenerTls>;

/** The stored form: defaults filled in. */
export interface ListenerTls {
  certificate_ids: string[];
  min_version: (typeof TLS_VERSIONS)[number];
  ciphers?: string;
  alpn: (typeof ALPN_PROTOCOLS)[number][];
  client_auth: (typeof CLIENT_AUTH_MODES)[number];
  client_ca_pem?: string;
  client_subject_header: string;
}

export const TLS_DEFAULTS = {
  min_version: 'TLS1_2',
  alpn: ['h2', 'http/1.1'],
  client_auth: 'NONE',
  client_subject_header: 'X-Client-Cert-Subject',
} as const;

/** Strict-Transport-Security on every answer of an HTTPS listener (RFC 6797 §6.1). */
export const Hsts = Strict({
  max_age_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 157_680_000 })),
  include_subdomains: Type.Optional(Type.Boolean()),
  preload: Type.Optional(Type.Boolean()),
});
export interface HstsSettings {
  max_age_seconds: number;
  include_subdomains: boolean;
  preload: boolean;
}
export const HSTS_DEFAULTS: HstsSettings = { max_age_seconds: 31_536_000, include_subdomains: false, preload: false };

/** An HTTP listener that sends every request to HTTPS instead of forwarding it. */
export const RedirectToHttps = Strict({
  enabled: Type.Optional(Type.Boolean()),
  status_code: Type.Optional(Type.Unsafe<301 | 302 | 307 | 308>({ type: 'integer', enum: [301, 302, 307, 308] })),
  port: Type.Optional(Port),
});
export interface RedirectSettings {
  enabled: boolean;
  status_code: 301 | 302 | 307 | 308;
  /** The HTTPS port named in the Location; 443 is left out of the URL. */
  port: number;
}
export const REDIRECT_DEFAULTS: RedirectSettings = { enabled: true, status_code: 301, port: 443 };

/** An exact host name or a `*.` wildcard one label deep. */
const SniName = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^(\\*\\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$',
});

/** TLS_PASSTHROUGH: which pool serves the names a ClientHello may carry. */
export const SniRoute = Strict({
  hostnames: Type.Array(SniName, { minItems: 1, maxItems: 1000 }),
  pool_id: Type.String({ minLength: 1, maxLength: 128 }),
});
export type SniRoute = Static<typeof SniRoute>;
const SniRoutes = Type.Array(SniRoute, { maxItems: 1000 });

/** An IPv4 or IPv6 address or CIDR (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`). */
export const Cidr = Type.String({ minLength: 2, maxLength: 49, description: 'IPv4 or IPv6 address or CIDR' });

/** Seed 001's access list: network items, DENY winning over ALLOW (see policy/access-list.ts). */
export const NETWORK_ITEM_TYPES = ['ALLOW', 'DENY'] as const;
export const NetworkItemInput = Strict({
  address: Cidr,
  type: StringEnum(NETWORK_ITEM_TYPES),
});
export type NetworkItemInput = Static<typeof NetworkItemInput>;
export interface NetworkItem {
  id: string;
  /** Canonical form: the network address and prefix (`10.0.0.0/8`), a single address as `/32` or `/128`. */
  address: string;
  type: (typeof NETWORK_ITEM_TYPES)[number];
}

/** Seed 001's connectionThrottle, per client IP. */
export const ConnectionThrottleInput = Strict({
  min_connections: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'A client with at most this many open connections is never throttled' })),
  max_connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Open connections one client IP may have; none when absent' })),
  max_connection_rate: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'New connections one client IP may open per rate_interval_seconds; none when absent' })),
  rate_interval_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
});
export type ConnectionThrottleInput = Static<typeof ConnectionThrottleInput>;
export interface ConnectionThrottle {
  min_connections: number;
  max_connections: number | null;
  max_connection_rate: number | null;
  rate_interval_seconds: number;
}
export const THROTTLE_DEFAULTS: ConnectionThrottle = { min_connections: 0, max_connections: null, max_connection_rate: null, rate_interval_seconds: 60 };

/** PROXY protocol from clients: only peers in `trusted_cidrs` may (and must) send a header. */
export const AcceptProxyProtocol = Strict({
  enabled: Type.Optional(Type.Boolean()),
  trusted_cidrs: Type.Optional(Type.Array(Cidr, { minItems: 1, maxItems: 1000 })),
});
export interface AcceptProxySettings {
  enabled: boolean;
  trusted_cidrs: string[];
}

/** One line per client connection (seed 001 connectionLogging). */
export const CONNECTION_LOG_FORMATS = ['JSON', 'TEXT'] as const;
export const ConnectionLogging = Strict({
  enabled: Type.Optional(Type.Boolean()),
  format: Type.Optional(StringEnum(CONNECTION_LOG_FORMATS)),
  destination: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: '"stdout", or a file name under <data_dir>/logs/' })),
});
export interface ConnectionLoggingSettings {
  enabled: boolean;
  format: (typeof CONNECTION_LOG_FORMATS)[number];
  destination: string;
}
export const CONNECTION_LOGGING_DEFAULTS: ConnectionLoggingSettings = { enabled: true, format: 'JSON', destination: 'stdout' };

export const Timeouts = Strict({
  client_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
  backend_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
  connect_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  idle_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
});

export interface ListenerTimeouts {
  client_ms: number;
  backend_ms: number;
  connect_ms: number;
  idle_ms: number;
}

export const LISTENER_DEFAULTS = {
  bind_address: '0.0.0.0',
  enabled: true,
  timeouts: {
    client_ms: 60_000, // 60 s to receive a request head and body
    backend_ms: 60_000, // 60 s for a backend to answer
    connect_ms: 5_000, // 5 s to connect to a backend
    idle_ms: 60_000, // 60 s of silence closes a kept-alive connection
  } satisfies ListenerTimeouts,
};

const BindAddress = Type.String({ minLength: 2, maxLength: 45, description: 'IPv4 or IPv6 address to bind' });
const ConnectionLimit = Type.Integer({ minimum: 1, maximum: 10_000_000 });
const PoolRef = Type.String({ minLength: 1 });

export const ListenerCreate = Strict({
  name: Name,
  protocol: StringEnum(LISTENER_PROTOCOLS),
  bind_address: Type.Optional(BindAddress),
  port: Port,
  default_pool_id: Type.Optional(PoolRef),
  timeouts: Type.Optional(Timeouts),
  connection_limit: Type.Optional(ConnectionLimit),
  enabled: Type.Optional(Type.Boolean()),
  tls: Type.Optional(ListenerTls),
  hsts: Type.Optional(Hsts),
  redirect_to_https: Type.Optional(RedirectToHttps),
  sni_routes: Type.Optional(SniRoutes),
  accept_proxy_protocol: Type.Optional(AcceptProxyProtocol),
  connection_logging: Type.Optional(ConnectionLogging),
});
export type ListenerCreate = Static<typeof ListenerCreate>;

export const ListenerPatch = Patch(
  {
    name: Name,
    protocol: StringEnum(LISTENER_PROTOCOLS),
    bind_address: BindAddress,
    port: Port,
    default_pool_id: Type.Union([PoolRef, Type.Null()]),
    timeouts: Timeouts,
    connection_limit: Type.Union([ConnectionLimit, Type.Null()]),
    enabled: Type.Boolean(),
    tls: Type.Union([ListenerTls, Type.Null()]),
    hsts: Type.Union([Hsts, Type.Null()]),
    redirect_to_https: Type.Union([RedirectToHttps, Type.Null()]),
    sni_routes: SniRoutes,
    accept_proxy_protocol: Type.Union([AcceptProxyProtocol, Type.Null()]),
    connection_logging: Type.Union([ConnectionLogging, Type.Null()]),
  },
  { version: VersionField },
);
export type ListenerPatch = Static<typeof ListenerPatch>;

export interface Listener {
  listener_id: string;
  lb_id: string;
  name: string;
  protocol: ListenerProtocol;
  bind_address: string;
  port: number;
  default_pool_id: string | null;
  timeouts: ListenerTimeouts;
  connection_limit: number | null;
  enabled: boolean;
  /** HTTPS only; absent in listeners stored before TLS existed. */
  tls?: ListenerTls | null;
  /** HTTPS only: the Strict-Transport-Security answers carry; null for none. */
  hsts?: HstsSettings | null;
  /** HTTP only: answer every request with a redirect to HTTPS. */
  redirect_to_https?: RedirectSettings | null;
  /** TLS_PASSTHROUGH only: pools by SNI name; others go to default_pool_id. */
  sni_routes?: SniRoute[];
  /** Managed at …/access-list; every listener type; checked when a connection is accepted. */
  access_list?: NetworkItem[];
  /** Managed at …/connection-throttle; null for none. */
  connection_throttle?: ConnectionThrottle | null;
  /** TCP-based listeners: a PROXY protocol header from trusted peers. */
  accept_proxy_protocol?: AcceptProxySettings | null;
  connection_logging?: ConnectionLoggingSettings | null;
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
