/**
 * What the layer 7 policies (ACLs, routing rules, rate limits) see of a request: built once per
 * request by the data plane (and by the dry run from its test request), then only read.
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface RequestFacts {
  /** Upper-case method. */
  readonly method: string;
  /** The Host (or :authority) without its port, lower-case; '' when there is none. */
  readonly host: string;
  /** The path of the request target, without the query. */
  readonly path: string;
  /** The query string without its '?'; '' when there is none. */
  readonly query: string;
  /** Lower-case field names, as node gives them. */
  readonly headers: IncomingHttpHeaders;
  /** The client's address as Fulcrum sees it (a PROXY header's address included). */
  readonly clientIp: string;
  readonly listenerId: string;
  /** The tenant the listener belongs to: policies of other organisations never apply. */
  readonly orgId: string;
}

/** The first value of a header field, or undefined. */
export function headerValue(facts: RequestFacts, name: string): string | undefined {
  const v = facts.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
