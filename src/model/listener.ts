import { Type, type Static } from 'typebox';
import { Name, Patch, Port, Strict, StringEnum, VersionField } from './common.ts';

export const LISTENER_PROTOCOLS = ['HTTP', 'HTTPS', 'TCP', 'UDP', 'TLS_PASSTHROUGH'] as const;
export type ListenerProtocol = (typeof LISTENER_PROTOCOLS)[number];

/** Protocols the data plane serves today; the others are refused with 422 until they land. */
export const SUPPORTED_LISTENER_PROTOCOLS: readonly ListenerProtocol[] = ['HTTP', 'HTTPS'];

/** TLS of an HTTPS listener: the certificates it serves (the first for names no other covers). */
export const ListenerTls = Strict({
  certificate_ids: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 100, uniqueItems: true }),
  min_version: Type.Optional(StringEnum(['TLS1_2', 'TLS1_3'] as const)),
  ciphers: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'OpenSSL cipher list for TLS 1.2' })),
});
export type ListenerTls = Static<typeof ListenerTls>;

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
  org_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  version: number;
}
