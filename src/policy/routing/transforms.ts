/**
 * A routing rule's transforms (seed 000 §6), compiled once per configuration into what a request
 * only applies: header edits in each direction and a URL rewrite.
 *
 * Header edits work on a flat `[name, value, name, value, …]` list (node's `rawHeaders`, the lists
 * the data plane forwards). A removal drops every field of that name (names compare without case,
 * RFC 9110 §5.1). An add *replaces*: any field of the same name is dropped first, then the field
 * is appended once with the configured spelling of its name — so a client cannot slip its own
 * `X-Real-IP` past a rule that sets it. Removals and adds are one pass over the list plus one push
 * per add; a name is lower-cased only when its length is one of the configured names' lengths.
 * The input list is never changed: the result is a new list, or the same list when nothing
 * applies.
 *
 * Values are templates: `${uuid}`, `${client_ip}`, `${host}`, `${path}`, `${method}`,
 * `${request_id}`, `${listener_id}`; any other `${…}` is refused at compile time. A value without
 * variables is a constant string; one with variables is a list of parts joined per request.
 * `${path}` is the path the client sent (before any rewrite), `${uuid}` one random UUID per request
 * (the same in every header of that request and its response; made only when used).
 *
 * `url_rewrite` is `"<regex> -> <replacement>"`. The regex (flags `u`, unanchored, like
 * `path_regex`) is searched in the path; the first match is replaced by the replacement, in which
 * `$1`…`$99` are groups, `$<name>` named groups, `$&` the whole match and `$$` a dollar sign. The
 * query is kept, unless the result has its own `?` (then the result's query replaces it; a bare
 * trailing `?` drops it). A result that does not start with `/` gets one. No match: the URL stays.
 */
import type { FieldProblem } from '../../control/errors.ts';
import type { RuleTransforms } from '../../model/routing-rule.ts';
import type { RequestFacts } from '../request.ts';

/** Flags of every regular expression a rule holds: Unicode-aware with strict syntax, stateless (no `g`/`y`), case-sensitive. */
export const RULE_REGEX_FLAGS = 'u';

export const TEMPLATE_VARIABLES = ['uuid', 'client_ip', 'host', 'path', 'method', 'request_id', 'listener_id'] as const;
export type TemplateVariable = (typeof TEMPLATE_VARIABLES)[number];

/**
 * What templates read of one request. Make one per request; `${uuid}` calls `newUuid` once, on
 * first use (the caller injects `crypto.randomUUID`, a test a counter).
 */
export class TransformContext {
  readonly facts: RequestFacts;
  readonly requestId: string;
  readonly #newUuid: () => string;
  #uuid: string | undefined;

  constructor(facts: RequestFacts, requestId: string, newUuid: () => string) {
    this.facts = facts;
    this.requestId = requestId;
    this.#newUuid = newUuid;
  }

  get uuid(): string {
    return (this.#uuid ??= this.#newUuid());
  }
}

/** Parts of a template: strings stand for themselves, numbers are indexes into TEMPLATE_VARIABLES. */
interface Template {
  /** The whole value when it has no variable. */
  readonly constant: string | null;
  readonly parts: readonly (string | number)[];
}

function variableValue(index: number, ctx: TransformContext): string {
  switch (index) {
    case 0:
      return ctx.uuid;
    case 1:
      return ctx.facts.clientIp;
    case 2:
      return ctx.facts.host;
    case 3:
      return ctx.facts.path;
    case 4:
      return ctx.facts.method;
    case 5:
      return ctx.requestId;
    default:
      return ctx.facts.listenerId;
  }
}

function render(t: Template, ctx: TransformContext): string {
  if (t.constant !== null) return t.constant;
  let out = '';
  for (const p of t.parts) out += typeof p === 'string' ? p : variableValue(p, ctx);
  return out;
}

/**
 * RFC 9110 §5.5: a field value carries no CR, LF or NUL, nor any other control character but HTAB.
 * Node also refuses to write a character beyond Latin-1 (0xFF) in a field: such a value would fail
 * every response it is put in, so it is refused when stored.
 */
export function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return true;
  }
  return false;
}

/** The reason given for a value `hasControlCharacter` refuses. */
export const FIELD_VALUE_REASON = 'a header value cannot hold control characters (CR, LF, NUL …) nor characters beyond Latin-1 (percent-encode them)';

/**
 * Fields Fulcrum owns: message framing and the connection (RFC 9110 §7.6.1). A rule's transforms,
 * and a rate limit's refusal headers, may not set them (a second Content-Length or a
 * Transfer-Encoding next to Fulcrum's own would make the message ambiguous to anything in between).
 */
export function isOwnedField(name: string): boolean {
  return OWNED_FIELDS.has(name.toLowerCase());
}

/** A template, or why it cannot be one. `${` always starts a variable. */
export function parseTemplate(text: string): Template | string {
  if (hasControlCharacter(text)) return FIELD_VALUE_REASON;
  const parts: (string | number)[] = [];
  let at = 0;
  for (;;) {
    const open = text.indexOf('${', at);
    if (open < 0) break;
    const close = text.indexOf('}', open + 2);
    if (close < 0) return `'\${' at ${open} is not closed by '}'`;
    const name = text.slice(open + 2, close);
    const index = (TEMPLATE_VARIABLES as readonly string[]).indexOf(name);
    if (index < 0) return `unknown variable '\${${name}}'; known: ${TEMPLATE_VARIABLES.map((v) => `\${${v}}`).join(', ')}`;
    if (open > at) parts.push(text.slice(at, open));
    parts.push(index);
    at = close + 1;
  }
  if (at < text.length) parts.push(text.slice(at));
  return { constant: parts.every((p) => typeof p === 'string') ? parts.join('') : null, parts };
}

/** Fields a rule may not add or remove: Fulcrum owns message framing and the connection (RFC 9110 §7.6.1). */
const OWNED_FIELDS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

function asciiLower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

/** One direction's header edits: drop some names, then append the set ones. */
export class HeaderEdit {
  /** Names the rule sets, as configured (what a dry run reports as `headers_added`). */
  readonly added: readonly string[];
  /** Names the rule removes, as configured. */
  readonly removed: readonly string[];
  readonly #drop: ReadonlySet<string>;
  readonly #removeOnly: ReadonlySet<string>;
  /** #dropLength[n]: some dropped name has n characters (names longer than the array are never dropped). */
  readonly #dropLength: Uint8Array;
  readonly #values: readonly Template[];
  readonly #noop: boolean;

  constructor(add: Readonly<Record<string, Template>>, remove: readonly string[]) {
    this.added = Object.keys(add);
    this.removed = [...remove];
    this.#values = this.added.map((n) => add[n]!);
    this.#removeOnly = new Set(remove.map(asciiLower));
    const drop = new Set([...this.#removeOnly, ...this.added.map(asciiLower)]);
    this.#drop = drop;
    let longest = 0;
    for (const n of drop) longest = Math.max(longest, n.length);
    this.#dropLength = new Uint8Array(longest + 1);
    for (const n of drop) this.#dropLength[n.length] = 1;
    this.#noop = drop.size === 0;
  }

  get empty(): boolean {
    return this.#noop;
  }

  #drops(name: string): boolean {
    return name.length < this.#dropLength.length && this.#dropLength[name.length] === 1 && this.#drop.has(asciiLower(name));
  }

  /** The edited list: `headers` itself when nothing applies, else a new list. */
  apply(headers: string[], ctx: TransformContext): string[] {
    if (this.#noop) return headers;
    let out: string[] | null = null;
    for (let i = 0; i < headers.length; i += 2) {
      if (this.#drops(headers[i]!)) out ??= headers.slice(0, i);
      else out?.push(headers[i]!, headers[i + 1]!);
    }
    if (this.added.length === 0) return out ?? headers;
    out ??= headers.slice();
    for (let k = 0; k < this.added.length; k++) out.push(this.added[k]!, render(this.#values[k]!, ctx));
    return out;
  }

  /** The configured removals that find a field in `headers` (what a dry run reports as `headers_removed`). */
  removedFrom(headers: readonly string[]): string[] {
    if (this.removed.length === 0) return [];
    const present = new Set<string>();
    for (let i = 0; i < headers.length; i += 2) present.add(asciiLower(headers[i]!));
    return this.removed.filter((n) => present.has(asciiLower(n)));
  }
}

/** `$` references of a replacement: strings stand for themselves, numbers are group indexes, names are named groups. */
type ReplacementPart = string | number | { readonly group: string };

export class UrlRewrite {
  readonly source: string;
  readonly regex: RegExp;
  readonly #parts: readonly ReplacementPart[];

  constructor(source: string, regex: RegExp, parts: readonly ReplacementPart[]) {
    this.source = source;
    this.regex = regex;
    this.#parts = parts;
  }

  /** The new request target (path and query), or null when the regex does not match the path. */
  rewrite(path: string, query: string): string | null {
    const m = this.regex.exec(path);
    if (m === null) return null;
    let replaced = '';
    for (const p of this.#parts) {
      if (typeof p === 'string') replaced += p;
      else if (typeof p === 'number') replaced += m[p] ?? '';
      else replaced += m.groups?.[p.group] ?? '';
    }
    let target = path.slice(0, m.index) + replaced + path.slice(m.index + m[0].length);
    if (target.charCodeAt(0) !== 47 /* / */) target = `/${target}`;
    const q = target.indexOf('?');
    if (q >= 0) return q === target.length - 1 ? target.slice(0, q) : target;
    return query === '' ? target : `${target}?${query}`;
  }
}

const REWRITE_SYNTAX = /^\s*(\S.*?)\s*->\s*(\S.*?)\s*$/s;

/** The number of capturing groups of a compiled regex, and its named groups. */
function groupsOf(regex: RegExp): { count: number; names: Set<string> } {
  const m = new RegExp(`${regex.source}|`, regex.flags).exec('')!;
  return { count: m.length - 1, names: new Set(Object.keys(m.groups ?? {})) };
}

/** Parses `"<regex> -> <replacement>"`, or says why it cannot be used. */
export function parseUrlRewrite(text: string): UrlRewrite | string {
  const syntax = REWRITE_SYNTAX.exec(text);
  if (syntax === null) return `expected "<regex> -> <replacement>", e.g. "/v2/(.*) -> /api/$1"`;
  const [, pattern, replacement] = syntax as unknown as [string, string, string];
  let regex: RegExp;
  try {
    regex = new RegExp(pattern, RULE_REGEX_FLAGS);
  } catch (err) {
    return `'${pattern}' is not a valid regular expression: ${(err as Error).message}`;
  }
  // What a request target may hold (RFC 3986 pchar, '/', '?', and %-escapes), plus '$' and the
  // '<>' of group references: anything else would be refused when the request is sent.
  if (!/^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?<>]|%[0-9A-Fa-f]{2})*$/.test(replacement)) {
    return "the replacement may hold only what a request target can (letters, digits, -._~!$&'()*+,;=:@/? and %XX escapes)";
  }
  const groups = groupsOf(regex);
  const parts: ReplacementPart[] = [];
  let literal = '';
  for (let i = 0; i < replacement.length; i++) {
    const c = replacement[i]!;
    if (c !== '$' || i === replacement.length - 1) {
      literal += c;
      continue;
    }
    const next = replacement[i + 1]!;
    let ref: ReplacementPart;
    if (next === '$') {
      literal += '$';
      i++;
      continue;
    } else if (next === '&') {
      ref = 0;
      i++;
    } else if (next >= '0' && next <= '9') {
      // As String.prototype.replace reads it: two digits when that group exists, else one.
      const two = /^\d{1,2}/.exec(replacement.slice(i + 1))![0];
      const digits = two.length === 2 && Number(two) >= 1 && Number(two) <= groups.count ? two : next;
      const n = Number(digits);
      if (n === 0 || n > groups.count) return `'$${digits}' refers to no group: the regex has ${groups.count} (write $$ for a dollar sign)`;
      ref = n;
      i += digits.length;
    } else if (next === '<') {
      const close = replacement.indexOf('>', i + 2);
      const name = close < 0 ? '' : replacement.slice(i + 2, close);
      if (!groups.names.has(name)) return `'$<${name}>' names no group of the regex`;
      ref = { group: name };
      i = close;
    } else {
      literal += c;
      continue;
    }
    if (literal !== '') parts.push(literal);
    literal = '';
    parts.push(ref);
  }
  if (literal !== '') parts.push(literal);
  return new UrlRewrite(text, regex, parts);
}

/** What a dry run reports of a rule's transforms for one request. */
export interface TransformPreview {
  headers_added: string[];
  headers_removed: string[];
  /** `"<old target> -> <new target>"`, or null when there is no rewrite or it does not match. */
  url_rewritten: string | null;
}

export class CompiledTransforms {
  readonly request: HeaderEdit;
  readonly response: HeaderEdit;
  /** null: the rule has no url_rewrite. */
  readonly urlRewrite: UrlRewrite | null;

  constructor(request: HeaderEdit, response: HeaderEdit, urlRewrite: UrlRewrite | null) {
    this.request = request;
    this.response = response;
    this.urlRewrite = urlRewrite;
  }

  /** True when applying it changes nothing: the data plane can skip every call. */
  get empty(): boolean {
    return this.request.empty && this.response.empty && this.urlRewrite === null;
  }

  applyRequest(headers: string[], ctx: TransformContext): string[] {
    return this.request.apply(headers, ctx);
  }

  applyResponse(headers: string[], ctx: TransformContext): string[] {
    return this.response.apply(headers, ctx);
  }

  /** The new request target, or null when the URL is unchanged (no rewrite, or no match). */
  rewrite(path: string, query: string): string | null {
    return this.urlRewrite === null ? null : this.urlRewrite.rewrite(path, query);
  }

  preview(headers: readonly string[], path: string, query: string): TransformPreview {
    const target = this.rewrite(path, query);
    return {
      headers_added: [...this.request.added],
      headers_removed: this.request.removedFrom(headers),
      url_rewritten: target === null ? null : `${query === '' ? path : `${path}?${query}`} -> ${target}`,
    };
  }
}

/** Problems of a rule's transforms, with fields named under `prefix` (`transforms.` in a rule). */
export function transformProblems(t: RuleTransforms, prefix = 'transforms.'): FieldProblem[] {
  return checkTransforms(t, prefix).problems;
}

/** The compiled transforms and the problems found on the way (use the transforms only when there are none). */
export function checkTransforms(t: RuleTransforms, prefix = 'transforms.'): { problems: FieldProblem[]; transforms: CompiledTransforms } {
  const problems: FieldProblem[] = [];
  const templates = (key: 'add_request_headers' | 'add_response_headers'): Record<string, Template> => {
    const out: Record<string, Template> = {};
    const seen = new Set<string>();
    for (const [name, value] of Object.entries(t[key] ?? {})) {
      const lower = name.toLowerCase();
      if (OWNED_FIELDS.has(lower)) problems.push({ field: `${prefix}${key}.${name}`, reason: `'${name}' belongs to the connection or the message framing; Fulcrum sets it` });
      if (seen.has(lower)) problems.push({ field: `${prefix}${key}.${name}`, reason: `'${name}' is set twice (names compare without case)` });
      seen.add(lower);
      const parsed = parseTemplate(value);
      if (typeof parsed === 'string') problems.push({ field: `${prefix}${key}.${name}`, reason: parsed });
      else out[name] = parsed;
    }
    return out;
  };
  const removals = (key: 'remove_request_headers' | 'remove_response_headers'): string[] => {
    const names = t[key] ?? [];
    names.forEach((name, i) => {
      const lower = name.toLowerCase();
      if (OWNED_FIELDS.has(lower) || (lower === 'host' && key === 'remove_request_headers')) {
        problems.push({ field: `${prefix}${key}[${i}]`, reason: `'${name}' belongs to the connection or the message framing; Fulcrum sets it` });
      }
    });
    return names;
  };
  const request = new HeaderEdit(templates('add_request_headers'), removals('remove_request_headers'));
  const response = new HeaderEdit(templates('add_response_headers'), removals('remove_response_headers'));
  let urlRewrite: UrlRewrite | null = null;
  if (t.url_rewrite !== undefined) {
    const parsed = parseUrlRewrite(t.url_rewrite);
    if (typeof parsed === 'string') problems.push({ field: `${prefix}url_rewrite`, reason: parsed });
    else urlRewrite = parsed;
  }
  return { problems, transforms: new CompiledTransforms(request, response, urlRewrite) };
}

/** Compiles a rule's transforms; throws an Error naming every problem (the API refuses them first, through `transformProblems`). */
export function compileTransforms(t: RuleTransforms = {}): CompiledTransforms {
  const { problems, transforms } = checkTransforms(t);
  if (problems.length > 0) throw new Error(`invalid transforms: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`);
  return transforms;
}
