/**
 * Every server setting in one table: its TOML key, environment variable, CLI flag, default and
 * parser. Precedence is flags over environment over file over defaults. A parser throws a
 * message naming what is wrong; the loader adds which setting and which source it came from.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface HostPort {
  host: string;
  port: number;
}

export interface ServerConfig {
  apiAddr: HostPort;
  dataDir: string;
  logLevel: LogLevel;
  adminToken: string | undefined;
  shutdownTimeoutMs: number;
  apiBodyLimitBytes: number;
  /** Encrypts secrets at rest (certificate private keys); unset: a key generated into the data dir. */
  secretKey?: string;
  /** Worker processes that move layer 4 bytes; unset: one per core when there are several, else none. */
  relayWorkers?: number;
  /** A MaxMind DB file giving client countries to ACLs' `source_countries`; unset: none (such ACLs are refused). */
  geoipDatabasePath?: string;
}

interface Setting<K extends keyof ServerConfig> {
  key: K;
  toml: string;
  env: string;
  /** CLI flag without dashes; undefined when a flag would leak a secret into `ps`. */
  flag: string | undefined;
  default: ServerConfig[K];
  parse: (raw: unknown) => ServerConfig[K];
  doc: string;
}

function asString(raw: unknown): string {
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
  throw new Error(`expected a string, got ${typeof raw}`);
}

export function parseHostPort(raw: unknown): HostPort {
  const text = asString(raw).trim();
  // `[::1]:6300` for IPv6, `host:port` otherwise.
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  if (!match) throw new Error(`'${text}' is not host:port (for IPv6 use [addr]:port)`);
  const host = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range 0-65535`);
  return { host, port };
}

function parseInteger(min: number, max: number) {
  return (raw: unknown): number => {
    const text = asString(raw).trim();
    if (!/^\d+$/.test(text)) throw new Error(`'${text}' is not a whole number`);
    const n = Number(text);
    if (n < min || n > max) throw new Error(`${n} is out of range ${min}-${max}`);
    return n;
  };
}

function parseLogLevel(raw: unknown): LogLevel {
  const text = asString(raw).trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(text)) {
    throw new Error(`'${text}' is not one of ${LOG_LEVELS.join(', ')}`);
  }
  return text as LogLevel;
}

function parseNonEmpty(raw: unknown): string {
  const text = asString(raw);
  if (text.trim() === '') throw new Error('must not be empty');
  return text;
}

function parseToken(raw: unknown): string | undefined {
  const text = asString(raw);
  if (text.length < 16) throw new Error('must be at least 16 characters');
  if (/\s/.test(text)) throw new Error('must not contain whitespace');
  return text;
}

export const SETTINGS = [
  {
    key: 'apiAddr',
    toml: 'server.api_addr',
    env: 'FULCRUM_API_ADDR',
    flag: 'api-addr',
    default: { host: '127.0.0.1', port: 6300 },
    parse: parseHostPort,
    doc: 'Address of the management API (`host:port`, port 0 picks a free port).',
  } satisfies Setting<'apiAddr'>,
  {
    key: 'dataDir',
    toml: 'server.data_dir',
    env: 'FULCRUM_DATA_DIR',
    flag: 'data-dir',
    default: './data',
    parse: parseNonEmpty,
    doc: 'Directory of the embedded SQLite store (created if missing).',
  } satisfies Setting<'dataDir'>,
  {
    key: 'logLevel',
    toml: 'logging.level',
    env: 'FULCRUM_LOG_LEVEL',
    flag: 'log-level',
    default: 'info',
    parse: parseLogLevel,
    doc: `Log level: ${LOG_LEVELS.join(', ')}.`,
  } satisfies Setting<'logLevel'>,
  {
    key: 'adminToken',
    toml: 'auth.admin_token',
    env: 'FULCRUM_ADMIN_TOKEN',
    flag: undefined,
    default: undefined,
    parse: parseToken,
    doc: 'Admin API token (16+ characters). Unset: one is generated on first start and printed once.',
  } satisfies Setting<'adminToken'>,
  {
    key: 'shutdownTimeoutMs',
    toml: 'server.shutdown_timeout_ms',
    env: 'FULCRUM_SHUTDOWN_TIMEOUT_MS',
    flag: 'shutdown-timeout-ms',
    default: 30_000, // 30 seconds
    parse: parseInteger(0, 3_600_000),
    doc: 'How long in-flight requests may run after SIGTERM/SIGINT before they are cut (ms).',
  } satisfies Setting<'shutdownTimeoutMs'>,
  {
    key: 'apiBodyLimitBytes',
    toml: 'server.api_body_limit_bytes',
    env: 'FULCRUM_API_BODY_LIMIT_BYTES',
    flag: 'api-body-limit-bytes',
    default: 1_048_576, // 1 MiB
    parse: parseInteger(1024, 64 * 1_048_576),
    doc: 'Largest management API request body accepted; larger ones get 413 (bytes).',
  } satisfies Setting<'apiBodyLimitBytes'>,
  {
    key: 'relayWorkers',
    toml: 'data_plane.relay_workers',
    env: 'FULCRUM_RELAY_WORKERS',
    flag: 'relay-workers',
    default: undefined,
    parse: parseInteger(0, 64),
    doc: 'Worker processes that move the bytes of TCP and TLS passthrough connections (0: in the main process). Unset: one per core when the machine has several, else 0.',
  } satisfies Setting<'relayWorkers'>,
  {
    key: 'secretKey',
    toml: 'security.secret_key',
    env: 'FULCRUM_SECRET_KEY',
    flag: undefined,
    default: undefined,
    parse: parseToken,
    doc: 'Key that encrypts secrets at rest (16+ characters). Unset: one is generated into <data_dir>/secret.key (mode 0600).',
  } satisfies Setting<'secretKey'>,
  {
    key: 'geoipDatabasePath',
    toml: 'geoip.database_path',
    env: 'FULCRUM_GEOIP_DATABASE',
    flag: 'geoip-database',
    default: undefined,
    parse: parseNonEmpty,
    doc: 'MaxMind DB file (GeoLite2-Country, GeoIP2-Country or City, uncompressed .mmdb) that gives ACLs the country of a client address; read once at start. Unset: ACLs cannot use source_countries.',
  } satisfies Setting<'geoipDatabasePath'>,
] as const;
