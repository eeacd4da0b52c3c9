import { policiesNamingPools } from './routing-rules.ts';
import type { Backend } from '../model/backend.ts';
import { DEFAULT_SCOPE_ID, isoSeconds } from '../model/common.ts';
import { type HealthCheck, type HealthCheckInput, redactHealthCheck } from '../model/health-check.ts';
import type { Listener } from '../model/listener.ts';
import type { LoadBalancer } from '../model/load-balancer.ts';
import {
  type AlgorithmUpdate,
  type Pool,
  POOL_DEFAULTS,
  type PoolCreate,
  type PoolPatch,
} from '../model/pool.ts';
import type { WriteTx } from '../store/store.ts';
import { checkBackendTls, effectiveBackendTls, effectiveProxyProtocol, proxyProtocolInput } from './backend-tls.ts';
import { liveView } from './backend-view.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, type FieldProblem, notFound, validationError } from './errors.ts';
import { checkHealthCheck, keepRedactedSecrets, resolveHealthCheck, slowerDetectionWarning } from './health-checks.ts';
import { allocateId } from './ids.ts';

export interface PoolView extends Pool {
  /** ACTIVE while at least one backend can take a request; UNAVAILABLE when the pool answers 503. */
  status: 'ACTIVE' | 'UNAVAILABLE';
  status_message: string | null;
  backend_count: number;
  usable_backends: number;
  circuit_breaker_state: { state: string; opened_at: string | null; requests: number; error_rate_percent: number; slow_call_rate_percent: number } | null;
}

/** Domain rules over a whole pool, after defaults. */
function checkPool(pool: Pool, healthCheckPrefix = 'health_check.'): FieldProblem[] {
  const problems: FieldProblem[] = [...checkBackendTls(pool.backend_tls, 'backend_tls.')];
  if ((pool.proxy_protocol ?? 'NONE') !== 'NONE' && pool.backend_tls?.http2) {
    problems.push({ field: 'proxy_protocol', reason: 'PROXY protocol to HTTP/2 backends is not supported (their connections are shared by every client)' });
  }
  if (pool.health_check) problems.push(...checkHealthCheck(pool.health_check, healthCheckPrefix));
  const sp = pool.session_persistence;
  if (sp.enabled && sp.type === undefined) {
    problems.push({ field: 'session_persistence.type', reason: 'required when session persistence is enabled' });
  }
  if (sp.enabled && sp.type === 'APP_COOKIE' && sp.app_cookie_name === undefined && sp.cookie_name === undefined) {
    problems.push({ field: 'session_persistence.app_cookie_name', reason: 'required for APP_COOKIE: the application cookie to follow' });
  }
  const key = pool.algorithm_config.hash_key;
  if (key && (key.header === undefined) === (key.cookie === undefined)) {
    problems.push({ field: 'algorithm_config.hash_key', reason: 'give exactly one of header or cookie' });
  }
  if (key && pool.algorithm !== 'CONSISTENT_HASH') {
    problems.push({ field: 'algorithm_config.hash_key', reason: 'applies only to the CONSISTENT_HASH algorithm' });
  }
  return problems;
}

/** `healthCheckPrefix` is '' when the request body is the health check itself. */
function assertValid(pool: Pool, healthCheckPrefix?: string): void {
  const problems = checkPool(pool, healthCheckPrefix);
  if (problems.length > 0) throw validationError(problems);
}

export class PoolService {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  async #view(pool: Pool): Promise<PoolView> {
    const backends = (await this.#ctx.store.list<Backend>('backend', { parentId: pool.pool_id })).items.map((r) => r.body);
    const now = this.#ctx.clock.now();
    // Usable: what the balancer may pick (enabled, healthy, weight above 0, below max_connections).
    const usable = backends.filter((b) => {
      if (b.admin_status !== 'ENABLED') return false;
      const live = liveView(pool, b, this.#ctx.state, now);
      const max = b.max_connections ?? pool.connection_limits.max_connections_per_backend ?? Infinity;
      return live.status === 'HEALTHY' && live.effective_weight > 0 && live.active_connections < max;
    }).length;
    const breaker = this.#ctx.dataPlane.breakerView(pool.pool_id);
    let message: string | null = null;
    if (breaker?.state === 'OPEN') message = 'the circuit breaker is open: requests are answered 503 until it recovers';
    else if (backends.length === 0) message = 'the pool has no backends: requests are answered 503';
    else if (usable === 0) message = 'no backend is usable (none enabled, healthy and below its connection limit): requests are answered 503';
    return {
      ...pool,
      health_check: redactHealthCheck(pool.health_check),
      status: message === null ? 'ACTIVE' : 'UNAVAILABLE',
      status_message: message,
      backend_count: backends.length,
      usable_backends: usable,
      circuit_breaker_state: breaker && { ...breaker, opened_at: breaker.opened_at === null ? null : isoSeconds(breaker.opened_at) },
    };
  }

  async get(poolId: string): Promise<PoolView> {
    const found = await this.#ctx.store.get<Pool>('pool', poolId);
    if (!found) throw notFound.pool(poolId);
    return this.#view(found.body);
  }

  async list(query: { page?: number; per_page?: number }) {
    const p = paging(query);
    const { items, total } = await this.#ctx.store.list<Pool>('pool', { limit: p.limit, offset: p.offset });
    return { pools: await Promise.all(items.map((r) => this.#view(r.body))), pagination: p.block(total) };
  }

  async create(input: PoolCreate): Promise<PoolView> {
    const now = isoNow(this.#ctx.clock);
    const pool = await writeAndApply(this.#ctx, async (tx) => {
      let scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
      if (input.load_balancer_id !== undefined) {
        const lb = await tx.get<LoadBalancer>('load_balancer', input.load_balancer_id);
        if (!lb) throw notFound.loadBalancer(input.load_balancer_id);
        const mismatch: FieldProblem[] = [];
        if (input.org_id !== undefined && input.org_id !== lb.scope.org_id) mismatch.push({ field: 'org_id', reason: `must match the load balancer's (${lb.scope.org_id})` });
        if (input.project_id !== undefined && input.project_id !== lb.scope.project_id) mismatch.push({ field: 'project_id', reason: `must match the load balancer's (${lb.scope.project_id})` });
        if (mismatch.length > 0) throw validationError(mismatch);
        scope = lb.scope;
      }
      const aliasProblems: FieldProblem[] = [];
      const proxyProtocol = proxyProtocolInput(input, aliasProblems);
      if (aliasProblems.length > 0) throw validationError(aliasProblems);
      const id = await allocateId('pool', input.name, async (c) => (await tx.get('pool', c)) !== undefined, this.#ctx.random, ['pool']);
      const pool: Pool = {
        pool_id: id,
        name: input.name,
        description: input.description ?? null,
        algorithm: input.algorithm ?? POOL_DEFAULTS.algorithm,
        algorithm_config: input.algorithm_config ?? {},
        health_check: input.health_check ? resolveHealthCheck(keepRedactedSecrets(input.health_check, null)) : null,
        session_persistence: { ...POOL_DEFAULTS.session_persistence, ...input.session_persistence },
        connection_limits: { ...POOL_DEFAULTS.connection_limits, ...input.connection_limits },
        circuit_breaker: { ...POOL_DEFAULTS.circuit_breaker, ...input.circuit_breaker },
        passive_health: { enabled: true, ...input.passive_health },
        backend_tls: input.backend_tls ?? null,
        proxy_protocol: proxyProtocol ?? 'NONE',
        on_marked_down_action: input.on_marked_down_action ?? 'NONE',
        retries: input.retries ?? POOL_DEFAULTS.retries,
        load_balancer_id: input.load_balancer_id ?? null,
        ...scope,
        created_at: now,
        updated_at: now,
        version: 0,
      };
      assertValid(pool);
      return (await tx.put('pool', id, pool.load_balancer_id, scope, pool, 'absent')).body;
    });
    return this.#view(pool);
  }

  /** Reads, changes and writes one pool in one transaction, checking the expected version. */
  async #update(
    poolId: string,
    expect: ReturnType<typeof expectedVersion>,
    change: (pool: Pool, tx: WriteTx) => Promise<Pool> | Pool,
    healthCheckPrefix?: string,
  ) {
    return writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Pool>('pool', poolId);
      if (!found) throw notFound.pool(poolId);
      const before = found.body;
      const after = await change(structuredClone(before), tx);
      after.updated_at = isoNow(this.#ctx.clock);
      assertValid(after, healthCheckPrefix);
      // Backends inherit backend_tls and proxy_protocol: the combination must hold for each.
      const clash = (await tx.list<Backend>('backend', { parentId: poolId })).items.find(
        (b) => effectiveProxyProtocol(after, b.body) !== 'NONE' && effectiveBackendTls(after, b.body).http2,
      );
      if (clash) {
        throw validationError([
          { field: 'backend_tls.http2', reason: `backend '${clash.id}' sends the PROXY protocol, which HTTP/2 to backends does not support (their connections are shared by every client)` },
        ]);
      }
      const stored = await tx.put('pool', poolId, found.parentId, found.scope, after, expect);
      return { before, after: stored.body };
    });
  }

  async patch(poolId: string, input: PoolPatch, ifMatch: string | undefined): Promise<PoolView> {
    const { version, ...fields } = input;
    const { after } = await this.#update(poolId, expectedVersion(ifMatch, version), (pool) => {
      if (fields.name !== undefined) pool.name = fields.name;
      if (fields.description !== undefined) pool.description = fields.description;
      if (fields.algorithm !== undefined) pool.algorithm = fields.algorithm;
      if (fields.retries !== undefined) pool.retries = fields.retries;
      // Nested objects merge: a PATCH names only the fields it changes.
      if (fields.algorithm_config !== undefined) pool.algorithm_config = { ...pool.algorithm_config, ...fields.algorithm_config };
      if (fields.session_persistence !== undefined) pool.session_persistence = { ...pool.session_persistence, ...fields.session_persistence };
      if (fields.connection_limits !== undefined) pool.connection_limits = { ...pool.connection_limits, ...fields.connection_limits };
      if (fields.circuit_breaker !== undefined) pool.circuit_breaker = { ...pool.circuit_breaker, ...fields.circuit_breaker };
      const aliasProblems: FieldProblem[] = [];
      const proxyProtocol = proxyProtocolInput(fields, aliasProblems);
      if (aliasProblems.length > 0) throw validationError(aliasProblems);
      if (proxyProtocol !== undefined) pool.proxy_protocol = proxyProtocol ?? 'NONE';
      if (fields.on_marked_down_action !== undefined) pool.on_marked_down_action = fields.on_marked_down_action;
      if (fields.backend_tls !== undefined) pool.backend_tls = fields.backend_tls === null ? null : { ...pool.backend_tls, ...fields.backend_tls };
      if (fields.passive_health !== undefined) pool.passive_health = { enabled: true, ...pool.passive_health, ...fields.passive_health };
      if (fields.health_check !== undefined) {
        pool.health_check =
          fields.health_check === null ? null : resolveHealthCheck(keepRedactedSecrets(fields.health_check, pool.health_check), pool.health_check ?? undefined);
      }
      return pool;
    });
    return this.#view(after);
  }

  async setAlgorithm(poolId: string, input: AlgorithmUpdate, ifMatch: string | undefined) {
    const { before, after } = await this.#update(poolId, expectedVersion(ifMatch, input.version), (pool) => {
      pool.algorithm = input.algorithm;
      if (input.algorithm_config !== undefined) pool.algorithm_config = input.algorithm_config;
      return pool;
    });
    return {
      pool_id: poolId,
      algorithm: after.algorithm,
      algorithm_config: after.algorithm_config,
      previous_algorithm: before.algorithm,
      updated_at: after.updated_at,
      version: after.version,
      message:
        before.algorithm === after.algorithm
          ? 'Algorithm unchanged; its configuration was applied.'
          : 'Algorithm change applied. Traffic distribution will adjust gradually.',
    };
  }

  async getHealthCheck(poolId: string) {
    const found = await this.#ctx.store.get<Pool>('pool', poolId);
    if (!found) throw notFound.pool(poolId);
    const pool = found.body;
    const { items } = await this.#ctx.store.list<Backend>('backend', { parentId: poolId });
    const now = this.#ctx.clock.now();
    let healthy = 0;
    let unhealthy = 0;
    let lastAt = 0;
    const durations: number[] = [];
    for (const b of items) {
      const live = liveView(pool, b.body, this.#ctx.state, now);
      if (live.health_check_status === 'HEALTHY') healthy++;
      else if (live.health_check_status === 'UNHEALTHY') unhealthy++;
      const last = this.#ctx.state.record(b.id).lastCheck;
      if (last) {
        lastAt = Math.max(lastAt, last.at);
        durations.push(last.durationMs);
      }
    }
    const avg = durations.length === 0 ? null : Math.round((durations.reduce((a, b) => a + b, 0) / durations.length) * 100) / 100;
    return {
      pool_id: poolId,
      health_check: redactHealthCheck(pool.health_check),
      stats: { last_check_time: lastAt === 0 ? null : isoSeconds(lastAt), healthy_backends: healthy, unhealthy_backends: unhealthy, avg_check_duration_ms: avg },
      version: found.version,
    };
  }

  async putHealthCheck(poolId: string, input: HealthCheckInput, ifMatch: string | undefined) {
    const { before, after } = await this.#update(
      poolId,
      expectedVersion(ifMatch, undefined),
      (pool) => {
        pool.health_check = resolveHealthCheck(keepRedactedSecrets(input, pool.health_check));
        return pool;
      },
      '',
    );
    const warning = slowerDetectionWarning(before.health_check, after.health_check as HealthCheck);
    return {
      pool_id: poolId,
      health_check: redactHealthCheck(after.health_check),
      updated_at: after.updated_at,
      version: after.version,
      message: 'Health check updated. New configuration effective immediately.',
      ...(warning ? { warning } : {}),
    };
  }

  async delete(poolId: string, force: boolean) {
    const { removed, ...result } = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Pool>('pool', poolId);
      if (!found) throw notFound.pool(poolId);
      const users = (await tx.list<Listener>('listener')).items.filter(
        (l) => l.body.default_pool_id === poolId || (l.body.sni_routes ?? []).some((r) => r.pool_id === poolId),
      );
      if (users.length > 0) {
        throw new FulcrumError('POOL_IN_USE', `Pool '${poolId}' is used by ${users.length} listener(s) (as default pool or in sni_routes); point them elsewhere first`, {
          pool_id: poolId,
          listener_ids: users.map((l) => l.id),
        });
      }
      const named = await policiesNamingPools(tx, new Set([poolId]));
      if (named.routing_rule_ids.length > 0 || named.rate_limit_ids.length > 0) {
        throw new FulcrumError(
          'POOL_IN_USE',
          `Pool '${poolId}' is named by ${named.routing_rule_ids.length} routing rule(s) and ${named.rate_limit_ids.length} rate limit(s); change or delete them first`,
          { pool_id: poolId, ...named },
        );
      }
      const backends = (await tx.list<Backend>('backend', { parentId: poolId })).items;
      if (backends.length > 0 && !force) {
        throw new FulcrumError('POOL_NOT_EMPTY', `Pool '${poolId}' still has ${backends.length} backend(s); remove them or use ?force=true`, {
          pool_id: poolId,
          backend_count: backends.length,
        });
      }
      for (const b of backends) await tx.delete('backend', b.id);
      await tx.delete('pool', poolId);
      return { pool_id: poolId, status: 'DELETED', backends_removed: backends.length, removed: backends.map((b) => b.id) };
    });
    // Only after the commit: a failed delete must not have cut anyone's connections.
    const terminated = this.#ctx.state.remove(removed);
    return { ...result, connections_terminated: terminated, deleted_at: isoNow(this.#ctx.clock) };
  }
}
