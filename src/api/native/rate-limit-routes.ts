/**
 * Rate limits (seed 000 §7): a tenant's request budgets, listed in evaluation order (creation
 * order); a client's standing (`/rate-limits/status`) and the process's totals
 * (`/rate-limits/metrics`). PATCH and DELETE honour If-Match; every answer that is one rate limit
 * carries its version as the ETag.
 *
 * `/rate-limits/status` and `/rate-limits/metrics` are static routes, which fastify's router
 * always prefers to the parametric `/rate-limits/:rate_limit_id`; ids are `rl-…`, so no rate limit
 * can be called `status` or `metrics` either.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import type { RateLimitService } from '../../control/rate-limits.ts';
import { Strict } from '../../model/common.ts';
import { RateLimitCreate, RateLimitListQuery, RateLimitMetricsQuery, RateLimitPatch, RateLimitStatusQuery } from '../../model/rate-limit.ts';
import { etag, Id, ifMatch } from './versioning.ts';

const RateLimitParams = Strict({ rate_limit_id: Id });

export function registerRateLimitRoutes(api: FastifyInstance, s: RateLimitService): void {
  const tags = ['rate limits'];
  api.post<{ Body: Static<typeof RateLimitCreate> }>('/rate-limits', { schema: { tags, body: RateLimitCreate } }, async (req, reply) =>
    reply.status(201).send(etag(reply, await s.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof RateLimitListQuery> }>('/rate-limits', { schema: { tags, querystring: RateLimitListQuery } }, async (req) =>
    s.list(req.query),
  );
  api.get<{ Querystring: Static<typeof RateLimitStatusQuery> }>('/rate-limits/status', { schema: { tags, querystring: RateLimitStatusQuery } }, async (req) =>
    s.status(req.query),
  );
  api.get<{ Querystring: Static<typeof RateLimitMetricsQuery> }>('/rate-limits/metrics', { schema: { tags, querystring: RateLimitMetricsQuery } }, async (req) =>
    s.metrics(req.query),
  );
  api.get<{ Params: Static<typeof RateLimitParams> }>('/rate-limits/:rate_limit_id', { schema: { tags, params: RateLimitParams } }, async (req, reply) =>
    etag(reply, await s.get(req.params.rate_limit_id)),
  );
  api.patch<{ Params: Static<typeof RateLimitParams>; Body: Static<typeof RateLimitPatch> }>(
    '/rate-limits/:rate_limit_id',
    { schema: { tags, params: RateLimitParams, body: RateLimitPatch } },
    async (req, reply) => etag(reply, await s.patch(req.params.rate_limit_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof RateLimitParams> }>('/rate-limits/:rate_limit_id', { schema: { tags, params: RateLimitParams } }, async (req) =>
    s.delete(req.params.rate_limit_id, ifMatch(req.headers)),
  );
}
