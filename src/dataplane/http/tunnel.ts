/**
 * WebSocket (and any `Upgrade`) handshakes: the request head is re-sent to a backend over a fresh
 * connection, and from then on bytes pass both ways untouched — the backend's 101 (or its
 * refusal) included. A tunnel belongs to its backend, not to a configuration revision: it stays
 * open across every change that does not remove that backend, and closes after the listener's
 * idle timeout only when no byte moved either way.
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { requestId } from '../../observability/request-id.ts';
import type { PoolRuntime } from '../../snapshot/snapshot.ts';
import { clientAddress, upstreamRequestHeaders } from './headers.ts';
import { pickTarget } from './pick.ts';
import { countBytes, type ListenerView, type ProxyDeps } from './proxy.ts';

function rawProblem(socket: Socket, status: number, id: string, reason: string): void {
  const title = status === 502 ? 'Bad Gateway' : status === 503 ? 'Service Unavailable' : 'Bad Request';
  const body = `${status} ${title}: ${reason} (request id ${id})\n`;
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${id}\r\n${status === 503 ? 'retry-after: 1\r\n' : ''}connection: close\r\n\r\n${body}`,
  );
}

/** The status code at the start of the backend's first bytes, or 0 when it is not an HTTP status line. */
function statusOf(chunk: Buffer): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'));
  return m ? Number(m[1]) : 0;
}

export function tunnel(deps: ProxyDeps, view: ListenerView, req: IncomingMessage, client: Socket, head: Buffer): void {
  const id = requestId(req.headers['x-request-id']);
  const started = performance.now();
  const pool: PoolRuntime | null = view.runtime.pool;
  const listener = view.runtime.listener;
  client.on('error', () => client.destroy());
  const done = (pool: string, backend: string, status: number) => {
    deps.metrics.request(view.metrics, pool, backend, status, (performance.now() - started) / 1000);
    countBytes(client, view.metrics);
  };
  // What passes through the tunnel after the handshake counts too, once it closes.
  client.once('close', () => countBytes(client, view.metrics));

  if (!/^websocket$/i.test(req.headers.upgrade ?? '')) {
    rawProblem(client, 400, id, `upgrade to '${req.headers.upgrade}' is not supported`);
    done(pool?.pool.pool_id ?? 'none', 'none', 400);
    return;
  }
  if (pool === null) {
    rawProblem(client, 503, id, 'the listener has no default pool');
    done('none', 'none', 503);
    return;
  }
  const clientIp = clientAddress(client.remoteAddress);
  const headers = upstreamRequestHeaders(req, { clientIp, proto: 'http', port: listener.port, requestId: id }, true);
  let requestHead = `${req.method} ${req.url} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) requestHead += `${headers[i]}: ${headers[i + 1]}\r\n`;
  requestHead += '\r\n';

  let tried: Set<number> | undefined;
  let lastError = '';
  const attempt = (): void => {
    const index = pickTarget(pool, req, clientIp, tried);
    if (index < 0) {
      const status = tried === undefined ? 503 : 502;
      rawProblem(client, status, id, tried === undefined ? 'no usable backend' : `backend failed (${lastError})`);
      done(pool.pool.pool_id, 'none', status);
      return;
    }
    const target = pool.targets[index]!;
    const upstream = connect({ host: target.backend.ip_address ?? target.backend.hostname!, port: target.backend.port, noDelay: true });
    const terminate = () => {
      upstream.destroy();
      client.destroy();
    };
    let connected = false;
    target.record.connections.add(terminate);
    deps.loadChanged(pool, index);
    const release = () => {
      if (target.record.connections.delete(terminate)) deps.loadChanged(pool, index);
    };
    upstream.setTimeout(listener.timeouts.connect_ms, () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      release();
      if (connected) {
        client.destroy();
        return;
      }
      lastError = err.code ?? err.message;
      if ((tried?.size ?? 0) < pool.retries && !client.destroyed) {
        (tried ??= new Set()).add(index);
        attempt();
        return;
      }
      rawProblem(client, 502, id, `backend ${target.id} failed (${lastError})`);
      target.record.observe(deps.now(), performance.now() - started, true);
      done(pool.pool.pool_id, target.id, 502);
    });
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      if (client.destroyed) {
        terminate();
        release();
        return;
      }
      upstream.write(requestHead);
      if (head.length > 0) upstream.write(head);
      upstream.once('data', (first: Buffer) => {
        const status = statusOf(first);
        target.record.observe(deps.now(), performance.now() - started, status >= 500 || status === 0);
        done(pool.pool.pool_id, target.id, status);
      });
      upstream.pipe(client);
      client.pipe(upstream);
      // Idle only when nothing moves either way: writes to the client count as activity too.
      client.setTimeout(listener.timeouts.idle_ms, terminate);
      upstream.on('close', () => {
        release();
        client.destroy();
      });
      client.on('close', () => upstream.destroy());
    });
  };
  attempt();
}
