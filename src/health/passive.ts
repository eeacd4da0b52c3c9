/**
 * Passive health (seed 001's Passive Health Monitor): live traffic is the probe. Refused
 * connections, connect timeouts, invalid responses and 503s count as failures; three in a row mark
 * the backend OFFLINE for 60 s, after which live traffic may try it again. Any other answer resets
 * the count. An active check's next result replaces a passive OFFLINE (see health/checker.ts).
 */
import type { BackendRecord } from '../runtime/backend-state.ts';

export const PASSIVE_THRESHOLD = 3;
export const PASSIVE_OFFLINE_MS = 60_000;

/** Error codes of a forwarding attempt that count against the backend. */
const COUNTED = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'FULCRUM_INVALID_RESPONSE']);

/**
 * The connection to the backend failed before any byte of a request left: the TLS handshake (its
 * certificate did not verify, it does not speak TLS), or HTTP/2 was not agreed (ALPN, no SETTINGS),
 * or the backend refused the stream unprocessed (RFC 9113 §8.7). Another backend may take it.
 */
export function isHandshakeFailure(code: string): boolean {
  return (
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'FULCRUM_H2_ALPN' ||
    code === 'FULCRUM_H2_HANDSHAKE'
  );
}

export function countsAsPassiveFailure(code: string): boolean {
  return COUNTED.has(code) || code.startsWith('HPE_') || code === 'HTTPParserError' || isHandshakeFailure(code);
}

/**
 * One attempt's verdict. Returns true when the backend just went OFFLINE, so the caller can tell
 * the balancers.
 */
export function passiveOutcome(record: BackendRecord, failed: boolean, error: string, now: number): boolean {
  if (!failed) {
    record.passiveFailures = 0;
    return false;
  }
  if (++record.passiveFailures < PASSIVE_THRESHOLD) return false;
  record.passiveFailures = 0;
  const h = record.health;
  if (h?.state === 'OFFLINE' && h.until !== undefined && now < h.until) return false;
  record.beforeOffline = h?.state === 'OFFLINE' ? record.beforeOffline : (h?.state ?? 'UNKNOWN');
  record.setHealth('OFFLINE', now, h?.lastCheck ?? null, `${PASSIVE_THRESHOLD} consecutive failures of live traffic`, error, now + PASSIVE_OFFLINE_MS);
  return true;
}
