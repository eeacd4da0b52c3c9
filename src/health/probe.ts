/**
 * The seam between the health scheduler and the protocol probes: one function per protocol that
 * checks one backend once, within a deadline, and says what it saw.
 */
import type { HealthCheck } from '../model/health-check.ts';

export interface ProbeTarget {
  host: string;
  port: number;
}

export interface ProbeResult {
  ok: boolean;
  /** What failed, in words an operator reads in the API ("connect ECONNREFUSED", "status 503"). */
  error?: string;
  statusCode?: number;
  bodyMatched?: boolean;
}

/** Checks once; must settle by `signal` aborting (the check's timeout) and never reject. */
export type Probe = (target: ProbeTarget, check: HealthCheck, signal: AbortSignal) => Promise<ProbeResult>;
