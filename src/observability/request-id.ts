import { randomUUID } from 'node:crypto';

/** What a client may send as X-Request-ID: short, and safe to echo in headers, bodies and logs. */
const ACCEPTED = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's request id when it is acceptable, otherwise a new one. Used by the API and the data plane. */
export function requestId(given: string | string[] | undefined): string {
  return typeof given === 'string' && ACCEPTED.test(given) ? given : `req-${randomUUID()}`;
}
