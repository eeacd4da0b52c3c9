/**
 * The TLS side of an HTTPS listener, compiled once per revision: a secure context per certificate,
 * SNI resolution (the exact name, then a wildcard one label up, then the listener's first
 * certificate, which also serves clients that send no name), the ALPN protocols offered, and how
 * client certificates are asked for.
 *
 * Secure contexts are costly to build (the private key is unsealed and parsed, the chain loaded),
 * so they are cached across revisions by what they are made of: a change to an unrelated resource
 * reuses every context, a rotated certificate (a new version) gets a new one.
 */
import { createHash } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Certificate } from '../../model/certificate.ts';
import type { Listener } from '../../model/listener.ts';
import type { SecretBox } from '../../tls/secret-box.ts';

export interface ListenerTlsRuntime {
  /** The context for a ClientHello's server name. */
  pick(servername: string): SecureContext;
  /** Options of the server's own context (the first certificate): for clients without SNI. Unseals a key: call only when `defaultsKey` changed. */
  defaults(): SecureContextOptions;
  /** What `defaults` is made of: the server's context is rebuilt only when it changes. */
  readonly defaultsKey: string;
  /** ALPN protocols offered, in the listener's order of preference. */
  readonly alpn: readonly string[];
  /** Ask for a client certificate (OPTIONAL or REQUIRED). */
  readonly requestCert: boolean;
  /** Refuse the handshake without a valid client certificate (REQUIRED). */
  readonly rejectUnauthorized: boolean;
  /** Lower-case header that carries the verified client certificate's subject to backends. */
  readonly subjectHeader: string;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}

/** Secure contexts by what they are made of, kept while a revision uses them. */
export class SecureContextCache {
  #entries = new Map<string, SecureContext>();
  #used = new Set<string>();

  /** Starts a revision: contexts it does not ask for are dropped by `end`. */
  begin(): void {
    this.#used = new Set();
  }

  get(key: string, make: () => SecureContextOptions): SecureContext {
    this.#used.add(key);
    let context = this.#entries.get(key);
    if (!context) {
      context = createSecureContext(make());
      this.#entries.set(key, context);
    }
    return context;
  }

  end(): void {
    for (const key of this.#entries.keys()) if (!this.#used.has(key)) this.#entries.delete(key);
  }
}

/** Builds the listener's TLS; throws with a reason an operator can act on. */
export function compileListenerTls(
  listener: Listener,
  certificates: ReadonlyMap<string, Certificate>,
  box: SecretBox,
  cache: SecureContextCache,
): ListenerTlsRuntime {
  const tls = listener.tls;
  if (!tls || tls.certificate_ids.length === 0) throw new Error('an HTTPS listener needs tls.certificate_ids');
  const minVersion = tls.min_version === 'TLS1_3' ? 'TLSv1.3' : 'TLSv1.2';
  const clientAuth = tls.client_auth ?? 'NONE';
  const ca = clientAuth !== 'NONE' ? tls.client_ca_pem : undefined;
  // Resumed sessions must stay within the listener that verified them (OpenSSL insists on an id
  // context whenever client certificates are requested).
  const sessionIdContext = digest(listener.listener_id);
  const shared = `${minVersion}|${tls.ciphers ?? ''}|${ca === undefined ? '' : digest(ca)}|${sessionIdContext}`;
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  let fallback: SecureContext | undefined;
  let defaults: (() => SecureContextOptions) | undefined;
  let defaultsKey = '';
  for (const id of tls.certificate_ids) {
    const c = certificates.get(id);
    if (!c) throw new Error(`certificate '${id}' no longer exists`);
    const key = `${c.cert_id}@${c.version}|${c.fingerprint_sha256}|${shared}`;
    const make = (): SecureContextOptions => {
      let privateKey: string;
      try {
        privateKey = box.open(c.private_key_sealed);
      } catch {
        throw new Error(`the private key of certificate '${id}' cannot be opened with this instance's secret key`);
      }
      const cert = c.chain_pem ? `${c.certificate_pem.trim()}\n${c.chain_pem.trim()}\n` : c.certificate_pem;
      return { cert, key: privateKey, minVersion, sessionIdContext, ...(tls.ciphers ? { ciphers: tls.ciphers } : {}), ...(ca ? { ca } : {}) };
    };
    const context = cache.get(key, make);
    if (!fallback) {
      fallback = context;
      defaultsKey = key;
      defaults = make;
    }
    for (const name of c.domains) {
      const wild = name.startsWith('*.');
      const map = wild ? wildcard : exact;
      const host = wild ? name.slice(2) : name;
      if (!map.has(host)) map.set(host, context); // the first certificate listed wins a name
    }
  }
  const chosen = fallback!;
  return {
    defaults: defaults!,
    defaultsKey,
    alpn: tls.alpn ?? ['h2', 'http/1.1'],
    requestCert: clientAuth !== 'NONE',
    rejectUnauthorized: clientAuth === 'REQUIRED',
    subjectHeader: (tls.client_subject_header ?? 'X-Client-Cert-Subject').toLowerCase(),
    pick(servername: string): SecureContext {
      const name = servername.toLowerCase();
      const hit = exact.get(name);
      if (hit) return hit;
      const dot = name.indexOf('.');
      return (dot > 0 ? wildcard.get(name.slice(dot + 1)) : undefined) ?? chosen;
    },
  };
}
