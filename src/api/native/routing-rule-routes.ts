/**
 * Routing rules (seed 000 §6). Single-rule answers carry the rule's version as ETag; PUT, PATCH and
 * DELETE honour If-Match (or a `version` field). `POST /routing-rules/test` is the dry run.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from 'typebox';
import type { RoutingRuleService } from '../../control/routing-rules.ts';
import { Paging, Strict } from '../../model/common.ts';
import { RouteTest, RoutingRuleCreate, RoutingRulePatch, RoutingRuleReplace } from '../../model/routing-rule.ts';
import { etag, Id, ifMatch } from './versioning.ts';

const RuleParams = Strict({ rule_id: Id });
const RuleQuery = Strict({
  ...Paging.properties,
  pool_id: Type.Optional(Id),
  listener_id: Type.Optional(Id),
  enabled: Type.Optional(Type.Boolean()),
});

export function registerRoutingRuleRoutes(api: FastifyInstance, s: RoutingRuleService): void {
  const tags = ['routing rules'];
  api.post<{ Body: Static<typeof RoutingRuleCreate> }>('/routing-rules', { schema: { tags, body: RoutingRuleCreate } }, async (req, reply) =>
    reply.status(201).send(etag(reply, await s.create(req.body))),
  );
  api.get<{ Querystring: Static<typeof RuleQuery> }>('/routing-rules', { schema: { tags, querystring: RuleQuery } }, async (req) => s.list(req.query));
  api.post<{ Body: Static<typeof RouteTest> }>('/routing-rules/test', { schema: { tags, body: RouteTest } }, async (req) => s.test(req.body));
  api.get<{ Params: Static<typeof RuleParams> }>('/routing-rules/:rule_id', { schema: { tags, params: RuleParams } }, async (req, reply) =>
    etag(reply, await s.get(req.params.rule_id)),
  );
  api.put<{ Params: Static<typeof RuleParams>; Body: Static<typeof RoutingRuleReplace> }>(
    '/routing-rules/:rule_id',
    { schema: { tags, params: RuleParams, body: RoutingRuleReplace } },
    async (req, reply) => etag(reply, await s.replace(req.params.rule_id, req.body, ifMatch(req.headers))),
  );
  api.patch<{ Params: Static<typeof RuleParams>; Body: Static<typeof RoutingRulePatch> }>(
    '/routing-rules/:rule_id',
    { schema: { tags, params: RuleParams, body: RoutingRulePatch } },
    async (req, reply) => etag(reply, await s.patch(req.params.rule_id, req.body, ifMatch(req.headers))),
  );
  api.delete<{ Params: Static<typeof RuleParams> }>('/routing-rules/:rule_id', { schema: { tags, params: RuleParams } }, async (req) =>
    s.delete(req.params.rule_id, ifMatch(req.headers)),
  );
}
