/**
 * TLS from Fulcrum to backends: a pool's `backend_tls` is the default of its backends, and a
 * backend's own `tls` overrides it field by field (seed 000's backend `tls`).
 */
import type { Backend, BackendTls } from '../model/backend.ts';
import type { Pool } from '../model/pool.ts';
import { readPemBundle } from '../tls/certificate.ts';
import type { FieldProblem } from './errors.ts';

/** How Fulcrum speaks to one backend. */
export interface EffectiveBackendTls {
  /** TLS to the backend; false is plain TCP. */
  enabled: boolean;
  /** Verify the backend's certificate chain and name. */
  verify: boolean;
  /** SNI and the name verified: `sni_hostname`, else the backend's hostname, else none (an IP is checked against the certificate's IP SANs). */
  servername: string | undefined;
  /** Roots the backend's certificate is verified against; Node's bundled roots when absent. */
  ca: string | undefined;
  /** HTTP/2 to the backend (over TLS with ALPN h2, or cleartext h2 with prior knowledge). */
  http2: boolean;
}

export function effectiveBackendTls(pool: Pool, backend: Backend): EffectiveBackendTls {
  const t: BackendTls = { ...pool.backend_tls, ...backend.tls };
  return {
    enabled: t.enabled ?? false,
    verify: t.verify ?? true,
    servername: t.sni_hostname ?? backend.hostname ?? undefined,
    ca: t.ca_pem,
    http2: t.http2 ?? false,
  };
}

/**
 * `proxy_protocol`, or seed 002's `send_proxy_v2` spelling of it (true: V2, false: NONE); a
 * problem when both are given and disagree. `undefined` when neither is given.
 */
export function proxyProtocolInput(
  input: { proxy_protocol?: 'NONE' | 'V1' | 'V2' | null; send_proxy_v2?: boolean },
  problems: FieldProblem[],
): 'NONE' | 'V1' | 'V2' | null | undefined {
  const alias = input.send_proxy_v2 === undefined ? undefined : input.send_proxy_v2 ? 'V2' : 'NONE';
  if (alias !== undefined && input.proxy_protocol !== undefined && input.proxy_protocol !== alias) {
    problems.push({ field: 'send_proxy_v2', reason: `says ${alias} while proxy_protocol says ${input.proxy_protocol}; give one of them` });
  }
  return input.proxy_protocol !== undefined ? input.proxy_protocol : alias;
}

/** The PROXY protocol a backend of `pool` is sent: its own setting, else the pool's. */
export function effectiveProxyProtocol(pool: Pool, backend: Backend): 'NONE' | 'V1' | 'V2' {
  return backend.proxy_protocol ?? pool.proxy_protocol ?? 'NONE';
}

/** Problems of a `tls` / `backend_tls` object, fields prefixed with `prefix`. */
export function checkBackendTls(tls: BackendTls | null | undefined, prefix: string): FieldProblem[] {
  if (!tls?.ca_pem) return [];
  try {
    readPemBundle(tls.ca_pem, 'the bundle');
    return [];
  } catch (err) {
    return [{ field: `${prefix}ca_pem`, reason: (err as Error).message }];
  }
}
