import { policiesNamingPools } from './routing-rules.ts';
import { DEFAULT_SCOPE_ID } from '../model/common.ts';
import type { Listener } from '../model/listener.ts';
import type { LoadBalancer, LoadBalancerCreate, LoadBalancerPatch } from '../model/load-balancer.ts';
import type { Backend } from '../model/backend.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, notFound } from './errors.ts';
import { allocateId } from './ids.ts';
import type { Scope, WriteTx } from '../store/store.ts';

export interface LoadBalancerView extends LoadBalancer {
  status: 'ACTIVE';
  listener_ids: string[];
}

/** Load balancer names are unique within their org and project (seed 003 §3.1). */
async function assertNameFree(tx: WriteTx, name: string, scope: Scope, self: string | undefined): Promise<void> {
  const sameName = (await tx.list<LoadBalancer>('load_balancer')).items.find(
    (r) => r.id !== self && r.body.name === name && r.scope.org_id === scope.org_id && r.scope.project_id === scope.project_id,
  );
  if (sameName) {
    throw new FulcrumError('DUPLICATE_NAME', `A load balancer named '${name}' already exists in this scope: '${sameName.id}'`, {
      name,
      lb_id: sameName.id,
    });
  }
}

export class LoadBalancerService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  async #view(lb: LoadBalancer): Promise<LoadBalancerView> {
    const listeners = await this.#ctx.store.list<Listener>('listener', { parentId: lb.lb_id });
    return { ...lb, status: 'ACTIVE', listener_ids: listeners.items.map((l) => l.id) };
  }

  async get(lbId: string): Promise<LoadBalancerView> {
    const found = await this.#ctx.store.get<LoadBalancer>('load_balancer', lbId);
    if (!found) throw notFound.loadBalancer(lbId);
    return this.#view(found.body);
  }

  async list(query: { page?: number; per_page?: number }) {
    const p = paging(query);
    const { items, total } = await this.#ctx.store.list<LoadBalancer>('load_balancer', { limit: p.limit, offset: p.offset });
    return { load_balancers: await Promise.all(items.map((r) => this.#view(r.body))), pagination: p.block(total) };
  }

  async create(input: LoadBalancerCreate): Promise<LoadBalancerView> {
    const now = isoNow(this.#ctx.clock);
    const scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
    const lb = await writeAndApply(this.#ctx, async (tx) => {
      await assertNameFree(tx, input.name, scope, undefined);
      const id = await allocateId('lb', input.name, async (c) => (await tx.get('load_balancer', c)) !== undefined, this.#ctx.random, ['lb']);
      const lb: LoadBalancer = {
        lb_id: id,
        name: input.name,
        description: input.description ?? null,
        tags: input.tags ?? {},
        metadata: input.metadata ?? {},
        ...scope,
        created_at: now,
        updated_at: now,
        version: 0,
      };
      return (await tx.put('load_balancer', id, null, scope, lb, 'absent')).body;
    });
    return this.#view(lb);
  }

  async patch(lbId: string, input: LoadBalancerPatch, ifMatch: string | undefined): Promise<LoadBalancerView> {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const lb = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<LoadBalancer>('load_balancer', lbId);
      if (!found) throw notFound.loadBalancer(lbId);
      if (fields.name !== undefined) await assertNameFree(tx, fields.name, found.scope, lbId);
      const lb = { ...found.body, ...fields, updated_at: isoNow(this.#ctx.clock) } as LoadBalancer;
      return (await tx.put('load_balancer', lbId, null, found.scope, lb, expect)).body;
    });
    return this.#view(lb);
  }

  /**
   * Deletes the load balancer with its listeners (unbound) and the pools it owns. Like a pool
   * delete, it refuses while backends of those pools hold connections, unless forced.
   */
  async delete(lbId: string, force = false) {
    const { removedBackends, ...result } = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<LoadBalancer>('load_balancer', lbId);
      if (!found) throw notFound.loadBalancer(lbId);
      const listeners = (await tx.list('listener', { parentId: lbId })).items;
      const pools = (await tx.list('pool', { parentId: lbId })).items;
      const poolIds = new Set(pools.map((p) => p.id));
      const outside = (await tx.list<Listener>('listener')).items.filter(
        (l) =>
          l.parentId !== lbId &&
          ((l.body.default_pool_id !== null && poolIds.has(l.body.default_pool_id)) || (l.body.sni_routes ?? []).some((r) => poolIds.has(r.pool_id))),
      );
      if (outside.length > 0) {
        throw new FulcrumError('POOL_IN_USE', `Pools of '${lbId}' are the default pool of listeners of other load balancers`, {
          lb_id: lbId,
          listener_ids: outside.map((l) => l.id),
        });
      }
      const named = await policiesNamingPools(tx, poolIds);
      if (named.routing_rule_ids.length > 0 || named.rate_limit_ids.length > 0) {
        throw new FulcrumError('POOL_IN_USE', `Pools of '${lbId}' are named by routing rules or rate limits; change or delete them first`, { lb_id: lbId, ...named });
      }
      const removedBackends: string[] = [];
      for (const p of pools) {
        for (const b of (await tx.list<Backend>('backend', { parentId: p.id })).items) removedBackends.push(b.id);
      }
      const busy = removedBackends.filter((id) => this.#ctx.state.activeConnections(id) > 0);
      if (busy.length > 0 && !force) {
        throw new FulcrumError('BACKEND_HAS_CONNECTIONS', `Backends of '${lbId}' still have active connections; drain them or delete with ?force=true`, {
          lb_id: lbId,
          server_ids: busy,
        });
      }
      for (const l of listeners) await tx.delete('listener', l.id);
      for (const id of removedBackends) await tx.delete('backend', id);
      for (const p of pools) await tx.delete('pool', p.id);
      await tx.delete('load_balancer', lbId);
      return { lb_id: lbId, status: 'DELETED', listeners_removed: listeners.length, pools_removed: pools.length, removedBackends };
    });
    const terminated = this.#ctx.state.remove(removedBackends);
    return { ...result, backends_removed: removedBackends.length, connections_terminated: terminated, deleted_at: isoNow(this.#ctx.clock) };
  }
}
