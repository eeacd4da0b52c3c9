/**
 * Real backends and a load balancer in front of them, for data plane tests: node:http backends on
 * loopback port 0, and a pool, its backends, a load balancer and an HTTP listener created through
 * Fulcrum's API, exactly as an operator would.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { type ApiClient, freePort, startTestFulcrum, type TestFulcrum } from './fulcrum.ts';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
}

export interface TestBackend {
  name: string;
  port: number;
  server: Server;
  /** Every request this backend received, in order. */
  seen: SeenRequest[];
  close(): Promise<void>;
}

export type BackendHandler = (req: IncomingMessage, res: ServerResponse, name: string, body: Buffer) => void;

/** Answers 200 with its own name as the body, unless a handler says otherwise. */
const defaultHandler: BackendHandler = (_req, res, name) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
  res.end(name);
};

/**
 * A backend on 127.0.0.1. With `websocket`, it also accepts WebSocket connections and echoes
 * every message prefixed with its name. With `stream`, the handler gets the request unread.
 */
export async function startBackend(
  name: string,
  options: { handler?: BackendHandler; websocket?: boolean; stream?: (req: IncomingMessage, res: ServerResponse) => void } = {},
): Promise<TestBackend> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    if (options.stream) {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0) });
      options.stream(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      (options.handler ?? defaultHandler)(req, res, name, body);
    });
  });
  if (options.websocket) {
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      ws.on('message', (data) => ws.send(`${name}:${data.toString()}`));
    });
  }
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    server,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface LbSetup {
  t: TestFulcrum;
  api: ApiClient;
  /** `http://127.0.0.1:<listener port>` */
  url: string;
  port: number;
  poolId: string;
  lbId: string;
  listenerId: string;
  /** server_id per backend, in the order given. */
  backendIds: string[];
  close(): Promise<void>;
}

export interface LbOptions {
  pool?: Record<string, unknown>;
  /** Extra fields per backend (weight, slow_start_seconds …), by position. */
  backendFields?: Record<string, unknown>[];
  listener?: Record<string, unknown>;
  /** An already running Fulcrum to configure; a new one is started otherwise. */
  fulcrum?: TestFulcrum;
}

/** Creates pool → backends → load balancer → HTTP listener through the API; asserts each step. */
export async function setupLb(backends: { port: number; name: string }[], options: LbOptions = {}): Promise<LbSetup> {
  const t = options.fulcrum ?? (await startTestFulcrum());
  const api = t.api;
  const suffix = Math.random().toString(36).slice(2, 8);
  const pool = await api.post('/api/v1/pools', { name: `pool-${suffix}`, ...options.pool });
  assert.equal(pool.status, 201, JSON.stringify(pool.body));
  const poolId: string = pool.body.pool_id;
  const backendIds: string[] = [];
  for (const [i, b] of backends.entries()) {
    const r = await api.post(`/api/v1/pools/${poolId}/backends`, { name: b.name, ip_address: '127.0.0.1', port: b.port, ...options.backendFields?.[i] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    backendIds.push(r.body.server_id);
  }
  const lb = await api.post('/api/v1/load-balancers', { name: `lb-${suffix}` });
  assert.equal(lb.status, 201, JSON.stringify(lb.body));
  const port = await freePort();
  const listener = await api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
    name: `http-${suffix}`,
    protocol: 'HTTP',
    bind_address: '127.0.0.1',
    port,
    default_pool_id: poolId,
    ...options.listener,
  });
  assert.equal(listener.status, 201, JSON.stringify(listener.body));
  return {
    t,
    api,
    url: `http://127.0.0.1:${port}`,
    port,
    poolId,
    lbId: lb.body.lb_id,
    listenerId: listener.body.listener_id,
    backendIds,
    close: async () => {
      if (!options.fulcrum) await t.close();
    },
  };
}
