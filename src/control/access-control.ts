/**
 * A listener's access list and connection throttle (seed 001 "Access List Management" and
 * "Connection Throttling"), managed as sub-resources of the listener. Both are stored on the
 * listener's body, so every change here is a listener write: it bumps the listener's `version`,
 * honours `If-Match` like a listener PATCH, and the data plane picks it up on its next sync (before
 * the API answers). What the rules mean at accept time is in `policy/access-list.ts` and
 * `policy/throttle.ts`.
 */
import { type ConnectionThrottle, type ConnectionThrottleInput, type Listener, type NetworkItem, type NetworkItemInput, THROTTLE_DEFAULTS } from '../model/listener.ts';
import { parseNetwork } from '../policy/cidr.ts';
import { type StoredResource, VersionConflict, type WriteTx } from '../store/store.ts';
import { type ControlContext, expectedVersion, isoNow, writeAndApply } from './context.ts';
import { type FieldProblem, notFound, validationError } from './errors.ts';
import { shortSuffix } from './ids.ts';

/** Items one listener's access list may hold (seed 001 has no number; this bounds a compile). */
export const MAX_NETWORK_ITEMS = 10_000;

export interface AccessListView {
  listener_id: string;
  lb_id: string;
  network_items: NetworkItem[];
}

export interface ThrottleView {
  listener_id: string;
  lb_id: string;
  connection_throttle: ConnectionThrottle | null;
}

/** An answer and the listener version it reflects, which the API sends as the `ETag`. */
export interface Versioned<T> {
  body: T;
  version: number;
}

/** New items' ids: `ni-` and a random suffix, none already in `taken` (which they join). */
function itemIds(count: number, taken: Set<string>, ctx: ControlContext): string[] {
  const ids: string[] = [];
  while (ids.length < count) {
    const id = `ni-${shortSuffix(ctx.random)}`;
    if (taken.has(id)) continue;
    taken.add(id);
    ids.push(id);
  }
  return ids;
}

/**
 * Canonical addresses for `input`, or every problem with it: an address that does not parse or has
 * host bits set, the same network twice in the body, or a network `existing` already holds. The
 * seed makes a network unique in a list whatever its type, so `10.0.0.0/8` ALLOW and DENY collide.
 */
function canonicalItems(input: readonly NetworkItemInput[], existing: readonly NetworkItem[]): { addresses: string[]; problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const addresses: string[] = [];
  const present = new Map(existing.map((item) => [item.address, item.id]));
  const inBody = new Map<string, number>();
  input.forEach((item, i) => {
    const field = `network_items[${i}].address`;
    const n = parseNetwork(item.address);
    if (typeof n === 'string') {
      problems.push({ field, reason: n });
      return;
    }
    addresses.push(n.canonical);
    const first = inBody.get(n.canonical);
    const existingId = present.get(n.canonical);
    if (first !== undefined) problems.push({ field, reason: `${n.canonical} is already given by network_items[${first}]` });
    else if (existingId !== undefined) problems.push({ field, reason: `${n.canonical} is already in the access list as item ${existingId}` });
    else inBody.set(n.canonical, i);
  });
  return { addresses, problems };
}

/** A throttle must limit something, and its exemption must stay below its cap. */
function throttleProblems(t: ConnectionThrottle): FieldProblem[] {
  if (t.max_connections === null && t.max_connection_rate === null) {
    const reason = 'a throttle needs max_connections or max_connection_rate; with neither it would limit nothing (DELETE removes the throttle)';
    return [
      { field: 'max_connections', reason },
      { field: 'max_connection_rate', reason },
    ];
  }
  if (t.max_connections !== null && t.min_connections >= t.max_connections) {
    return [
      {
        field: 'min_connections',
        reason: `${t.min_connections} must be less than max_connections (${t.max_connections}): a client with at most min_connections open is never throttled`,
      },
    ];
  }
  return [];
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class AccessControlService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  async #listener(lbId: string, listenerId: string, tx?: WriteTx): Promise<StoredResource<Listener>> {
    const view = tx ?? this.#ctx.store;
    if (!(await view.get('load_balancer', lbId))) throw notFound.loadBalancer(lbId);
    const found = await view.get<Listener>('listener', listenerId);
    if (!found || found.body.lb_id !== lbId) throw notFound.listener(lbId, listenerId);
    return found;
  }

  /**
   * Applies `change` to a copy of the listener and stores it at the version `ifMatch` names. A
   * change that throws writes nothing; one that changes nothing is not written either (no new
   * version, no data plane work), though a stale `If-Match` is still refused.
   */
  async #update<R>(lbId: string, listenerId: string, ifMatch: string | undefined, change: (l: Listener) => R): Promise<{ listener: Listener; version: number; result: R }> {
    const expect = expectedVersion(ifMatch, undefined);
    return writeAndApply(this.#ctx, async (tx) => {
      const found = await this.#listener(lbId, listenerId, tx);
      const l = structuredClone(found.body);
      const result = change(l);
      if (sameJson(l.access_list ?? [], found.body.access_list ?? []) && sameJson(l.connection_throttle ?? null, found.body.connection_throttle ?? null)) {
        if (typeof expect === 'number' && expect !== found.version) throw new VersionConflict('listener', listenerId, expect, found.version);
        return { listener: found.body, version: found.version, result };
      }
      l.updated_at = isoNow(this.#ctx.clock);
      const stored = await tx.put('listener', listenerId, lbId, found.scope, l, expect);
      return { listener: stored.body, version: stored.version, result };
    });
  }

  #accessListView(l: Listener, version: number): Versioned<AccessListView> {
    return { body: { listener_id: l.listener_id, lb_id: l.lb_id, network_items: l.access_list ?? [] }, version };
  }

  #throttleView(l: Listener, version: number): Versioned<ThrottleView> {
    return { body: { listener_id: l.listener_id, lb_id: l.lb_id, connection_throttle: l.connection_throttle ?? null }, version };
  }

  async getAccessList(lbId: string, listenerId: string): Promise<Versioned<AccessListView>> {
    const found = await this.#listener(lbId, listenerId);
    return this.#accessListView(found.body, found.version);
  }

  /** POST: the items replace the whole list. */
  async replaceAccessList(lbId: string, listenerId: string, input: NetworkItemInput[], ifMatch: string | undefined): Promise<Versioned<AccessListView>> {
    const { listener, version } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      const { addresses, problems } = canonicalItems(input, []);
      if (problems.length > 0) throw validationError(problems);
      // Ids of the list being replaced are not reused: a late DELETE of an old item must not hit a new one.
      const ids = itemIds(addresses.length, new Set((l.access_list ?? []).map((item) => item.id)), this.#ctx);
      l.access_list = addresses.map((address, i) => ({ id: ids[i]!, address, type: input[i]!.type }));
    });
    return this.#accessListView(listener, version);
  }

  /** PUT: the items are appended; none may repeat a network already listed. */
  async appendAccessList(lbId: string, listenerId: string, input: NetworkItemInput[], ifMatch: string | undefined): Promise<Versioned<AccessListView>> {
    const { listener, version } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      const existing = l.access_list ?? [];
      const { addresses, problems } = canonicalItems(input, existing);
      const total = existing.length + input.length;
      if (total > MAX_NETWORK_ITEMS) {
        problems.unshift({ field: 'network_items', reason: `the access list would hold ${total} items (${existing.length} already); at most ${MAX_NETWORK_ITEMS}` });
      }
      if (problems.length > 0) throw validationError(problems);
      const ids = itemIds(addresses.length, new Set(existing.map((item) => item.id)), this.#ctx);
      l.access_list = [...existing, ...addresses.map((address, i) => ({ id: ids[i]!, address, type: input[i]!.type }))];
    });
    return this.#accessListView(listener, version);
  }

  async clearAccessList(lbId: string, listenerId: string, ifMatch: string | undefined): Promise<Versioned<{ listener_id: string; deleted: number }>> {
    const { version, result } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      const deleted = (l.access_list ?? []).length;
      l.access_list = [];
      return deleted;
    });
    return { body: { listener_id: listenerId, deleted: result }, version };
  }

  async deleteNetworkItem(lbId: string, listenerId: string, itemId: string, ifMatch: string | undefined): Promise<Versioned<{ id: string; status: 'DELETED' }>> {
    const { version } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      const items = l.access_list ?? [];
      const at = items.findIndex((item) => item.id === itemId);
      if (at < 0) throw notFound.networkItem(lbId, listenerId, itemId);
      l.access_list = items.toSpliced(at, 1);
    });
    return { body: { id: itemId, status: 'DELETED' }, version };
  }

  async getThrottle(lbId: string, listenerId: string): Promise<Versioned<ThrottleView>> {
    const found = await this.#listener(lbId, listenerId);
    return this.#throttleView(found.body, found.version);
  }

  /** PUT: the fields given are merged over the current throttle (or the defaults when there is none). */
  async putThrottle(lbId: string, listenerId: string, input: ConnectionThrottleInput, ifMatch: string | undefined): Promise<Versioned<ThrottleView>> {
    const { listener, version } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      const merged: ConnectionThrottle = { ...(l.connection_throttle ?? THROTTLE_DEFAULTS) };
      if (input.min_connections !== undefined) merged.min_connections = input.min_connections;
      if (input.max_connections !== undefined) merged.max_connections = input.max_connections;
      if (input.max_connection_rate !== undefined) merged.max_connection_rate = input.max_connection_rate;
      if (input.rate_interval_seconds !== undefined) merged.rate_interval_seconds = input.rate_interval_seconds;
      const problems = throttleProblems(merged);
      if (problems.length > 0) throw validationError(problems);
      l.connection_throttle = merged;
    });
    return this.#throttleView(listener, version);
  }

  async deleteThrottle(lbId: string, listenerId: string, ifMatch: string | undefined): Promise<Versioned<ThrottleView>> {
    const { listener, version } = await this.#update(lbId, listenerId, ifMatch, (l) => {
      l.connection_throttle = null;
    });
    return this.#throttleView(listener, version);
  }
}
