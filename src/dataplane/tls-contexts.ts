/**
 * The TLS side of an HTTPS listener, compiled once per revision: one secure context per
 * certificate, and SNI resolution — the exact name first, then a wildcard one label up, then the
 * listener's first certificate for any other name (and for clients that send no SNI).
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Certificate } from '../model/certificate.ts';
import type { Listener } from '../model/listener.ts';
import type { SecretBox } from '../tls/secret-box.ts';

export interface ListenerTlsRuntime {
  /** The context for a ClientHello's server name. */
  pick(servername: string): SecureContext;
  /** Options for the server's own (non-SNI) context: the first certificate. */
  readonly defaults: { cert: string; key: string; minVersion: 'TLSv1.2' | 'TLSv1.3'; ciphers?: string };
}

/** Builds the listener's contexts; throws with a reason an operator can act on. */
export function compileTls(listener: Listener, certificates: ReadonlyMap<string, Certificate>, box: SecretBox): ListenerTlsRuntime {
  const tls = listener.tls;
  if (!tls) throw new Error('an HTTPS listener needs tls.certificate_ids');
  const minVersion = tls.min_version === 'TLS1_3' ? 'TLSv1.3' : 'TLSv1.2';
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  let fallback: SecureContext | undefined;
  let defaults: ListenerTlsRuntime['defaults'] | undefined;
  for (const id of tls.certificate_ids) {
    const c = certificates.get(id);
    if (!c) throw new Error(`certificate '${id}' no longer exists`);
    let key: string;
    try {
      key = box.open(c.private_key_sealed);
    } catch {
      throw new Error(`the private key of certificate '${id}' cannot be opened with this instance's secret key`);
    }
    const cert = c.chain_pem ? `${c.certificate_pem.trim()}\n${c.chain_pem.trim()}\n` : c.certificate_pem;
    const options = { cert, key, minVersion, ...(tls.ciphers ? { ciphers: tls.ciphers } : {}) } as const;
    const context = createSecureContext(options);
    if (!fallback) {
      fallback = context;
      defaults = options;
    }
    for (const name of c.domains) {
      const map = name.startsWith('*.') ? wildcard : exact;
      const key2 = name.startsWith('*.') ? name.slice(2) : name;
      if (!map.has(key2)) map.set(key2, context); // the first certificate listed wins a name
    }
  }
  const chosen = fallback!;
  return {
    defaults: defaults!,
    pick(servername: string): SecureContext {
      const name = servername.toLowerCase();
      const hit = exact.get(name);
      if (hit) return hit;
      const dot = name.indexOf('.');
      return (dot > 0 ? wildcard.get(name.slice(dot + 1)) : undefined) ?? chosen;
    },
  };
}
