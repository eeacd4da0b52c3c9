/**
 * DNS (seed 003 §6.2): the backend is a DNS server; ask it for `dns_name` and expect an answer —
 * an A query, or AAAA when `expected_address` is IPv6 — and, when `expected_address` is set, one
 * that contains it. A resolver of our own, pointed only at the target, does the asking (over UDP,
 * and TCP when the answer is truncated); one try, cancelled when the check's signal aborts.
 */
import { Resolver } from 'node:dns/promises';
import { isIP, isIPv6 } from 'node:net';
import type { Probe, ProbeResult } from '../probe.ts';

/** The server's answer codes under the names operators know from dig. */
const ANSWERS: Record<string, string> = {
  ENOTFOUND: 'NXDOMAIN',
  ENODATA: 'no records of that type (NODATA)',
  ESERVFAIL: 'SERVFAIL',
  EREFUSED: 'REFUSED',
  ENOTIMP: 'NOTIMP',
  EFORMERR: 'FORMERR',
  EBADRESP: 'malformed response',
  ECONNREFUSED: 'connection refused',
  ETIMEOUT: 'timed out',
  ECANCELLED: 'timed out',
};

/** One spelling per address (IPv6 has many: `::1`, `0::1`), so the comparison is of addresses, not strings. */
function canonical(address: string): string {
  return isIPv6(address) ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

export const dnsProbe: Probe = async (target, check, signal) => {
  if (signal.aborted) return { ok: false, error: 'timed out' };
  if (check.dns_name === undefined) return { ok: false, error: 'dns_name is not set' };
  const six = check.expected_address !== undefined && isIPv6(check.expected_address);
  if (isIP(target.host) === 0) return { ok: false, error: `a DNS check needs the backend's ip_address (resolvers are addressed by IP), not '${target.host}'` };
  const resolver = new Resolver({ timeout: check.timeout_seconds * 1000, tries: 1 });
  resolver.setServers([isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`]);
  const cancel = () => resolver.cancel();
  signal.addEventListener('abort', cancel, { once: true });
  try {
    const addresses = six ? await resolver.resolve6(check.dns_name) : await resolver.resolve4(check.dns_name);
    if (addresses.length === 0) return { ok: false, error: `no ${six ? 'AAAA' : 'A'} records` };
    if (check.expected_address === undefined) return { ok: true };
    const want = canonical(check.expected_address);
    const found = addresses.some((a) => canonical(a) === want);
    const result: ProbeResult = found ? { ok: true } : { ok: false, error: `expected ${check.expected_address}, got ${addresses.slice(0, 8).join(', ')}` };
    return result;
  } catch (err) {
    if (signal.aborted) return { ok: false, error: 'timed out' };
    const code = (err as NodeJS.ErrnoException).code ?? '';
    return { ok: false, error: ANSWERS[code] ?? `${code || (err as Error).message}` };
  } finally {
    signal.removeEventListener('abort', cancel);
  }
};
