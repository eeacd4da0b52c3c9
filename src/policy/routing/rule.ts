/**
 * One routing rule compiled (conditions, action, transforms), and the checks the API runs before
 * storing a rule — the same code, so what the API accepts always compiles.
 *
 * Condition semantics (seed 000 §6, FiberLB's RuleCondition; every given condition must hold):
 * - `hosts`: any of them. `api.example.com` is exact (without case; a trailing dot ignored);
 *   `*.example.com` matches any name that ends in `.example.com`, at any depth (`a.example.com`,
 *   `a.b.example.com`), but not `example.com` itself. Any depth, because a routing rule sends
 *   traffic somewhere rather than vouching for a name as a certificate does (TLS wildcards, and
 *   Fulcrum's SNI routes, cover one label).
 * - `paths`: any of the globs (`*` matches any characters, `/` included; the whole path);
 *   `path_prefix`: the path starts with it; `path_exact`: the path is it; `path_regex`: the regex
 *   (flags `u`, unanchored: write `^`/`$`) is found in the path. The path is the one the client
 *   sent, without the query, not decoded.
 * - `methods`: any of them (exact, upper case; HEAD is not GET).
 * - `headers`: for each name (without case), the field has one of the values (exact, with case);
 *   a field sent several times must have one of its values equal to one of them.
 * - `query`: for each name, a parameter of that name (decoded: `%xx` and `+`) has that value; a
 *   parameter without `=` has the value ''.
 * - `source_ips`: the client address is in one of the CIDRs (IPv4, IPv6, IPv4-mapped IPv6).
 * - `listener_ids`: the request came on one of those listeners.
 */
import type { FieldProblem } from '../../control/errors.ts';
import { HTTP_METHODS, type RuleAction, type RuleMatch, type RuleTransforms } from '../../model/routing-rule.ts';
import { CidrSet, type Network, parseNetwork } from '../cidr.ts';
import { Glob } from '../glob.ts';
import { checkTransforms, type CompiledTransforms, FIELD_VALUE_REASON, hasControlCharacter, RULE_REGEX_FLAGS } from './transforms.ts';

/** Statuses whose answers carry no content. */
export const NO_CONTENT: ReadonlySet<number> = new Set([204, 205, 304]);
import { compileWeightedRoute, type WeightedChoice } from './weighted.ts';

/** What a rule is made of, as the API receives it (create, replace) or the store holds it. */
export interface RuleBody {
  match: RuleMatch;
  action: RuleAction;
  transforms?: RuleTransforms;
}

export const REDIRECT_STATUSES = [301, 302, 303, 307, 308] as const;
export type RedirectStatus = (typeof REDIRECT_STATUSES)[number];
export const DEFAULT_REDIRECT_STATUS: RedirectStatus = 302;
export const DEFAULT_CONTENT_TYPE = 'text/plain';

export type CompiledAction =
  | { readonly type: 'FORWARD'; readonly poolId: string }
  | { readonly type: 'WEIGHTED_ROUTE'; readonly choice: WeightedChoice<string> }
  | { readonly type: 'REDIRECT'; readonly url: string; readonly statusCode: RedirectStatus; readonly keepPathAndQuery: boolean }
  | { readonly type: 'FIXED_RESPONSE'; readonly statusCode: number; readonly contentType: string; readonly body: string };

/** A host pattern, normalized: lower case, no trailing dot, IPv6 without brackets. */
export interface HostPattern {
  /** `*.example.com` → true, with `name` 'example.com'. */
  readonly wildcard: boolean;
  readonly name: string;
}

/** The path conditions of a rule; null fields are absent. */
export interface PathCondition {
  readonly exact: string | null;
  readonly prefix: string | null;
  readonly globs: readonly Glob[] | null;
  readonly regex: RegExp | null;
  /** A literal every path the regex matches starts with ('' when none can be told). */
  readonly regexPrefix: string;
}

export interface HeaderCondition {
  /** Lower case. */
  readonly name: string;
  readonly values: ReadonlySet<string>;
}

export interface CompiledRule {
  readonly hosts: readonly HostPattern[] | null;
  readonly path: PathCondition | null;
  /** Bit i: HTTP_METHODS[i] is accepted; 0 when the rule names no method (any). */
  readonly methods: number;
  readonly headers: readonly HeaderCondition[] | null;
  readonly query: readonly (readonly [name: string, value: string])[] | null;
  readonly sources: CidrSet | null;
  readonly listeners: ReadonlySet<string> | null;
  readonly action: CompiledAction;
  readonly transforms: CompiledTransforms;
}

const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const HOST_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const IPV6ISH = /^[0-9a-f:.]+$/;

/** A host pattern normalized, or why it is not one. */
export function parseHostPattern(text: string): HostPattern | string {
  let s = text.toLowerCase();
  const wildcard = s.startsWith('*.');
  if (wildcard) s = s.slice(2);
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const ipv6 = s.includes(':');
  if (ipv6 ? !IPV6ISH.test(s) || wildcard : !HOST_NAME.test(s) || s.length > 253) {
    return `'${text}' is not a host name or a '*.' wildcard of one (e.g. api.example.com, *.example.com; omit hosts to match any host)`;
  }
  return { wildcard, name: s };
}

/** The request's host as host patterns are kept: lower case, no trailing dot, no IPv6 brackets. */
export function normalizeHost(host: string): string {
  let h = host;
  for (let i = 0; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      h = h.toLowerCase();
      break;
    }
  }
  if (h.charCodeAt(h.length - 1) === 46 /* . */) h = h.slice(0, -1);
  if (h.charCodeAt(0) === 91 /* [ */ && h.charCodeAt(h.length - 1) === 93) h = h.slice(1, -1);
  return h;
}

const REGEX_SYNTAX = '\\^$.|?*+()[]{}';
const ESCAPED_LITERALS = '/.-\\^$|?*+()[]{}';

/**
 * A literal every match of `source` must start the path with: the characters after a leading `^`
 * up to the first piece of regex syntax (a quantified last character dropped), or '' when the
 * regex is not anchored or has a top-level alternation (`^/a|/b`). Lets an index file a regex rule
 * under a path prefix instead of testing it on every request.
 */
export function regexLiteralPrefix(source: string): string {
  if (source.charCodeAt(0) !== 94 /* ^ */ || hasTopLevelAlternation(source)) return '';
  let out = '';
  let i = 1;
  while (i < source.length) {
    const c = source[i]!;
    let literal: string;
    let step: number;
    if (c === '\\') {
      const n = source[i + 1];
      if (n === undefined || !ESCAPED_LITERALS.includes(n)) break;
      literal = n;
      step = 2;
    } else if (REGEX_SYNTAX.includes(c) || c.charCodeAt(0) > 127) {
      break;
    } else {
      literal = c;
      step = 1;
    }
    const next = source[i + step];
    if (next !== undefined && '?*+{'.includes(next)) break;
    out += literal;
    i += step;
  }
  return out;
}

function hasTopLevelAlternation(source: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}

/** `name=value&…` as a map from decoded names to their decoded values, in order. */
export function parseQuery(query: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (query === '') return out;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeQueryPart(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : decodeQueryPart(pair.slice(eq + 1));
    const list = out.get(name);
    if (list) list.push(value);
    else out.set(name, [value]);
  }
  return out;
}

function decodeQueryPart(s: string): string {
  const plain = s.includes('+') ? s.replaceAll('+', ' ') : s;
  if (!plain.includes('%')) return plain;
  try {
    return decodeURIComponent(plain);
  } catch {
    return plain; // malformed %-escapes stay as sent
  }
}

const METHOD_BIT = new Map<string, number>(HTTP_METHODS.map((m, i) => [m, 1 << i]));

/** Fields of the action each type uses; any other given field is refused (it would be ignored). */
const ACTION_FIELDS: Record<RuleAction['type'], readonly string[]> = {
  FORWARD: ['pool_id'],
  WEIGHTED_ROUTE: ['targets'],
  REDIRECT: ['url', 'status_code', 'keep_path_and_query'],
  FIXED_RESPONSE: ['status_code', 'content_type', 'body'],
};

function compileAction(a: RuleAction, problems: FieldProblem[]): CompiledAction | null {
  const before = problems.length;
  for (const key of Object.keys(a)) {
    if (key !== 'type' && a[key as keyof RuleAction] !== undefined && !ACTION_FIELDS[a.type].includes(key)) {
      problems.push({ field: `action.${key}`, reason: `not used by a ${a.type} action (it takes ${ACTION_FIELDS[a.type].join(', ')})` });
    }
  }
  switch (a.type) {
    case 'FORWARD':
      if (a.pool_id === undefined) problems.push({ field: 'action.pool_id', reason: 'a FORWARD action needs the pool to forward to' });
      return problems.length > before ? null : { type: 'FORWARD', poolId: a.pool_id! };
    case 'WEIGHTED_ROUTE': {
      const targets = a.targets ?? [];
      if (targets.length === 0) problems.push({ field: 'action.targets', reason: 'a WEIGHTED_ROUTE action needs targets: [{pool_id, weight}, …]' });
      else if (!targets.some((t) => t.weight > 0)) problems.push({ field: 'action.targets', reason: 'every weight is 0: give some target a weight above 0' });
      const seen = new Set<string>();
      targets.forEach((t, i) => {
        if (seen.has(t.pool_id)) problems.push({ field: `action.targets[${i}].pool_id`, reason: `'${t.pool_id}' is listed twice: give it one target with the summed weight` });
        seen.add(t.pool_id);
      });
      return problems.length > before ? null : { type: 'WEIGHTED_ROUTE', choice: compileWeightedRoute(targets) };
    }
    case 'REDIRECT': {
      const status = a.status_code ?? DEFAULT_REDIRECT_STATUS;
      if (!(REDIRECT_STATUSES as readonly number[]).includes(status)) {
        problems.push({ field: 'action.status_code', reason: `a redirect's status is one of ${REDIRECT_STATUSES.join(', ')} (default ${DEFAULT_REDIRECT_STATUS}), not ${status}` });
      }
      if (a.url === undefined) problems.push({ field: 'action.url', reason: 'a REDIRECT action needs the url to redirect to' });
      else if (!redirectUrlOk(a.url)) problems.push({ field: 'action.url', reason: `'${a.url}' is neither an absolute http(s) URL nor a path starting with / (printable ASCII: percent-encode other characters)` });
      else if (a.keep_path_and_query === true && /[?#]/.test(a.url)) {
        // The request's path and query are appended to the url (redirectLocation): a query or
        // fragment of its own would end up in the middle of the path (`/x?a=1/v2/b?c=2`).
        problems.push({ field: 'action.url', reason: `with keep_path_and_query the request's path and query are appended to the url, so it cannot have a query or fragment of its own ('${a.url}')` });
      }
      return problems.length > before
        ? null
        : { type: 'REDIRECT', url: a.url!, statusCode: status as RedirectStatus, keepPathAndQuery: a.keep_path_and_query === true };
    }
    case 'FIXED_RESPONSE': {
      if (a.status_code === undefined) problems.push({ field: 'action.status_code', reason: 'a FIXED_RESPONSE action needs the status to answer with' });
      else if (a.status_code < 200) problems.push({ field: 'action.status_code', reason: `a fixed response is final: 200–599, not ${a.status_code}` });
      if (a.content_type !== undefined && hasControlCharacter(a.content_type)) {
        problems.push({ field: 'action.content_type', reason: FIELD_VALUE_REASON });
      }
      if (a.status_code !== undefined && NO_CONTENT.has(a.status_code) && a.body !== undefined && a.body !== '') {
        problems.push({ field: 'action.body', reason: `a ${a.status_code} answer has no content (RFC 9110 §15.3.5, §15.3.6, §15.4.5)` });
      }
      return problems.length > before
        ? null
        : { type: 'FIXED_RESPONSE', statusCode: a.status_code!, contentType: a.content_type ?? DEFAULT_CONTENT_TYPE, body: a.body ?? '' };
    }
  }
}

function redirectUrlOk(url: string): boolean {
  // Printable ASCII only: a Location node cannot write fails every matching request.
  if (!/^[\x21-\x7e]+$/.test(url)) return false;
  if (url.startsWith('/')) return !url.startsWith('//');
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * Where a REDIRECT sends a request: its url, or with `keep_path_and_query` the url (its trailing
 * slash dropped) followed by the request's path and query — `https://new.example.com` and
 * `/v2/a?x=1` give `https://new.example.com/v2/a?x=1` (such a url has no query or fragment of its
 * own: compileAction refuses one). Without it the url is used as it is.
 */
export function redirectLocation(action: Extract<CompiledAction, { type: 'REDIRECT' }>, path: string, query: string): string {
  if (!action.keepPathAndQuery) return action.url;
  const base = action.url.endsWith('/') ? action.url.slice(0, -1) : action.url;
  return query === '' ? `${base}${path}` : `${base}${path}?${query}`;
}

function compileMatch(m: RuleMatch, problems: FieldProblem[]) {
  let hosts: HostPattern[] | null = null;
  if (m.hosts !== undefined) {
    hosts = [];
    m.hosts.forEach((h, i) => {
      const p = parseHostPattern(h);
      if (typeof p === 'string') problems.push({ field: `match.hosts[${i}]`, reason: p });
      else hosts!.push(p);
    });
  }
  let regex: RegExp | null = null;
  if (m.path_regex !== undefined) {
    try {
      regex = new RegExp(m.path_regex, RULE_REGEX_FLAGS);
    } catch (err) {
      problems.push({ field: 'match.path_regex', reason: `not a valid regular expression (flags '${RULE_REGEX_FLAGS}'): ${(err as Error).message}` });
    }
  }
  const pathGiven = m.paths !== undefined || m.path_prefix !== undefined || m.path_exact !== undefined || m.path_regex !== undefined;
  const path: PathCondition | null = pathGiven
    ? {
        exact: m.path_exact ?? null,
        prefix: m.path_prefix ?? null,
        globs: m.paths?.map((g) => new Glob(g)) ?? null,
        regex,
        regexPrefix: m.path_regex === undefined ? '' : regexLiteralPrefix(m.path_regex),
      }
    : null;
  let methods = 0;
  m.methods?.forEach((name, i) => {
    const bit = METHOD_BIT.get(name);
    if (bit === undefined) problems.push({ field: `match.methods[${i}]`, reason: `'${name}' is not one of ${HTTP_METHODS.join(', ')}` });
    else methods |= bit;
  });
  const headers = m.headers === undefined ? null : Object.entries(m.headers).map(([name, values]) => ({ name: name.toLowerCase(), values: new Set(values) }));
  const query = m.query === undefined ? null : Object.entries(m.query);
  let sources: CidrSet | null = null;
  if (m.source_ips !== undefined) {
    const networks: Network[] = [];
    m.source_ips.forEach((c, i) => {
      const n = parseNetwork(c);
      if (typeof n === 'string') problems.push({ field: `match.source_ips[${i}]`, reason: n });
      else networks.push(n);
    });
    sources = new CidrSet(networks);
  }
  const listeners = m.listener_ids === undefined ? null : new Set(m.listener_ids);
  return { hosts, path, methods, headers, query, sources, listeners };
}

/** A rule compiled, or every problem that keeps it from compiling (fields named as in the API body). */
export function compileRule(body: RuleBody): CompiledRule | FieldProblem[] {
  const problems: FieldProblem[] = [];
  const match = compileMatch(body.match, problems);
  const action = compileAction(body.action, problems);
  const transforms = checkTransforms(body.transforms ?? {});
  problems.push(...transforms.problems);
  if (problems.length > 0) return problems;
  return { ...match, action: action!, transforms: transforms.transforms };
}

/** What the API refuses in a rule before storing it ([] when it is fine): regexes, url_rewrite, template variables, host patterns, CIDRs, action consistency. */
export function checkRule(body: RuleBody): FieldProblem[] {
  const r = compileRule(body);
  return Array.isArray(r) ? r : [];
}
