import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import { requestId } from '../observability/request-id.ts';
import type { Store } from '../store/store.ts';
import { authenticate } from './auth.ts';
import type { Metrics } from '../observability/metrics.ts';
import { errorBody, handleError } from './errors.ts';
import { registerNativeRoutes, type NativeServices } from './native/routes.ts';

export interface ApiDeps {
  store: Store;
  services: NativeServices;
  log: Logger;
  bodyLimit: number;
  /** Served at `/metrics` in Prometheus text format, without authentication (scrapers). */
  metrics: Metrics;
  /** `/ready`: store open and every enabled listener bound. */
  readiness: () => { ready: boolean; checks: Record<string, unknown> };
  version: string;
  /** True once shutdown began: new requests get 503, finished ones close their connection. */
  closing: () => boolean;
}


// ajv-formats ships CommonJS; its default export is the plugin function.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * Request bodies are validated strictly: no type coercion, unknown fields refused, all problems
 * reported at once. Query strings and path parameters are text, so there types are coerced.
 */
function validators() {
  const body = addFormats(new Ajv({ allErrors: true, removeAdditional: false, useDefaults: false, coerceTypes: false, strict: false }));
  const other = addFormats(new Ajv({ allErrors: true, removeAdditional: false, useDefaults: true, coerceTypes: true, strict: false }));
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) =>
    (httpPart === 'body' ? body : other).compile(schema);
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit,
    genReqId: (req) => requestId(req.headers['x-request-id']),
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    // Our own 503 in the standard body replaces fastify's (see the onRequest hook).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 256 },
    // Errors the router raises before any hook runs (a bad URL, an over-long path parameter)
    // still answer in the standard body.
    frameworkErrors: (error, request, reply) => {
      const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is longer than ids can be' : `Bad request URL: ${error.message}`;
      void (reply as FastifyReply).status(400).send(errorBody('INVALID_PARAMETER', message, { path: request.url.split('?')[0] }, request.id));
    },
  });
  app.setValidatorCompiler(validators());
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(errorBody('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`, { method: request.method, path: request.url.split('?')[0] }, request.id)),
  );
  // JSON only: the built-in text/plain parser would let a wrong content type through.
  app.removeContentTypeParser('text/plain');
  // fastify's own JSON parser (it refuses __proto__ / constructor poisoning), except that an empty
  // body counts as no body: clients send `Content-Type: application/json` on DELETE and bare POSTs.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    return json(request, text, done);
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (deps.closing()) {
      reply.header('connection', 'close');
      return reply.status(503).send(errorBody('SERVICE_UNAVAILABLE', 'Fulcrum is shutting down', {}, request.id));
    }
    if (!request.url.startsWith('/api/')) return;
    const key = await authenticate(deps.store, request.headers.authorization);
    if (!key) {
      reply.header('www-authenticate', 'Bearer realm="fulcrum"');
      const presented = request.headers.authorization !== undefined;
      return reply
        .status(401)
        .send(
          errorBody(
            'AUTHENTICATION_REQUIRED',
            presented ? 'The bearer token is not recognised' : 'Send Authorization: Bearer <token>',
            {},
            request.id,
          ),
        );
    }
  });
  // A request that was in flight when shutdown began must not leave its connection open behind it.
  app.addHook('onSend', async (_request, reply) => {
    if (deps.closing()) reply.header('connection', 'close');
  });
  // A POST with every field optional may come without a body; validate it as `{}`.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && request.routeOptions.schema?.body !== undefined) request.body = {};
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Fulcrum management API', version: deps.version, description: 'Native /api/v1 of the Fulcrum load balancer' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  app.get('/health', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    return reply.type(deps.metrics.contentType).send(await deps.metrics.text());
  });
  app.get('/ready', { schema: { hide: true } }, async (_request, reply) => {
    const r = deps.readiness();
    return reply.status(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not_ready', checks: r.checks });
  });

  await app.register(
    async (api) => {
      registerNativeRoutes(api, deps.services);
      api.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    },
    { prefix: '/api/v1' },
  );
  return app;
}
