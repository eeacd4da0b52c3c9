import { isIP } from 'node:net';
import type { FieldProblem } from './errors.ts';
import { HEALTH_CHECK_DEFAULTS, HEALTH_CHECK_SECRETS, type HealthCheck, type HealthCheckInput, REDACTED } from '../model/health-check.ts';

/** Applies defaults to a health check as given in a request (or over a base check). */
export function resolveHealthCheck(input: HealthCheckInput, base?: HealthCheck): HealthCheck {
  const from = base ?? { ...HEALTH_CHECK_DEFAULTS, expected_status_codes: [...HEALTH_CHECK_DEFAULTS.expected_status_codes], headers: {} };
  return { ...from, ...input } as HealthCheck;
}

/**
 * Secrets written back as the API showed them (REDACTED) keep the stored value: a client that
 * reads a check and PUTs it back unchanged must not turn the password into asterisks.
 */
export function keepRedactedSecrets<T extends HealthCheckInput | HealthCheck>(input: T, stored: { redis_password?: string; ldap_password?: string } | null | undefined): T {
  let out = input;
  for (const k of HEALTH_CHECK_SECRETS) {
    if (input[k] !== REDACTED) continue;
    out = { ...out };
    if (stored?.[k] !== undefined) out[k] = stored[k];
    else delete out[k];
  }
  return out;
}

/** Rules a JSON schema cannot state. Returns one problem per bad field. */
export function checkHealthCheck(hc: HealthCheck, prefix: string): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (hc.timeout_seconds > hc.interval_seconds) {
    problems.push({
      field: `${prefix}timeout_seconds`,
      reason: `must not exceed interval_seconds (${hc.interval_seconds}); a check must end before the next starts`,
    });
  }
  for (const key of ['expected_body_regex', 'expected_status_regex'] as const) {
    const pattern = hc[key];
    if (pattern === undefined) continue;
    try {
      new RegExp(pattern);
    } catch (err) {
      problems.push({ field: `${prefix}${key}`, reason: `not a valid regular expression: ${(err as Error).message}` });
    }
  }
  for (const name of Object.keys(hc.headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      problems.push({ field: `${prefix}headers.${name}`, reason: 'not a valid HTTP header name' });
    }
  }
  if (hc.protocol === 'DNS' && hc.dns_name === undefined) {
    problems.push({ field: `${prefix}dns_name`, reason: 'required for DNS checks: the name to query' });
  }
  if (hc.expected_address !== undefined && isIP(hc.expected_address) === 0) {
    problems.push({ field: `${prefix}expected_address`, reason: `'${hc.expected_address}' is not an IPv4 or IPv6 address` });
  }
  return problems;
}

/** Seconds until a failing backend is marked unhealthy: the failures needed × the interval. */
export function detectionSeconds(hc: HealthCheck): number {
  return hc.unhealthy_threshold * hc.interval_seconds;
}

/** The seed's warning when a change makes failures take longer to detect; undefined otherwise. */
export function slowerDetectionWarning(before: HealthCheck | null, after: HealthCheck): string | undefined {
  if (!before || !before.enabled || !after.enabled) return undefined;
  const was = detectionSeconds(before);
  const now = detectionSeconds(after);
  if (now <= was) return undefined;
  const raised: string[] = [];
  if (after.unhealthy_threshold > before.unhealthy_threshold) raised.push(`unhealthy_threshold to ${after.unhealthy_threshold}`);
  if (after.interval_seconds > before.interval_seconds) raised.push(`interval_seconds to ${after.interval_seconds}`);
  const what = raised.length > 0 ? `Increasing ${raised.join(' and ')}` : 'This change';
  return `${what} means backends will take ${now}s to be marked unhealthy (was ${was}s).`;
}
