/**
 * Emits `certificate.expiring` as a certificate's days_until_expiry reaches each of its
 * `notify_before_expiry_days` thresholds (30, 14, 7, 1 by default): once per threshold, per
 * certificate material. A threshold is reached when days_until_expiry (whole days left, as the API
 * shows it) is at most the threshold.
 *
 * What was sent is kept in memory, keyed by cert_id and fingerprint, so a rotation to new material
 * starts afresh. When a check finds several thresholds reached that were not sent yet — the first
 * check after a process start, an upload of a certificate that has 10 days left, a machine that
 * slept through a week — it sends ONE event, for the smallest of them, and marks the larger ones
 * as sent: an operator gets the most urgent notice, not a flood of stale ones after every restart.
 * A threshold reached later than a smaller one already sent (one added by a PATCH) is marked, not
 * sent: a less urgent notice never follows a more urgent one.
 *
 * Checks run on start, after each write that touched a certificate (store.watch), and hourly.
 * One check at a time; each lists the certificates once, so a check costs one store read.
 */
import { setInterval, clearInterval } from 'node:timers';
import type { Certificate } from '../model/certificate.ts';
import { EVENTS, type EventBus } from '../observability/events.ts';
import type { Store } from '../store/store.ts';
import { daysUntilExpiry } from './certificates.ts';
import { type Clock, isoNow } from './context.ts';

export const EXPIRY_DEFAULTS = {
  intervalMs: 3_600_000, // 1 hour between timed checks; writes check at once
  changesPerRead: 1000, // change-log rows read per write notification
};

/** What a check decides for one certificate: the threshold to announce (if any) and those now sent. */
export interface ThresholdDecision {
  announce: number | undefined;
  markSent: number[];
}

/** Pure: the thresholds reached at `days` that `sent` does not hold yet, and which one to announce. */
export function thresholdsDue(thresholds: readonly number[], days: number, sent: ReadonlySet<number>): ThresholdDecision {
  const fresh = thresholds.filter((t) => days <= t && !sent.has(t));
  if (fresh.length === 0) return { announce: undefined, markSent: [] };
  const smallest = Math.min(...fresh);
  const smallestSent = Math.min(...sent);
  return { announce: smallest < smallestSent ? smallest : undefined, markSent: fresh };
}

/** The part of a logger the watcher uses (pino's Logger has it). */
export interface ExpiryLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

interface Sent {
  fingerprint: string;
  thresholds: Set<number>;
}

export class CertificateExpiryWatcher {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #bus: EventBus;
  readonly #log: ExpiryLog;
  readonly #intervalMs: number;
  /** cert_id → the material last seen and the thresholds already announced (or skipped) for it. */
  readonly #sent = new Map<string, Sent>();
  /** Every check and write notification runs through this chain: one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #revision = 0;
  #timer: NodeJS.Timeout | undefined;
  #unwatch: (() => void) | undefined;
  #stopped = false;

  constructor(deps: { store: Store; clock: Clock }, bus: EventBus, log: ExpiryLog, options: { intervalMs?: number } = {}) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#bus = bus;
    this.#log = log;
    this.#intervalMs = options.intervalMs ?? EXPIRY_DEFAULTS.intervalMs;
  }

  /** Checks once, then after certificate writes and on the timer. Resolves after the first check. */
  async start(): Promise<void> {
    this.#revision = await this.#store.revision();
    this.#unwatch = this.#store.watch(() => {
      // Called inside the store's write path: queue the work, never throw into it.
      this.#enqueue(() => this.#afterWrite());
    });
    this.#timer = setInterval(() => void this.check(), this.#intervalMs);
    this.#timer.unref();
    await this.check();
  }

  /** Stops the timer and the store subscription; resolves once a check in progress has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#unwatch?.();
    await this.#chain;
  }

  /** Checks every certificate now (after any check already queued). */
  check(): Promise<void> {
    return this.#enqueue(() => this.#checkAll());
  }

  #enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#stopped) return;
      try {
        await job();
      } catch (err) {
        this.#log.warn({ err }, 'certificate expiry check failed; the next one retries');
      }
    });
    this.#chain = run;
    return run;
  }

  /** A write happened: check only if it touched a certificate (the change log says). */
  async #afterWrite(): Promise<void> {
    const changes = await this.#store.changesSince(this.#revision, EXPIRY_DEFAULTS.changesPerRead);
    if (changes.length === 0) return;
    this.#revision = changes.at(-1)!.revision;
    // A full page may hide more changes: check anyway rather than read the rest of the log.
    if (changes.length === EXPIRY_DEFAULTS.changesPerRead || changes.some((c) => c.kind === 'certificate')) await this.#checkAll();
  }

  async #checkAll(): Promise<void> {
    const now = this.#clock.now();
    const certificates = (await this.#store.list<Certificate>('certificate')).items.map((r) => r.body);
    const present = new Set<string>();
    for (const c of certificates) {
      present.add(c.cert_id);
      let sent = this.#sent.get(c.cert_id);
      if (!sent || sent.fingerprint !== c.fingerprint_sha256) {
        sent = { fingerprint: c.fingerprint_sha256, thresholds: new Set() };
        this.#sent.set(c.cert_id, sent);
      }
      const days = daysUntilExpiry(c.valid_until, now);
      const { announce, markSent } = thresholdsDue(c.notify_before_expiry_days, days, sent.thresholds);
      for (const t of markSent) sent.thresholds.add(t);
      if (announce === undefined) continue;
      this.#log.info({ cert_id: c.cert_id, days_until_expiry: days, threshold_days: announce }, 'certificate expiring');
      this.#bus.emit({
        type: EVENTS.CERTIFICATE_EXPIRING,
        at: isoNow(this.#clock),
        data: {
          cert_id: c.cert_id,
          name: c.name,
          domains: [...c.domains],
          valid_until: c.valid_until,
          days_until_expiry: days,
          threshold_days: announce,
          fingerprint_sha256: c.fingerprint_sha256,
        },
      });
    }
    // A deleted certificate's memory goes with it (an id reused later is a new certificate).
    for (const id of this.#sent.keys()) if (!present.has(id)) this.#sent.delete(id);
  }
}
