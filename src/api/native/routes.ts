import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type, type Static } from 'typebox';
import { BACKEND_STATUSES, BackendCreate, BackendPatch, DrainRequest, HealthOverrideRequest, HealthResultsQuery } from '../../model/backend.ts';
import { ForceQuery, Paging, Strict, StringEnum } from '../../model/common.ts';
import { HealthCheckInput } from '../../model/health-check.ts';
import { ListenerCreate, ListenerPatch } from '../../model/listener.ts';
import { LoadBalancerCreate, LoadBalancerPatch } from '../../model/load-balancer.ts';
import { AlgorithmUpdate, PoolCreate, PoolPatch } from '../../model/pool.ts';
import type { BackendService } from '../../control/backends.ts';
import type { HealthStatusService } from '../../control/health-status.ts';
import type { CertificateService } from '../../control/certificates.ts';
import { CertificateCreate, CertificatePatch, CertificateQuery, CertificateRotate } from '../../model/certificate.ts';
import type { ListenerService } from '../../control/listeners.ts';
import type { LoadBalancerService } from '../../control/load-balancers.ts';
import type { PoolService } from '../../control/pools.ts';
import { type AccessControlService, MAX_NETWORK_ITEMS, type Versioned } from '../../control/access-control.ts';
import { ConnectionThrottleInput, NetworkItemInput } from '../../model/listener.ts';
import type { AclService } from '../../control/acls.ts';
import type { RateLimitService } from '../../control/rate-limits.ts';
import type { RoutingRuleService } from '../../control/routing-rules.ts';
import { etag, Id, ifMatch } from './versioning.ts';
import { registerRateLimitRoutes } from './rate-limit-routes.ts';
import { registerRoutingRuleRoutes } from './routing-rule-routes.ts';
import { AclCreate, AclPatch, AclQuery } from '../../model/acl.ts';

export interface NativeServices {
  pools: PoolService;
  backends: BackendService;
  loadBalancers: LoadBalancerService;
  listeners: ListenerService;
  health: HealthStatusService;
  certificates: CertificateService;
  accessControl: AccessControlService;
  acls: AclService;
  rateLimits: RateLimitService;
  routingRules: RoutingRuleService;
}

const PoolParams = Strict({ pool_id: Id });
const BackendParams = Strict({ pool_id: Id, server_id: Id });
const LbParams = Strict({ lb_id: Id });
const ListenerParams = Strict({ lb_id: Id, listener_id: Id });
const BackendQuery = Strict({ ...Paging.properties, status: Type.Optional(StringEnum(BACKEND_STATUSES)) });


const CertParams = Strict({ cert_id: Id });

export function registerNativeRoutes(api: FastifyInstance, s: NativeServices): void {
  // ── Certificates ───────────────────────────────────────────────────────────────────────
  api.post<{ Body: Static<typeof CertificateCreate> }>('/certificates', { schema: { tags: ['certificates'], body: CertificateCreate } }, async (req, reply) =>
    reply.status(201).send(etag(reply, await s.certificates.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof CertificateQuery> }>('/certificates', { schema: { tags: ['certificates'], querystring: CertificateQuery } }, async (req) =>
    s.certificates.list(req.query),
  );
  api.get<{ Params: Static<typeof CertParams> }>('/certificates/:cert_id', { schema: { tags: ['certificates'], params: CertParams } }, async (req, reply) =>
    etag(reply, await s.certificates.get(req.params.cert_id)),
  );
  api.delete<{ Params: Static<typeof CertParams> }>('/certificates/:cert_id', { schema: { tags: ['certificates'], params: CertParams } }, async (req) =>
    s.certificates.delete(req.params.cert_id),
  );
  api.patch<{ Params: Static<typeof CertParams>; Body: Static<typeof CertificatePatch> }>(
    '/certificates/:cert_id',
    { schema: { tags: ['certificates'], params: CertParams, body: CertificatePatch } },
    async (req, reply) => etag(reply, await s.certificates.patch(req.params.cert_id, req.body, ifMatch(req.headers))),
  );
  // 202 as the seed has it; on one instance the rotation is already COMPLETED when this answers.
  api.post<{ Params: Static<typeof CertParams>; Body: Static<typeof CertificateRotate> }>(
    '/certificates/:cert_id/rotate',
    { schema: { tags: ['certificates'], params: CertParams, body: CertificateRotate } },
    async (req, reply) => reply.status(202).send(await s.certificates.rotate(req.params.cert_id, req.body)),
  );
  api.get<{ Params: Static<typeof CertParams>; Querystring: Static<typeof Paging> }>(
    '/certificates/:cert_id/rotations',
    { schema: { tags: ['certificates'], params: CertParams, querystring: Paging } },
    async (req) => s.certificates.listRotations(req.params.cert_id, req.query),
  );
  const RotationParams = Strict({ cert_id: Id, rotation_id: Id });
  api.get<{ Params: Static<typeof RotationParams> }>(
    '/certificates/:cert_id/rotations/:rotation_id',
    { schema: { tags: ['certificates'], params: RotationParams } },
    async (req) => s.certificates.getRotation(req.params.cert_id, req.params.rotation_id),
  );

  // ── Health results and overrides ───────────────────────────────────────────────────────
  api.get<{ Params: Static<typeof PoolParams>; Querystring: Static<typeof HealthResultsQuery> }>(
    '/pools/:pool_id/health-check/results',
    { schema: { tags: ['health'], params: PoolParams, querystring: HealthResultsQuery } },
    async (req) => s.health.results(req.params.pool_id, req.query),
  );
  api.post<{ Params: Static<typeof BackendParams>; Body: Static<typeof HealthOverrideRequest> }>(
    '/pools/:pool_id/backends/:server_id/health-override',
    { schema: { tags: ['health'], params: BackendParams, body: HealthOverrideRequest } },
    async (req) => s.health.override(req.params.pool_id, req.params.server_id, req.body),
  );
  api.delete<{ Params: Static<typeof BackendParams> }>(
    '/pools/:pool_id/backends/:server_id/health-override',
    { schema: { tags: ['health'], params: BackendParams } },
    async (req) => s.health.clearOverride(req.params.pool_id, req.params.server_id),
  );

  // ── Pools ──────────────────────────────────────────────────────────────────────────────
  api.post<{ Body: Static<typeof PoolCreate> }>('/pools', { schema: { tags: ['pools'], body: PoolCreate } }, async (req, reply) =>
    reply.status(201).send(etag(reply, await s.pools.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof Paging> }>('/pools', { schema: { tags: ['pools'], querystring: Paging } }, async (req) =>
    s.pools.list(req.query),
  );
  api.get<{ Params: Static<typeof PoolParams> }>('/pools/:pool_id', { schema: { tags: ['pools'], params: PoolParams } }, async (req, reply) =>
    etag(reply, await s.pools.get(req.params.pool_id)),
  );
  api.patch<{ Params: Static<typeof PoolParams>; Body: Static<typeof PoolPatch> }>(
    '/pools/:pool_id',
    { schema: { tags: ['pools'], params: PoolParams, body: PoolPatch } },
    async (req, reply) => etag(reply, await s.pools.patch(req.params.pool_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof PoolParams>; Querystring: Static<typeof ForceQuery> }>(
    '/pools/:pool_id',
    { schema: { tags: ['pools'], params: PoolParams, querystring: ForceQuery } },
    async (req) => s.pools.delete(req.params.pool_id, req.query.force ?? false),
  );
  api.put<{ Params: Static<typeof PoolParams>; Body: Static<typeof AlgorithmUpdate> }>(
    '/pools/:pool_id/algorithm',
    { schema: { tags: ['pools'], params: PoolParams, body: AlgorithmUpdate } },
    async (req, reply) => etag(reply, await s.pools.setAlgorithm(req.params.pool_id, req.body, ifMatch(req.headers))),
  );
  api.get<{ Params: Static<typeof PoolParams> }>(
    '/pools/:pool_id/health-check',
    { schema: { tags: ['health checks'], params: PoolParams } },
    async (req, reply) => etag(reply, await s.pools.getHealthCheck(req.params.pool_id)),
  );
  api.put<{ Params: Static<typeof PoolParams>; Body: Static<typeof HealthCheckInput> }>(
    '/pools/:pool_id/health-check',
    { schema: { tags: ['health checks'], params: PoolParams, body: HealthCheckInput } },
    async (req, reply) => etag(reply, await s.pools.putHealthCheck(req.params.pool_id, req.body, ifMatch(req.headers))),
  );

  // ── Backends ───────────────────────────────────────────────────────────────────────────
  api.post<{ Params: Static<typeof PoolParams>; Body: Static<typeof BackendCreate> }>(
    '/pools/:pool_id/backends',
    { schema: { tags: ['backends'], params: PoolParams, body: BackendCreate } },
    async (req, reply) => reply.status(201).send(etag(reply, await s.backends.create(req.params.pool_id, req.body))),
  );
  api.get<{ Params: Static<typeof PoolParams>; Querystring: Static<typeof BackendQuery> }>(
    '/pools/:pool_id/backends',
    { schema: { tags: ['backends'], params: PoolParams, querystring: BackendQuery } },
    async (req) => s.backends.list(req.params.pool_id, req.query),
  );
  api.get<{ Params: Static<typeof BackendParams> }>(
    '/pools/:pool_id/backends/:server_id',
    { schema: { tags: ['backends'], params: BackendParams } },
    async (req, reply) => etag(reply, await s.backends.get(req.params.pool_id, req.params.server_id)),
  );
  api.patch<{ Params: Static<typeof BackendParams>; Body: Static<typeof BackendPatch> }>(
    '/pools/:pool_id/backends/:server_id',
    { schema: { tags: ['backends'], params: BackendParams, body: BackendPatch } },
    async (req, reply) =>
      etag(reply, await s.backends.patch(req.params.pool_id, req.params.server_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof BackendParams>; Querystring: Static<typeof ForceQuery> }>(
    '/pools/:pool_id/backends/:server_id',
    { schema: { tags: ['backends'], params: BackendParams, querystring: ForceQuery } },
    async (req) => s.backends.delete(req.params.pool_id, req.params.server_id, req.query.force ?? false),
  );
  api.post<{ Params: Static<typeof BackendParams>; Body: Static<typeof DrainRequest> }>(
    '/pools/:pool_id/backends/:server_id/drain',
    { schema: { tags: ['backends'], params: BackendParams, body: DrainRequest } },
    async (req, reply) => reply.status(202).send(await s.backends.drain(req.params.pool_id, req.params.server_id, req.body)),
  );

  // ── Load balancers and listeners ───────────────────────────────────────────────────────
  api.post<{ Body: Static<typeof LoadBalancerCreate> }>(
    '/load-balancers',
    { schema: { tags: ['load balancers'], body: LoadBalancerCreate } },
    async (req, reply) => reply.status(201).send(etag(reply, await s.loadBalancers.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof Paging> }>('/load-balancers', { schema: { tags: ['load balancers'], querystring: Paging } }, async (req) =>
    s.loadBalancers.list(req.query),
  );
  api.get<{ Params: Static<typeof LbParams> }>(
    '/load-balancers/:lb_id',
    { schema: { tags: ['load balancers'], params: LbParams } },
    async (req, reply) => etag(reply, await s.loadBalancers.get(req.params.lb_id)),
  );
  api.patch<{ Params: Static<typeof LbParams>; Body: Static<typeof LoadBalancerPatch> }>(
    '/load-balancers/:lb_id',
    { schema: { tags: ['load balancers'], params: LbParams, body: LoadBalancerPatch } },
    async (req, reply) => etag(reply, await s.loadBalancers.patch(req.params.lb_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof LbParams>; Querystring: Static<typeof ForceQuery> }>(
    '/load-balancers/:lb_id',
    { schema: { tags: ['load balancers'], params: LbParams, querystring: ForceQuery } },
    async (req) => s.loadBalancers.delete(req.params.lb_id, req.query.force ?? false),
  );
  api.post<{ Params: Static<typeof LbParams>; Body: Static<typeof ListenerCreate> }>(
    '/load-balancers/:lb_id/listeners',
    { schema: { tags: ['listeners'], params: LbParams, body: ListenerCreate } },
    async (req, reply) => reply.status(201).send(etag(reply, await s.listeners.create(req.params.lb_id, req.body))),
  );
  api.get<{ Params: Static<typeof LbParams>; Querystring: Static<typeof Paging> }>(
    '/load-balancers/:lb_id/listeners',
    { schema: { tags: ['listeners'], params: LbParams, querystring: Paging } },
    async (req) => s.listeners.list(req.params.lb_id, req.query),
  );
  api.get<{ Params: Static<typeof ListenerParams> }>(
    '/load-balancers/:lb_id/listeners/:listener_id',
    { schema: { tags: ['listeners'], params: ListenerParams } },
    async (req, reply) => etag(reply, await s.listeners.get(req.params.lb_id, req.params.listener_id)),
  );
  api.patch<{ Params: Static<typeof ListenerParams>; Body: Static<typeof ListenerPatch> }>(
    '/load-balancers/:lb_id/listeners/:listener_id',
    { schema: { tags: ['listeners'], params: ListenerParams, body: ListenerPatch } },
    async (req, reply) =>
      etag(reply, await s.listeners.patch(req.params.lb_id, req.params.listener_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof ListenerParams> }>(
    '/load-balancers/:lb_id/listeners/:listener_id',
    { schema: { tags: ['listeners'], params: ListenerParams } },
    async (req) => s.listeners.delete(req.params.lb_id, req.params.listener_id),
  );

  registerAccessControlRoutes(api, s);
  registerAclRoutes(api, s);
  registerRateLimitRoutes(api, s.rateLimits);
  registerRoutingRuleRoutes(api, s.routingRules);
}

// ── Access lists and connection throttles (listener sub-resources) ────────────────────────
// Each write is a write of the listener: If-Match takes the listener's version, and the ETag of
// every answer is the listener's version after it.

const AccessListPath = '/load-balancers/:lb_id/listeners/:listener_id/access-list';
const ThrottlePath = '/load-balancers/:lb_id/listeners/:listener_id/connection-throttle';
const NetworkItemParams = Strict({ lb_id: Id, listener_id: Id, item_id: Id });
const NetworkItemsBody = Strict({
  network_items: Type.Array(NetworkItemInput, { minItems: 1, maxItems: MAX_NETWORK_ITEMS }),
});

/** Sends the listener version an access-control answer reflects as its ETag. */
function tagged<T>(reply: FastifyReply, answer: Versioned<T>): T {
  reply.header('etag', `"${answer.version}"`);
  return answer.body;
}

function registerAccessControlRoutes(api: FastifyInstance, s: NativeServices): void {
  const tags = ['access control'];
  api.get<{ Params: Static<typeof ListenerParams> }>(AccessListPath, { schema: { tags, params: ListenerParams } }, async (req, reply) =>
    tagged(reply, await s.accessControl.getAccessList(req.params.lb_id, req.params.listener_id)),
  );
  api.post<{ Params: Static<typeof ListenerParams>; Body: Static<typeof NetworkItemsBody> }>(
    AccessListPath,
    { schema: { tags, params: ListenerParams, body: NetworkItemsBody } },
    async (req, reply) =>
      tagged(reply, await s.accessControl.replaceAccessList(req.params.lb_id, req.params.listener_id, req.body.network_items, ifMatch(req.headers))),
  );
  api.put<{ Params: Static<typeof ListenerParams>; Body: Static<typeof NetworkItemsBody> }>(
    AccessListPath,
    { schema: { tags, params: ListenerParams, body: NetworkItemsBody } },
    async (req, reply) =>
      tagged(reply, await s.accessControl.appendAccessList(req.params.lb_id, req.params.listener_id, req.body.network_items, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof ListenerParams> }>(AccessListPath, { schema: { tags, params: ListenerParams } }, async (req, reply) =>
    tagged(reply, await s.accessControl.clearAccessList(req.params.lb_id, req.params.listener_id, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof NetworkItemParams> }>(`${AccessListPath}/:item_id`, { schema: { tags, params: NetworkItemParams } }, async (req, reply) =>
    tagged(reply, await s.accessControl.deleteNetworkItem(req.params.lb_id, req.params.listener_id, req.params.item_id, ifMatch(req.headers))),
  );

  api.get<{ Params: Static<typeof ListenerParams> }>(ThrottlePath, { schema: { tags, params: ListenerParams } }, async (req, reply) =>
    tagged(reply, await s.accessControl.getThrottle(req.params.lb_id, req.params.listener_id)),
  );
  api.put<{ Params: Static<typeof ListenerParams>; Body: Static<typeof ConnectionThrottleInput> }>(
    ThrottlePath,
    { schema: { tags, params: ListenerParams, body: ConnectionThrottleInput } },
    async (req, reply) => tagged(reply, await s.accessControl.putThrottle(req.params.lb_id, req.params.listener_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof ListenerParams> }>(ThrottlePath, { schema: { tags, params: ListenerParams } }, async (req, reply) =>
    tagged(reply, await s.accessControl.deleteThrottle(req.params.lb_id, req.params.listener_id, ifMatch(req.headers))),
  );
}

// ── ACLs (seed 000 §8): layer 7 ALLOW / DENY rules of a tenant ────────────────────────────
// Listed in evaluation order (priority). PATCH and DELETE honour If-Match; every answer that is
// one ACL carries its version as the ETag.

const AclParams = Strict({ acl_id: Id });

function registerAclRoutes(api: FastifyInstance, s: NativeServices): void {
  const tags = ['acls'];
  api.post<{ Body: Static<typeof AclCreate> }>('/acls', { schema: { tags, body: AclCreate } }, async (req, reply) =>
    reply.status(201).send(etag(reply, await s.acls.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof AclQuery> }>('/acls', { schema: { tags, querystring: AclQuery } }, async (req) => s.acls.list(req.query));
  api.get<{ Params: Static<typeof AclParams> }>('/acls/:acl_id', { schema: { tags, params: AclParams } }, async (req, reply) =>
    etag(reply, await s.acls.get(req.params.acl_id)),
  );
  api.patch<{ Params: Static<typeof AclParams>; Body: Static<typeof AclPatch> }>(
    '/acls/:acl_id',
    { schema: { tags, params: AclParams, body: AclPatch } },
    async (req, reply) => etag(reply, await s.acls.patch(req.params.acl_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof AclParams> }>('/acls/:acl_id', { schema: { tags, params: AclParams } }, async (req) =>
    s.acls.delete(req.params.acl_id, ifMatch(req.headers)),
  );
}
