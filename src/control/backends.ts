import { isIP } from 'node:net';
import {
  type Backend,
  BACKEND_DEFAULTS,
  type BackendCreate,
  type BackendPatch,
  type BackendStatus,
  type DrainRequest,
} from '../model/backend.ts';
import { isoSeconds } from '../model/common.ts';
import { redactHealthCheck } from '../model/health-check.ts';
import type { Pool } from '../model/pool.ts';
import type { WriteTx } from '../store/store.ts';
import { type BackendLive, effectiveHealthCheck, liveView } from './backend-view.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { checkBackendTls, effectiveBackendTls, effectiveProxyProtocol, proxyProtocolInput } from './backend-tls.ts';
import { FulcrumError, type FieldProblem, notFound, validationError } from './errors.ts';
import { checkHealthCheck, keepRedactedSecrets } from './health-checks.ts';
import { allocateId, shortSuffix } from './ids.ts';

export type BackendView = Backend & BackendLive;

function checkBackend(backend: Backend, pool: Pool): FieldProblem[] {
  const problems: FieldProblem[] = [...checkBackendTls(backend.tls, 'tls.')];
  if (effectiveProxyProtocol(pool, backend) !== 'NONE' && effectiveBackendTls(pool, backend).http2) {
    problems.push({ field: 'proxy_protocol', reason: 'PROXY protocol to HTTP/2 backends is not supported (their connections are shared by every client)' });
  }
  if (backend.hostname === null && backend.ip_address === null) {
    problems.push({ field: 'ip_address', reason: 'give ip_address or hostname: the backend needs an address' });
  }
  if (backend.ip_address !== null && isIP(backend.ip_address) === 0) {
    problems.push({ field: 'ip_address', reason: `'${backend.ip_address}' is not an IPv4 or IPv6 address` });
  } else if (backend.ip_address?.includes('%')) {
    problems.push({ field: 'ip_address', reason: `'${backend.ip_address}' has a zone id; give a global or unique-local address` });
  }
  if (backend.health_check) {
    const check = effectiveHealthCheck(pool, backend);
    if (check) problems.push(...checkHealthCheck(check, 'health_check.'));
  }
  return problems;
}

function target(b: Pick<Backend, 'ip_address' | 'hostname' | 'port'>): string {
  return `${b.ip_address ?? b.hostname}:${b.port}`;
}

async function assertUniqueTarget(tx: WriteTx, backend: Backend): Promise<void> {
  const siblings = (await tx.list<Backend>('backend', { parentId: backend.pool_id })).items;
  const clash = siblings.find((s) => s.id !== backend.server_id && target(s.body) === target(backend));
  if (clash) {
    throw new FulcrumError('DUPLICATE_BACKEND', `Pool '${backend.pool_id}' already has a backend at ${target(backend)}: '${clash.id}'`, {
      pool_id: backend.pool_id,
      server_id: clash.id,
      address: target(backend),
    });
  }
}

export class BackendService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  async #pool(poolId: string, tx?: WriteTx): Promise<Pool> {
    const found = await (tx ?? this.#ctx.store).get<Pool>('pool', poolId);
    if (!found) throw notFound.pool(poolId);
    return found.body;
  }

  #view(pool: Pool, backend: Backend): BackendView {
    return { ...backend, health_check: redactHealthCheck(backend.health_check), ...liveView(pool, backend, this.#ctx.state, this.#ctx.clock.now()) };
  }

  async get(poolId: string, serverId: string): Promise<BackendView> {
    const pool = await this.#pool(poolId);
    const found = await this.#ctx.store.get<Backend>('backend', serverId);
    if (!found || found.body.pool_id !== poolId) throw notFound.backend(poolId, serverId);
    return this.#view(pool, found.body);
  }

  async list(poolId: string, query: { status?: BackendStatus; page?: number; per_page?: number }) {
    const pool = await this.#pool(poolId);
    const p = paging(query);
    // Status is live state, so filter and count in memory; a pool holds thousands, not millions.
    const all = (await this.#ctx.store.list<Backend>('backend', { parentId: poolId })).items.map((r) => this.#view(pool, r.body));
    const summary = { total_backends: all.length, healthy: 0, unhealthy: 0, starting: 0, draining: 0, disabled: 0 };
    for (const b of all) {
      if (b.status === 'HEALTHY') summary.healthy++;
      else if (b.status === 'UNHEALTHY' || b.status === 'OFFLINE') summary.unhealthy++;
      else if (b.status === 'STARTING') summary.starting++;
      else if (b.status === 'DRAINING') summary.draining++;
      else summary.disabled++;
    }
    const matching = query.status === undefined ? all : all.filter((b) => b.status === query.status);
    return {
      backends: matching.slice(p.offset, p.offset + p.limit),
      pagination: p.block(matching.length),
      summary,
    };
  }

  async create(poolId: string, input: BackendCreate) {
    const now = isoNow(this.#ctx.clock);
    const { pool, backend } = await writeAndApply(this.#ctx, async (tx) => {
      const poolRecord = await tx.get<Pool>('pool', poolId);
      if (!poolRecord) throw notFound.pool(poolId);
      const pool = poolRecord.body;
      const aliasProblems: FieldProblem[] = [];
      const proxyProtocol = proxyProtocolInput(input, aliasProblems);
      if (aliasProblems.length > 0) throw validationError(aliasProblems);
      const name = input.name ?? input.hostname ?? input.ip_address ?? `port-${input.port}`;
      const id = await allocateId('backend', name, async (c) => (await tx.get('backend', c)) !== undefined, this.#ctx.random, ['backend']);
      const backend: Backend = {
        server_id: id,
        pool_id: poolId,
        name,
        hostname: input.hostname ?? null,
        ip_address: input.ip_address ?? null,
        port: input.port,
        weight: input.weight ?? BACKEND_DEFAULTS.weight,
        max_connections: input.max_connections ?? pool.connection_limits.max_connections_per_backend ?? null,
        metadata: input.metadata ?? {},
        health_check: input.health_check ? keepRedactedSecrets(input.health_check, null) : null,
        tls: input.tls ?? null,
        proxy_protocol: proxyProtocol ?? null,
        slow_start_seconds: input.slow_start_seconds ?? null,
        admin_status: input.admin_status ?? 'ENABLED',
        drain: null,
        org_id: pool.org_id,
        project_id: pool.project_id,
        created_at: now,
        updated_at: now,
        version: 0,
      };
      const problems = checkBackend(backend, pool);
      if (problems.length > 0) throw validationError(problems);
      await assertUniqueTarget(tx, backend);
      const stored = await tx.put('backend', id, poolId, poolRecord.scope, backend, 'absent');
      return { pool, backend: stored.body };
    });
    const view = this.#view(pool, backend);
    return {
      ...view,
      message:
        view.status === 'STARTING'
          ? 'Server registered. Will receive traffic after passing health checks.'
          : view.status === 'DISABLED'
            ? 'Server registered disabled. It receives no traffic until enabled.'
            : 'Server registered. No health check is configured, so it receives traffic now.',
    };
  }

  async patch(poolId: string, serverId: string, input: BackendPatch, ifMatch: string | undefined) {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const { pool, before, after } = await writeAndApply(this.#ctx, async (tx) => {
      const pool = await this.#pool(poolId, tx);
      const found = await tx.get<Backend>('backend', serverId);
      if (!found || found.body.pool_id !== poolId) throw notFound.backend(poolId, serverId);
      const before = found.body;
      const b = structuredClone(before);
      if (fields.name !== undefined) b.name = fields.name;
      if (fields.hostname !== undefined) b.hostname = fields.hostname;
      if (fields.ip_address !== undefined) b.ip_address = fields.ip_address;
      if (fields.port !== undefined) b.port = fields.port;
      if (fields.weight !== undefined) b.weight = fields.weight;
      if (fields.max_connections !== undefined) b.max_connections = fields.max_connections;
      if (fields.metadata !== undefined) b.metadata = fields.metadata;
      if (fields.health_check !== undefined) b.health_check = fields.health_check && keepRedactedSecrets(fields.health_check, b.health_check);
      if (fields.tls !== undefined) b.tls = fields.tls;
      const aliasProblems: FieldProblem[] = [];
      const proxyProtocol = proxyProtocolInput(fields, aliasProblems);
      if (aliasProblems.length > 0) throw validationError(aliasProblems);
      if (proxyProtocol !== undefined) b.proxy_protocol = proxyProtocol;
      if (fields.slow_start_seconds !== undefined) b.slow_start_seconds = fields.slow_start_seconds;
      if (fields.admin_status !== undefined) {
        b.admin_status = fields.admin_status;
        if (fields.admin_status !== 'DRAINING') b.drain = null;
        else if (b.drain === null) b.drain = this.#newDrain({});
      }
      b.updated_at = isoNow(this.#ctx.clock);
      const problems = checkBackend(b, pool);
      if (problems.length > 0) throw validationError(problems);
      if (target(b) !== target(before)) await assertUniqueTarget(tx, b);
      const stored = await tx.put('backend', serverId, poolId, found.scope, b, expect);
      return { pool, before, after: stored.body };
    });
    return { ...this.#view(pool, after), previous_weight: before.weight };
  }

  #newDrain(input: DrainRequest) {
    return {
      drain_id: `drain-${shortSuffix(this.#ctx.random, 8)}`,
      started_at: isoNow(this.#ctx.clock),
      timeout_seconds: input.timeout_seconds ?? BACKEND_DEFAULTS.drain_timeout_seconds,
      close_idle_connections: input.close_idle_connections ?? true,
      reason: input.reason ?? null,
    };
  }

  async drain(poolId: string, serverId: string, input: DrainRequest) {
    const backend = await writeAndApply(this.#ctx, async (tx) => {
      await this.#pool(poolId, tx);
      const found = await tx.get<Backend>('backend', serverId);
      if (!found || found.body.pool_id !== poolId) throw notFound.backend(poolId, serverId);
      const b = structuredClone(found.body);
      b.admin_status = 'DRAINING';
      b.drain = this.#newDrain(input);
      b.updated_at = b.drain.started_at;
      return (await tx.put('backend', serverId, poolId, found.scope, b, found.version)).body;
    });
    const drain = backend.drain!;
    const completion = isoSeconds(Date.parse(drain.started_at) + drain.timeout_seconds * 1000);
    return {
      server_id: serverId,
      status: 'DRAINING' as const,
      active_connections: this.#ctx.state.activeConnections(serverId),
      drain_started_at: drain.started_at,
      estimated_completion: completion,
      drain_id: drain.drain_id,
      timeout_seconds: drain.timeout_seconds,
      close_idle_connections: drain.close_idle_connections,
      reason: drain.reason,
    };
  }

  /**
   * Removes a backend whose drain completed — only if it is still in that same drain: an operator
   * who re-enabled it (or started another drain) in the meantime wins. False when it was not removed.
   */
  async removeDrained(poolId: string, serverId: string, drainId: string): Promise<boolean> {
    const removed = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Backend>('backend', serverId);
      if (!found || found.body.pool_id !== poolId || found.body.admin_status !== 'DRAINING' || found.body.drain?.drain_id !== drainId) return false;
      await tx.delete('backend', serverId, found.version);
      return true;
    });
    if (removed) this.#ctx.state.remove([serverId]);
    return removed;
  }

  async delete(poolId: string, serverId: string, force: boolean) {
    await writeAndApply(this.#ctx, async (tx) => {
      await this.#pool(poolId, tx);
      const found = await tx.get<Backend>('backend', serverId);
      if (!found || found.body.pool_id !== poolId) throw notFound.backend(poolId, serverId);
      const active = this.#ctx.state.activeConnections(serverId);
      if (active > 0 && !force) {
        throw new FulcrumError(
          'BACKEND_HAS_CONNECTIONS',
          `Backend '${serverId}' still has ${active} active connection(s); drain it first or delete with ?force=true`,
          { pool_id: poolId, server_id: serverId, active_connections: active },
        );
      }
      await tx.delete('backend', serverId, found.version);
    });
    // After the commit, so a failed delete never cuts connections.
    const terminated = this.#ctx.state.remove([serverId]);
    return { server_id: serverId, status: 'REMOVED' as const, connections_terminated: terminated, removed_at: isoNow(this.#ctx.clock) };
  }
}

