/**
 * The routing rule matcher: built once per configuration from every routing rule, it answers, per
 * request, which enabled rule applies — the one with the lowest `priority` whose every condition
 * holds (equal priorities: the earlier in the input, i.e. the earlier created), or null (the
 * listener's default pool). Condition semantics: `rule.ts`.
 *
 * Why an index: scanning every rule's conditions per request costs O(rules) — with 10,000 rules,
 * thousands of regex and glob tests for each request. Instead each rule is filed, at compile time,
 * under keys that a request can look up directly; a request only evaluates the few rules filed
 * under its own keys (the candidates), so its cost depends on how many rules could apply to it,
 * not on how many exist.
 *
 * The index, level by level (rules ranked 0..n-1 in priority order first):
 * 1. Organisation: rules of other organisations never apply (`facts.orgId`), one map lookup.
 * 2. Host: an exact-name map, a wildcard map keyed by the suffix after `*.` (walked label by label
 *    from the request host: `a.b.example.com` looks up `b.example.com`, `example.com`, `com`),
 *    and the rules without `hosts`. A rule with several hosts is filed under each.
 * 3. Path, inside each host entry: an exact-path map (`path_exact`, globs without `*`), a radix
 *    tree over literal prefixes (`path_prefix`, each glob's part before its first `*`, the literal
 *    start of an anchored `path_regex` such as `^/api/v[0-9]+` → `/api/v`), and a bucket for rules
 *    with no path condition or a regex with no literal start. A rule with several path conditions
 *    is filed under the most selective one; the others are checked on the candidate.
 * 4. Method, inside each bucket: one rank list per method (rules without `methods` in all of them).
 *
 * A request thus looks up 1 + (labels of its host) host entries, and in each: one exact-path
 * lookup, one radix walk (one map lookup and one `startsWith` per branching point along its path,
 * bounded by the longest prefix filed, not by the number of rules) and one bucket. Each list found
 * is sorted by rank; they are read in turn, each only while its ranks are below the best match
 * found so far, a rule seen twice (filed under several keys) is skipped by a per-request stamp,
 * and on each candidate only what the index did not already prove is checked: listener, headers,
 * query (parsed once per request, on first need), the path when its key does not imply it (a glob
 * with an inner `*`, a regex), then the source address. Host, method and prefix-only paths are
 * proved by the lookup itself. Compiling costs O(rules × keys) map and tree insertions.
 *
 * What stays linear: rules that share all keys (say 1,000 rules on one host and one path that
 * differ only by a header) are candidates together — each is one cheap check, in priority order,
 * stopping at the first that holds.
 */
import type { FieldProblem } from '../../control/errors.ts';
import { creationOrder } from '../../model/common.ts';
import { HTTP_METHODS, type RoutingRule } from '../../model/routing-rule.ts';
import { globKind } from '../glob.ts';
import type { RequestFacts } from '../request.ts';
import { type CompiledRule, compileRule, type HeaderCondition, normalizeHost, type PathCondition, parseQuery } from './rule.ts';

/** A matched rule with everything compiled for it: the data plane's answer. */
export interface Route extends CompiledRule {
  readonly rule: RoutingRule;
}

export interface RouteMatcher {
  /** The rule that applies, or null (the listener's default pool). */
  match(facts: RequestFacts): RoutingRule | null;
  /** The same answer with its compiled action and transforms. */
  route(facts: RequestFacts): Route | null;
  /** The enabled, valid rules in the order they win (priority, then input order). */
  readonly rules: readonly RoutingRule[];
}

export interface RouteMatcherOptions {
  /**
   * Only rules of the request's organisation apply (`rule.org_id === facts.orgId`). Default true;
   * false when the caller compiles one organisation's rules and facts may not carry it.
   */
  byOrganisation?: boolean;
  /**
   * A rule that cannot compile is skipped and reported here (the rest still route: one bad rule
   * does not take the configuration down). Without it, compileRoutes throws. The API refuses such
   * rules first (`checkRule`), so either means a stored rule predates a check.
   */
  onInvalid?: (rule: RoutingRule, problems: FieldProblem[]) => void;
}

const OTHER_METHOD = HTTP_METHODS.length;
const METHOD_SLOTS = HTTP_METHODS.length + 1;
const METHOD_SLOT = new Map<string, number>(HTTP_METHODS.map((m, i) => [m, i]));

/** Ranks filed under one key, sorted; after `seal`, one list per method slot. */
class Bucket {
  readonly #ranks: number[] = [];
  readonly #masks: number[] = [];
  lists: readonly (readonly number[])[] = [];

  add(rank: number, methods: number): void {
    if (this.#ranks.at(-1) === rank) return; // a rule filed twice under one key (two globs with one prefix)
    this.#ranks.push(rank);
    this.#masks.push(methods);
  }

  seal(): void {
    if (this.#masks.every((m) => m === 0)) {
      this.lists = new Array<readonly number[]>(METHOD_SLOTS).fill(this.#ranks);
      return;
    }
    const lists: number[][] = Array.from({ length: METHOD_SLOTS }, () => []);
    this.#ranks.forEach((rank, i) => {
      const mask = this.#masks[i]!;
      for (let slot = 0; slot < METHOD_SLOTS; slot++) {
        if (mask === 0 || (slot !== OTHER_METHOD && (mask & (1 << slot)) !== 0)) lists[slot]!.push(rank);
      }
    });
    this.lists = lists;
  }
}

/** A radix tree node: the edge into it is `label`; children by the first character of theirs. */
class RadixNode {
  label: string;
  children: Map<number, RadixNode> | null = null;
  bucket: Bucket | null = null;

  constructor(label: string) {
    this.label = label;
  }
}

function radixInsert(root: RadixNode, key: string): Bucket {
  let node = root;
  let pos = 0;
  for (;;) {
    if (pos === key.length) return (node.bucket ??= new Bucket());
    const first = key.charCodeAt(pos);
    const child = node.children?.get(first);
    if (child === undefined) {
      const leaf = new RadixNode(key.slice(pos));
      (node.children ??= new Map()).set(first, leaf);
      return (leaf.bucket = new Bucket());
    }
    const label = child.label;
    let common = 0;
    while (common < label.length && pos + common < key.length && label.charCodeAt(common) === key.charCodeAt(pos + common)) common++;
    if (common < label.length) {
      // Split the edge: a new node for the common part, the old child below it.
      const middle = new RadixNode(label.slice(0, common));
      child.label = label.slice(common);
      middle.children = new Map([[child.label.charCodeAt(0), child]]);
      node.children!.set(first, middle);
      node = middle;
    } else node = child;
    pos += common;
  }
}

function radixSeal(node: RadixNode): void {
  node.bucket?.seal();
  if (node.children) for (const child of node.children.values()) radixSeal(child);
}

class PathIndex {
  readonly exact = new Map<string, Bucket>();
  readonly prefixes = new RadixNode('');
  rest: Bucket | null = null;

  seal(): void {
    for (const b of this.exact.values()) b.seal();
    radixSeal(this.prefixes);
    this.rest?.seal();
  }
}

class HostIndex {
  readonly exact = new Map<string, PathIndex>();
  readonly wildcard = new Map<string, PathIndex>();
  any: PathIndex | null = null;

  *all(): Iterable<PathIndex> {
    yield* this.exact.values();
    yield* this.wildcard.values();
    if (this.any) yield this.any;
  }
}

/** Where a rule's path condition files it, and whether the key alone proves the condition. */
interface PathKeys {
  exact: string[];
  prefix: string[];
  /** No key: the rest bucket. */
  rest: boolean;
  proved: boolean;
}

function pathKeys(pc: PathCondition | null): PathKeys {
  if (pc === null) return { exact: [], prefix: [], rest: true, proved: true };
  const families = Number(pc.exact !== null) + Number(pc.prefix !== null) + Number(pc.globs !== null) + Number(pc.regex !== null);
  const alone = families === 1;
  if (pc.exact !== null) return { exact: [pc.exact], prefix: [], rest: false, proved: alone };
  // The most selective family: the one whose shortest prefix key is longest (exact keys count as
  // infinitely long); ties go to path_prefix, then globs (first wins).
  let best: PathKeys | null = null;
  let bestScore = -1;
  if (pc.prefix !== null) {
    best = { exact: [], prefix: [pc.prefix], rest: false, proved: alone };
    bestScore = pc.prefix.length;
  }
  if (pc.globs !== null) {
    const keys: PathKeys = { exact: [], prefix: [], rest: false, proved: alone };
    let score = Infinity;
    for (const g of pc.globs) {
      const kind = globKind(g.source);
      if (kind === 'exact') keys.exact.push(g.source);
      else {
        keys.prefix.push(g.prefix);
        score = Math.min(score, g.prefix.length);
        if (kind === 'pattern') keys.proved = false;
      }
    }
    if (score > bestScore) {
      best = keys;
      bestScore = score;
    }
  }
  if (pc.regexPrefix !== '' && pc.regexPrefix.length > bestScore) {
    best = { exact: [], prefix: [pc.regexPrefix], rest: false, proved: false };
  }
  return best ?? { exact: [], prefix: [], rest: true, proved: false };
}

/** A rule as the matcher checks it: only the conditions the index does not prove. */
interface Entry {
  readonly route: Route;
  readonly listeners: ReadonlySet<string> | null;
  readonly headers: readonly HeaderCondition[] | null;
  readonly query: readonly (readonly [string, string])[] | null;
  /** null when absent or proved by the key the rule was found under. */
  readonly path: PathCondition | null;
  readonly sources: CompiledRule['sources'];
}

function pathHolds(pc: PathCondition, path: string): boolean {
  if (pc.exact !== null && path !== pc.exact) return false;
  if (pc.prefix !== null && !path.startsWith(pc.prefix)) return false;
  if (pc.globs !== null) {
    let any = false;
    for (let i = 0; i < pc.globs.length && !any; i++) any = pc.globs[i]!.test(path);
    if (!any) return false;
  }
  return pc.regex === null || pc.regex.test(path);
}

function headersHold(conditions: readonly HeaderCondition[], headers: RequestFacts['headers']): boolean {
  for (const c of conditions) {
    const v = headers[c.name];
    if (v === undefined) return false;
    if (typeof v === 'string') {
      if (!c.values.has(v)) return false;
    } else {
      let any = false;
      for (let i = 0; i < v.length && !any; i++) any = c.values.has(v[i]!);
      if (!any) return false;
    }
  }
  return true;
}

function queryHolds(conditions: readonly (readonly [string, string])[], query: Map<string, string[]>): boolean {
  for (const [name, value] of conditions) {
    const values = query.get(name);
    if (values === undefined || !values.includes(value)) return false;
  }
  return true;
}

class IndexedRouteMatcher implements RouteMatcher {
  readonly rules: readonly RoutingRule[];
  readonly #entries: readonly Entry[];
  readonly #byOrg: Map<string, HostIndex> | null;
  readonly #single: HostIndex | null;
  /** #seen[rank] === #epoch: the rule was evaluated during this request. */
  readonly #seen: Uint32Array;
  #epoch = 0;
  // Per-request state: match() runs to completion without calling out, so one set of fields serves every request.
  #best = 0;
  #slot = 0;
  #facts: RequestFacts | null = null;
  #query: Map<string, string[]> | null = null;

  constructor(entries: Entry[], byOrg: Map<string, HostIndex> | null, single: HostIndex | null) {
    this.#entries = entries;
    this.rules = entries.map((e) => e.route.rule);
    this.#byOrg = byOrg;
    this.#single = single;
    this.#seen = new Uint32Array(entries.length);
  }

  match(facts: RequestFacts): RoutingRule | null {
    return this.route(facts)?.rule ?? null;
  }

  route(facts: RequestFacts): Route | null {
    const tree = this.#byOrg !== null ? this.#byOrg.get(facts.orgId) : this.#single;
    if (tree === undefined || tree === null) return null;
    if (++this.#epoch === 0x1_0000_0000) {
      this.#seen.fill(0);
      this.#epoch = 1;
    }
    this.#best = this.#entries.length;
    this.#slot = METHOD_SLOT.get(facts.method) ?? OTHER_METHOD;
    this.#facts = facts;
    this.#query = null;
    const host = normalizeHost(facts.host);
    const exact = tree.exact.get(host);
    if (exact !== undefined) this.#searchPaths(exact, facts.path);
    if (tree.wildcard.size > 0) {
      for (let dot = host.indexOf('.'); dot >= 0; dot = host.indexOf('.', dot + 1)) {
        const p = tree.wildcard.get(host.slice(dot + 1));
        if (p !== undefined) this.#searchPaths(p, facts.path);
      }
    }
    if (tree.any !== null) this.#searchPaths(tree.any, facts.path);
    this.#facts = null;
    this.#query = null;
    return this.#best < this.#entries.length ? this.#entries[this.#best]!.route : null;
  }

  #searchPaths(p: PathIndex, path: string): void {
    const slot = this.#slot;
    if (p.exact.size > 0) {
      const b = p.exact.get(path);
      if (b !== undefined) this.#scan(b.lists[slot]!);
    }
    let node = p.prefixes;
    if (node.bucket !== null) this.#scan(node.bucket.lists[slot]!);
    let pos = 0;
    while (node.children !== null) {
      const child = node.children.get(path.charCodeAt(pos));
      if (child === undefined || !path.startsWith(child.label, pos)) break;
      pos += child.label.length;
      node = child;
      if (node.bucket !== null) this.#scan(node.bucket.lists[slot]!);
    }
    if (p.rest !== null) this.#scan(p.rest.lists[slot]!);
  }

  /** Candidates in rank order, while they could still beat the best match. */
  #scan(list: readonly number[]): void {
    const seen = this.#seen;
    const epoch = this.#epoch;
    for (let i = 0; i < list.length; i++) {
      const rank = list[i]!;
      if (rank >= this.#best) return;
      if (seen[rank] === epoch) continue;
      seen[rank] = epoch;
      if (this.#holds(this.#entries[rank]!)) {
        this.#best = rank;
        return;
      }
    }
  }

  #holds(e: Entry): boolean {
    const facts = this.#facts!;
    if (e.listeners !== null && !e.listeners.has(facts.listenerId)) return false;
    if (e.headers !== null && !headersHold(e.headers, facts.headers)) return false;
    if (e.query !== null && !queryHolds(e.query, (this.#query ??= parseQuery(facts.query)))) return false;
    if (e.path !== null && !pathHolds(e.path, facts.path)) return false;
    return e.sources === null || e.sources.contains(facts.clientIp);
  }
}

/**
 * The order routing rules are tried and listed in: priority, then creation (`created_at`, then
 * id). The matcher keeps its input order among equal priorities: give it the rules in this order.
 */
export function routingRuleOrder(a: RoutingRule, b: RoutingRule): number {
  return a.priority - b.priority || creationOrder(a, a.rule_id, b, b.rule_id);
}

/**
 * Compiles every rule into one matcher: disabled rules are left out, the rest ranked by priority
 * (a stable sort keeps the input order among equals), compiled, and filed in the index.
 */
export function compileRoutes(rules: readonly RoutingRule[], options: RouteMatcherOptions = {}): RouteMatcher {
  const byOrganisation = options.byOrganisation ?? true;
  const ordered = rules.filter((r) => r.enabled).sort((a, b) => a.priority - b.priority);
  const entries: Entry[] = [];
  const orgs = new Map<string, HostIndex>();
  const single = new HostIndex();
  for (const rule of ordered) {
    const compiled = compileRule(rule);
    if (Array.isArray(compiled)) {
      if (options.onInvalid === undefined) {
        throw new Error(`routing rule ${rule.rule_id} cannot compile: ${compiled.map((p) => `${p.field}: ${p.reason}`).join('; ')}`);
      }
      options.onInvalid(rule, compiled);
      continue;
    }
    const rank = entries.length;
    const keys = pathKeys(compiled.path);
    entries.push({
      route: { ...compiled, rule },
      listeners: compiled.listeners,
      headers: compiled.headers,
      query: compiled.query,
      path: keys.proved ? null : compiled.path,
      sources: compiled.sources,
    });
    let tree = single;
    if (byOrganisation) {
      tree = orgs.get(rule.org_id) ?? new HostIndex();
      orgs.set(rule.org_id, tree);
    }
    const targets: PathIndex[] = [];
    if (compiled.hosts === null) targets.push((tree.any ??= new PathIndex()));
    else {
      for (const h of compiled.hosts) {
        const map = h.wildcard ? tree.wildcard : tree.exact;
        let p = map.get(h.name);
        if (p === undefined) map.set(h.name, (p = new PathIndex()));
        targets.push(p);
      }
    }
    for (const p of targets) {
      for (const key of keys.exact) {
        let b = p.exact.get(key);
        if (b === undefined) p.exact.set(key, (b = new Bucket()));
        b.add(rank, compiled.methods);
      }
      for (const key of keys.prefix) radixInsert(p.prefixes, key).add(rank, compiled.methods);
      if (keys.rest) (p.rest ??= new Bucket()).add(rank, compiled.methods);
    }
  }
  for (const tree of byOrganisation ? orgs.values() : [single]) for (const p of tree.all()) p.seal();
  return new IndexedRouteMatcher(entries, byOrganisation ? orgs : null, byOrganisation ? null : single);
}
