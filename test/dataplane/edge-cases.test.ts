/**
 * The data plane's behaviour at the edges a review found: clients that misbehave, backends that
 * refuse or answer oddly, and accounting that must not blame a backend for a client's doing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { RawClient, rawRequest } from '../helpers/raw-http.ts';

let fulcrum: TestFulcrum;
before(async () => {
  fulcrum = await startTestFulcrum();
});
after(() => fulcrum.close());

async function lbFor(backends: TestBackend[], listener: Record<string, unknown> = {}): Promise<LbSetup> {
  return setupLb(backends, { fulcrum, listener });
}

describe('edge cases', () => {
  it('a CONNECT whose client resets at once neither crashes Fulcrum nor leaves its socket open', async (t) => {
    const b = await startBackend('a');
    t.after(() => b.close());
    const lb = await lbFor([b]);
    for (let i = 0; i < 10; i++) {
      const c = connect(lb.port, '127.0.0.1');
      c.on('error', () => {});
      await once(c, 'connect');
      c.write(`CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n${'z'.repeat(100_000)}`);
      c.resetAndDestroy();
    }
    const c = await RawClient.connect(lb.port);
    t.after(() => c.destroy());
    await c.write('CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n');
    const refused = await c.final();
    assert.equal(refused.status, 405);
    const res = await fetch(lb.url);
    assert.equal(res.status, 200, 'still serving');
    assert.equal(await res.text(), 'a');
  });

  it('a WebSocket upgrade the backend refuses opens no raw channel: later bytes never reach it', async (t) => {
    const seen: string[] = [];
    const b = await startBackend('ws-refuser', {
      stream: (req, res) => {
        seen.push(`${req.method} ${req.url} ${req.headers['x-forwarded-proto'] ?? ''}`);
        req.resume();
        res.writeHead(404, { 'content-length': 2 }); // keep-alive: the backend would read more
        res.end('no');
      },
    });
    t.after(() => b.close());
    // node:http passes upgrade requests to its 'upgrade' event; none here, so it answers them as plain requests.
    const lb = await lbFor([b]);
    const c = await RawClient.connect(lb.port);
    t.after(() => c.destroy());
    await c.write(
      'GET /chat HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    const res = await c.final();
    assert.equal(res.status, 404);
    await c.write('GET /smuggled HTTP/1.1\r\nHost: app\r\nX-Forwarded-Proto: https\r\n\r\n');
    // The backend answers anything it reads at once; a round trip through the API gives it time.
    await fulcrum.api.get('/health');
    await fetch(lb.url); // a normal request reaches it, through Fulcrum
    assert.deepEqual(
      seen.map((s) => s.split(' ').slice(0, 2).join(' ')),
      ['GET /chat', 'GET /'],
      'only the upgrade request and the separate normal request reached the backend',
    );
  });

  it('a client that stops reading a large response is cut after idle_ms and frees its backend slot', async (t) => {
    const big = Buffer.alloc(32 * 1024 * 1024, 97);
    const b = await startBackend('big', {
      handler: (_req, res) => {
        res.writeHead(200, { 'content-length': big.length });
        res.end(big);
      },
    });
    t.after(() => b.close());
    const lb = await lbFor([b], { timeouts: { idle_ms: 500 } });
    const c = await RawClient.connect(lb.port);
    t.after(() => c.destroy());
    const firstBytes = once(c.socket, 'data');
    await c.write(rawRequest('GET', '/big'));
    await firstBytes;
    c.socket.pause(); // stop reading: the response backs up into Fulcrum
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    assert.equal((await fulcrum.api.get(path)).body.active_connections, 1);
    let active = 1;
    for (let i = 0; i < 40 && active !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      active = (await fulcrum.api.get(path)).body.active_connections;
    }
    assert.equal(active, 0, 'the slot is free once the client has not read for idle_ms');
  });

  it('clients that give up on a slow backend do not count as its errors or its latency', async (t) => {
    const b = await startBackend('slow', {
      stream: (req, res) => {
        req.resume();
        const timer = setTimeout(() => res.end('late'), 5_000);
        res.once('close', () => clearTimeout(timer));
      },
    });
    t.after(() => b.close());
    const lb = await lbFor([b]);
    for (let i = 0; i < 3; i++) {
      const controller = new AbortController();
      const arrived = once(b.server, 'request');
      const pending = fetch(lb.url, { signal: controller.signal }).catch(() => 'aborted');
      await arrived;
      controller.abort();
      assert.equal(await pending, 'aborted');
    }
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    let view = (await fulcrum.api.get(path)).body;
    for (let i = 0; i < 20 && view.active_connections !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      view = (await fulcrum.api.get(path)).body;
    }
    assert.equal(view.active_connections, 0);
    assert.equal(view.error_rate_percent, 0, JSON.stringify(view));
    assert.equal(view.avg_response_time_ms, 0, 'nothing was measured: no response came');
  });

  it('a backend reason phrase node cannot write, and a 103 with a comma-joined Link, still reach the client', async (t) => {
    const b = await startBackend('odd', {
      stream: (req, res) => {
        req.resume();
        if (req.url === '/hints') {
          res.writeEarlyHints({ link: ['</a.css>; rel=preload; as=style', '</b.js>; rel=preload; as=script'] });
          res.end('hinted');
          return;
        }
        res.writeHead(200, 'Très bien', { 'content-length': 2 });
        res.end('ok');
      },
    });
    t.after(() => b.close());
    const lb = await lbFor([b]);
    const odd = await fetch(`${lb.url}/reason`);
    assert.equal(odd.status, 200);
    assert.equal(await odd.text(), 'ok');
    const c = await RawClient.connect(lb.port);
    t.after(() => c.destroy());
    await c.write(rawRequest('POST', '/hints', [['Content-Length', 1]], 'x'));
    const res = await c.final();
    assert.equal(res.status, 200, 'a POST is not failed by its hints');
    assert.equal(res.body.toString(), 'hinted');
  });

  it('an absolute-form target naming another authority than Host is refused; a matching one is sent as a path', async (t) => {
    const b = await startBackend('abs');
    t.after(() => b.close());
    const lb = await lbFor([b]);
    const c = await RawClient.connect(lb.port);
    t.after(() => c.destroy());
    await c.write('GET http://internal.example/admin HTTP/1.1\r\nHost: public.example\r\n\r\n');
    const refused = await c.final();
    assert.equal(refused.status, 400);
    const d = await RawClient.connect(lb.port);
    t.after(() => d.destroy());
    await d.write('GET http://public.example/page?x=1 HTTP/1.1\r\nHost: public.example\r\n\r\n');
    assert.equal((await d.final()).status, 200);
    assert.deepEqual(
      b.seen.map((r) => r.url),
      ['/page?x=1'],
    );
  });
});
