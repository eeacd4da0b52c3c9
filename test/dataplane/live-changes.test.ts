/**
 * Configuration changes under traffic: a steady load and open WebSockets while the API adds,
 * drains, re-weights backends, changes the algorithm and repoints the listener. Nothing a client
 * sees may fail. Also: drains step by step, WebSocket idle timeouts, and the metrics endpoint.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';

const agent = new Agent({ connections: 16 });
after(() => agent.close());

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await request(url, { dispatcher: agent });
  return { status: r.statusCode, body: await r.body.text() };
}

/** Opens a WebSocket and waits for it; rejects on an error or an unexpected response. */
async function openWs(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await once(ws, 'open');
  return ws;
}

async function echo(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, 'message');
  ws.send(text);
  const [data] = await reply;
  return (data as Buffer).toString();
}

describe('live changes under load', () => {
  it('50 changes during 10 s of ~200 requests/s and 20 open WebSockets: no failed request, no reset, every WebSocket open', async () => {
    const stable = await Promise.all(['s1', 's2'].map((n) => startBackend(n, { websocket: true })));
    const other = await Promise.all(['p2a', 'p2b'].map((n) => startBackend(n)));
    const churn: TestBackend[] = await Promise.all(Array.from({ length: 10 }, (_, i) => startBackend(`c${i}`)));
    const lb = await setupLb(stable);
    const api = lb.api;
    try {
      const pool2 = await api.post('/api/v1/pools', { name: 'second' });
      for (const b of other) await api.post(`/api/v1/pools/${pool2.body.pool_id}/backends`, { name: b.name, ip_address: '127.0.0.1', port: b.port });

      const sockets = await Promise.all(Array.from({ length: 20 }, () => openWs(lb.url.replace('http', 'ws'))));
      const closed: number[] = [];
      sockets.forEach((ws, i) => ws.on('close', () => closed.push(i)));

      // Steady load: one request every 5 ms for 10 s, each on its own schedule (not waiting for the previous).
      const statuses = new Map<number, number>();
      const failures: string[] = [];
      const inflight: Promise<void>[] = [];
      const started = Date.now();
      const timer = setInterval(() => {
        inflight.push(
          get(`${lb.url}/load`).then(
            (r) => void statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1),
            (err: Error) => void failures.push(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`),
          ),
        );
      }, 5);

      const changes: string[] = [];
      const expectOk = async (what: string, p: Promise<{ status: number; body: unknown }>) => {
        const r = await p;
        assert.ok(r.status >= 200 && r.status < 300, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
        changes.push(what);
        return r;
      };
      const added: string[] = [];
      let onSecond = false;
      for (let i = 0; changes.length < 50; i++) {
        switch (i % 5) {
          case 0: {
            const b = churn[(i / 5) % churn.length]!;
            const r = await expectOk('add backend', api.post(`/api/v1/pools/${lb.poolId}/backends`, { name: `${b.name}-${i}`, ip_address: '127.0.0.1', port: b.port }));
            added.push((r.body as { server_id: string }).server_id);
            break;
          }
          case 1:
            await expectOk('re-weight', api.patch(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[i % 2]}`, { weight: 10 + (i % 90) }));
            break;
          case 2:
            await expectOk('algorithm', api.put(`/api/v1/pools/${lb.poolId}/algorithm`, { algorithm: ['LEAST_CONNECTIONS', 'WEIGHTED_ROUND_ROBIN', 'RANDOM', 'ROUND_ROBIN'][i % 4] }));
            break;
          case 3: {
            const id = added.shift();
            if (id) await expectOk('drain', api.post(`/api/v1/pools/${lb.poolId}/backends/${id}/drain`, { timeout_seconds: 30 }));
            break;
          }
          case 4: {
            onSecond = !onSecond;
            await expectOk('repoint listener', api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { default_pool_id: onSecond ? pool2.body.pool_id : lb.poolId }));
            // Applied before the API answered: the very next request sees it.
            const next = await get(lb.url);
            assert.equal(next.status, 200);
            assert.equal(other.some((b) => b.name === next.body), onSecond, `after repointing, answered by ${next.body}`);
            break;
          }
        }
        await new Promise((r) => setTimeout(r, 150)); // pace the 50 changes over the load's 10 s
      }
      const remaining = 10_000 - (Date.now() - started);
      if (remaining > 0) await new Promise((r) => setTimeout(r, remaining));
      clearInterval(timer);
      await Promise.all(inflight);

      const total = [...statuses.values()].reduce((a, b) => a + b, 0);
      assert.deepEqual(failures, [], 'no connection errors or resets');
      assert.deepEqual([...statuses.keys()], [200], `every response 2xx: ${JSON.stringify([...statuses])}`);
      assert.ok(total >= 1500, `a steady load was sent (${total} requests)`);
      assert.equal(changes.length, 50);
      assert.deepEqual(closed, [], 'no WebSocket closed');
      for (const [i, ws] of sockets.entries()) assert.match(await echo(ws, `still-${i}`), new RegExp(`^s[12]:still-${i}$`));
      for (const ws of sockets) ws.close();
    } finally {
      await lb.close();
      await Promise.all([...stable, ...other, ...churn].map((b) => b.close()));
    }
  });
});

describe('drain', () => {
  it('DRAINING takes no new requests, lets the in-flight one finish, then removes the backend; GET shows each step', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived: () => void = () => {};
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const slow = await startBackend('slow', {
      handler: (req, res, name) => {
        if (req.url !== '/hold') return void res.end(name);
        arrived();
        void held.then(() => res.end('held'));
      },
    });
    const fast = await startBackend('fast');
    const lb = await setupLb([slow, fast]);
    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    try {
      // Round robin starts anywhere: send until a request is held by 'slow' ('fast' answers at once).
      let inflight: Promise<{ status: number; body: string }> | undefined;
      for (let i = 0; i < 4 && inflight === undefined; i++) {
        const sent = get(`${lb.url}/hold`);
        const first = await Promise.race([sent.then(() => 'answered'), arrival.then(() => 'held')]);
        if (first === 'held') inflight = sent;
      }
      assert.ok(inflight, 'a request reached the slow backend');
      const drain = await lb.api.post(`${path}/drain`, { timeout_seconds: 60, reason: 'test' });
      assert.equal(drain.status, 202);
      assert.equal(drain.body.active_connections, 1);

      const during = await lb.api.get(path);
      assert.equal(during.body.status, 'DRAINING');
      assert.equal(during.body.active_connections, 1);
      assert.equal(during.body.effective_weight, 0);
      for (let i = 0; i < 10; i++) assert.equal((await get(lb.url)).body, 'fast', 'no new request reaches a draining backend');

      release();
      assert.deepEqual(await inflight!, { status: 200, body: 'held' });
      let gone = during;
      for (let i = 0; i < 50 && gone.status === 200; i++) {
        await new Promise((r) => setTimeout(r, 50));
        gone = await lb.api.get(path);
      }
      assert.equal(gone.status, 404, 'removed once its last connection finished');
    } finally {
      release();
      await lb.close();
      await slow.close();
      await fast.close();
    }
  });

  it('at timeout_seconds the remaining connections (a WebSocket) are closed and the backend removed', async () => {
    const ws1 = await startBackend('ws1', { websocket: true });
    const lb = await setupLb([ws1]);
    try {
      const ws = await openWs(lb.url.replace('http', 'ws'));
      assert.equal(await echo(ws, 'hi'), 'ws1:hi');
      const closed = once(ws, 'close');
      const t0 = Date.now();
      const drain = await lb.api.post(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}/drain`, { timeout_seconds: 1 });
      assert.equal(drain.status, 202);
      assert.equal(await echo(ws, 'still'), 'ws1:still', 'a draining backend keeps its tunnels until the timeout');
      await closed;
      assert.ok(Date.now() - t0 >= 900, 'closed at the timeout, not before');
      let gone = 200;
      for (let i = 0; i < 50 && gone === 200; i++) {
        gone = (await lb.api.get(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`)).status;
        if (gone === 200) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(gone, 404);
    } finally {
      await lb.close();
      await ws1.close();
    }
  });
});

describe('WebSocket idle timeout', () => {
  it('closes a tunnel idle for idle_ms, keeps a busy one open past it', async () => {
    const ws1 = await startBackend('ws1', { websocket: true });
    const lb = await setupLb([ws1], { listener: { timeouts: { idle_ms: 400 } } });
    try {
      const idle = await openWs(lb.url.replace('http', 'ws'));
      const busy = await openWs(lb.url.replace('http', 'ws'));
      const idleClosed = once(idle, 'close');
      let busyClosed = false;
      busy.on('close', () => (busyClosed = true));
      const t0 = Date.now();
      // Busy: a message every 100 ms for 1.2 s, three times the idle timeout.
      for (let i = 0; i < 12; i++) {
        assert.equal(await echo(busy, `m${i}`), `ws1:m${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await idleClosed;
      assert.ok(Date.now() - t0 >= 350);
      assert.equal(busyClosed, false);
      busy.close();
    } finally {
      await lb.close();
      await ws1.close();
    }
  });
});

describe('metrics', () => {
  it('GET /metrics counts real traffic in Prometheus text format', async () => {
    const a = await startBackend('a');
    const lb = await setupLb([a]);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await get(lb.url)).status, 200);
      const res = await fetch(`${lb.api.base}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
      const text = await res.text();
      const line = (re: RegExp) => text.split('\n').find((l) => re.test(l));
      const value = (re: RegExp) => Number(line(re)?.split(' ').pop());
      const labels = `listener="${lb.listenerId}",pool="${lb.poolId}",backend="${lb.backendIds[0]}",code="200"`;
      assert.equal(value(new RegExp(`^fulcrum_requests_total\\{${labels}\\}`)), 5);
      assert.equal(value(new RegExp(`^fulcrum_request_duration_seconds_count\\{listener="${lb.listenerId}"\\}`)), 5);
      assert.ok(value(new RegExp(`^fulcrum_bytes_in_total\\{listener="${lb.listenerId}"\\}`)) > 0);
      assert.ok(value(new RegExp(`^fulcrum_bytes_out_total\\{listener="${lb.listenerId}"\\}`)) > 0);
      assert.ok(value(new RegExp(`^fulcrum_connections_active\\{listener="${lb.listenerId}"\\}`)) >= 1, 'the agent keeps its connection open');
      assert.equal(value(new RegExp(`^fulcrum_backend_active_connections\\{pool="${lb.poolId}",backend="${lb.backendIds[0]}"\\}`)), 0);
      assert.equal(value(/^fulcrum_config_version /), await lb.t.fulcrum.store.revision());
    } finally {
      await lb.close();
      await a.close();
    }
  });
});
