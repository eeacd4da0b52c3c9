/**
 * Fulcrum's internal event bus: things that happened which something else may want to act on
 * (webhooks, in a later issue). Event names and their payloads are defined here, in one module.
 *
 * Delivery is synchronous, in subscription order, inside `emit`. A subscriber that throws (or
 * returns a promise that rejects) is logged and skipped: an event source never fails because of
 * who listens to it. A subscriber with slow work starts it and returns.
 */

import type { RateLimitTriggered } from '../policy/rate-limit.ts';

export const EVENTS = {
  /** A certificate's days_until_expiry reached one of its notify_before_expiry_days. */
  CERTIFICATE_EXPIRING: 'certificate.expiring',
  /** A rate limit refused a request (at most one per rule and client key per minute). */
  RATE_LIMIT_TRIGGERED: 'rate_limit.triggered',
} as const;

export type EventType = (typeof EVENTS)[keyof typeof EVENTS];

/** `certificate.expiring`: which certificate, how long it has left, and which threshold this is. */
export interface CertificateExpiringData {
  cert_id: string;
  name: string;
  domains: string[];
  valid_until: string;
  days_until_expiry: number;
  threshold_days: number;
  fingerprint_sha256: string;
}

/** Each event type's `data`. */
export interface EventData {
  'certificate.expiring': CertificateExpiringData;
  'rate_limit.triggered': RateLimitTriggered;
}

export interface FulcrumEvent<T extends EventType = EventType> {
  type: T;
  /** When it happened: ISO 8601 UTC. */
  at: string;
  data: EventData[T];
}

/** The part of a logger the bus uses (pino's Logger has it). */
export interface EventLog {
  error(obj: Record<string, unknown>, msg: string): void;
}

type Subscriber<T extends EventType> = (event: FulcrumEvent<T>) => void | Promise<void>;
type AnySubscriber = (event: FulcrumEvent) => void | Promise<void>;

export class EventBus {
  readonly #log: EventLog;
  readonly #byType = new Map<EventType, Set<AnySubscriber>>();
  readonly #all = new Set<AnySubscriber>();

  constructor(log: EventLog) {
    this.#log = log;
  }

  /** Subscribes to one event type; returns the unsubscribe function. */
  on<T extends EventType>(type: T, fn: Subscriber<T>): () => void {
    let set = this.#byType.get(type);
    if (!set) this.#byType.set(type, (set = new Set()));
    const sub = fn as AnySubscriber;
    set.add(sub);
    return () => {
      set.delete(sub);
    };
  }

  /** Subscribes to every event type (a webhook dispatcher filters by its own list). */
  onAny(fn: AnySubscriber): () => void {
    this.#all.add(fn);
    return () => {
      this.#all.delete(fn);
    };
  }

  emit<T extends EventType>(event: FulcrumEvent<T>): void {
    // Copies: a subscriber may unsubscribe (itself or another) while the event is delivered.
    const subscribers = [...(this.#byType.get(event.type) ?? []), ...this.#all];
    for (const fn of subscribers) {
      try {
        const out = fn(event as FulcrumEvent);
        if (out instanceof Promise) out.catch((err: unknown) => this.#failed(event, err));
      } catch (err) {
        this.#failed(event, err);
      }
    }
  }

  #failed(event: FulcrumEvent, err: unknown): void {
    this.#log.error({ err, event_type: event.type }, 'an event subscriber failed; the other subscribers still got the event');
  }
}
