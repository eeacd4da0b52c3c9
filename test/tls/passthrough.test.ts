/**
 * TLS_PASSTHROUGH listeners: the pool is chosen by the SNI name of the ClientHello (exact route,
 * then a wildcard one, then the default pool) and the bytes are forwarded untouched, so the client
 * completes its handshake with the backend's own certificate. No route: a TLS alert. Not TLS: closed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectNet } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { handshake } from '../helpers/tls.ts';

let t: TestFulcrum;
let certs: CertFactory;
let ca: Pem;
const servers: TlsServer[] = [];

before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('Passthrough CA');
});
after(async () => {
  for (const s of servers) s.close();
  await t.close();
  certs.remove();
});

/** A TLS backend: its own certificate; answers every line with `<name>:<line length>` and echoes bulk. */
async function tlsBackend(name: string, names: string[]): Promise<number> {
  const pem = certs.leaf(names, { ca });
  const server = createTlsServer({ cert: pem.cert, key: pem.key }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.write(`hello from ${name}\n`);
    socket.pipe(socket); // echo: bytes must come back exactly as sent
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return (server.address() as AddressInfo).port;
}

async function pool(name: string, ports: number[]): Promise<string> {
  const p = await t.api.post('/api/v1/pools', { name });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  for (const port of ports) assert.equal((await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { ip_address: '127.0.0.1', port })).status, 201);
  return p.body.pool_id;
}

/** Connects through the listener with `servername`; the first line the backend sent and the certificate it showed. */
async function greet(port: number, servername?: string, anyName = false): Promise<{ line: string; cn: string }> {
  // anyName: the chain is still verified, the name is not (the default pool's certificate does not carry it).
  const identity = anyName || !servername ? { checkServerIdentity: () => undefined } : {};
  const { socket, cn } = await handshake(port, { ca: ca.cert, ...(servername ? { servername } : {}), ...identity });
  const line = await new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
    });
  });
  socket.destroy();
  return { line, cn };
}

describe('TLS passthrough listener', () => {
  let port: number;
  let lbId: string;
  let listenerId: string;
  let apiPool: string;
  let defaultPool: string;

  before(async () => {
    apiPool = await pool('pt-api', [await tlsBackend('api-1', ['api.example.com']), await tlsBackend('api-2', ['api.example.com'])]);
    const shopPool = await pool('pt-shop', [await tlsBackend('shop', ['*.shop.example.com'])]);
    defaultPool = await pool('pt-default', [await tlsBackend('default', ['default.example.com'])]);
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'passthrough' });
    lbId = lb.body.lb_id;
    port = await freePort();
    const l = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
      name: 'pt',
      protocol: 'TLS_PASSTHROUGH',
      bind_address: '127.0.0.1',
      port,
      default_pool_id: defaultPool,
      sni_routes: [
        { hostnames: ['API.example.com'], pool_id: apiPool },
        { hostnames: ['*.shop.example.com'], pool_id: shopPool },
      ],
    });
    assert.equal(l.status, 201, JSON.stringify(l.body));
    assert.equal(l.body.status, 'ACTIVE');
    assert.deepEqual(l.body.sni_routes[0].hostnames, ['api.example.com'], 'names are stored lower-case');
    listenerId = l.body.listener_id;
  });

  it('routes by SNI: exact, wildcard, then the default pool; the client sees the backend’s own certificate', async () => {
    const api = await greet(port, 'api.example.com');
    assert.match(api.line, /^hello from api-[12]$/);
    assert.equal(api.cn, 'api.example.com');
    const shop = await greet(port, 'eu.shop.example.com');
    assert.equal(shop.line, 'hello from shop');
    assert.equal(shop.cn, '*.shop.example.com');
    assert.equal((await greet(port, 'other.example.org', true)).line, 'hello from default', 'an unrouted name');
    assert.equal((await greet(port)).line, 'hello from default', 'no SNI at all');
  });

  it('balances connections of a pool with its algorithm', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add((await greet(port, 'api.example.com')).line);
    assert.deepEqual(seen, new Set(['hello from api-1', 'hello from api-2']));
  });

  it('forwards every byte untouched, both ways', async () => {
    const { socket } = await handshake(port, { servername: 'api.example.com', ca: ca.cert });
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) & 0xff;
    const received: Buffer[] = [];
    const done = new Promise<Buffer>((resolve) =>
      socket.on('data', (d: Buffer) => {
        received.push(d);
        const all = Buffer.concat(received);
        const start = all.indexOf(10) + 1;
        if (start > 0 && all.length - start >= payload.length) resolve(all.subarray(start, start + payload.length));
      }),
    );
    socket.write(payload);
    assert.ok((await done).equals(payload));
    socket.destroy();
  });

  it('answers an unrouted name with an unrecognized_name alert when there is no default pool, and closes what is not TLS', async () => {
    const patched = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { default_pool_id: null });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    await assert.rejects(handshake(port, { servername: 'nobody.example.net', ca: ca.cert }), /unrecognized name|alert number 112/i);
    const plain = connectNet({ host: '127.0.0.1', port });
    plain.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const got = await new Promise<string>((resolve) => {
      let text = '';
      plain.on('data', (d: Buffer) => (text += d.toString()));
      plain.on('close', () => resolve(text));
    });
    assert.equal(got, '', 'nothing answered, nothing forwarded');
    const metrics = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
    assert.match(metrics, new RegExp(`fulcrum_tcp_connections_total\\{listener="${listenerId}",pool="none",backend="none",result="no_route"\\} 1`));
    assert.match(metrics, new RegExp(`fulcrum_tcp_connections_total\\{listener="${listenerId}",pool="none",backend="none",result="not_tls"\\} 1`));
    assert.match(metrics, new RegExp(`fulcrum_tcp_connections_total\\{listener="${listenerId}",pool="${apiPool}",backend="[^"]+",result="forwarded"\\} \\d+`));
    await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { default_pool_id: defaultPool });
  });

  it('keeps a pool that sni_routes use from being deleted', async () => {
    const del = await t.api.delete(`/api/v1/pools/${apiPool}?force=true`);
    assert.equal(del.status, 409);
    assert.equal(del.body.error.code, 'POOL_IN_USE');
    assert.deepEqual(del.body.error.details.listener_ids, [listenerId]);
  });

  it('keeps an open connection across a route change; new connections follow the new routes', async () => {
    const { socket } = await handshake(port, { servername: 'api.example.com', ca: ca.cert });
    const r = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { sni_routes: [] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const echoed = new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('still here')) resolve(text);
      });
    });
    socket.write('still here');
    assert.match(await echoed, /still here/);
    socket.destroy();
    // api.example.com now goes to the default pool, whose certificate does not name it.
    await assert.rejects(handshake(port, { servername: 'api.example.com', ca: ca.cert }), /altnames|does not match|ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('gives a ClientHello client_ms in all, however slowly its bytes dribble in', async () => {
    const r = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { timeouts: { client_ms: 500 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    try {
      const slow = connectNet({ host: '127.0.0.1', port });
      const started = performance.now();
      // A record and handshake header announcing a 508-byte ClientHello, then one byte every 100 ms.
      slow.write(Buffer.from([22, 3, 1, 2, 0, 1, 0, 1, 252]));
      const drip = setInterval(() => slow.write(Buffer.from([1])), 100);
      await new Promise<void>((resolve) => slow.once('close', () => resolve()));
      clearInterval(drip);
      const took = performance.now() - started;
      assert.ok(took >= 450 && took < 3000, `closed after ${Math.round(took)} ms`);
      const metrics = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
      assert.match(metrics, new RegExp(`fulcrum_tcp_connections_total\\{listener="${listenerId}",pool="none",backend="none",result="hello_timeout"\\} 1`));
    } finally {
      await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { timeouts: { client_ms: 60000 } });
    }
  });

  it('refuses sni_routes that cannot work', async () => {
    const path = `/api/v1/load-balancers/${lbId}/listeners`;
    const base = { name: 'bad-pt', protocol: 'TLS_PASSTHROUGH', bind_address: '127.0.0.1', port: await freePort() };
    const dup = await t.api.post(path, { ...base, sni_routes: [{ hostnames: ['a.example.com'], pool_id: apiPool }, { hostnames: ['a.example.com'], pool_id: defaultPool }] });
    assert.equal(dup.status, 400);
    assert.ok(JSON.stringify(dup.body.error.details).includes('sni_routes[1].hostnames[0]'));
    const missing = await t.api.post(path, { ...base, sni_routes: [{ hostnames: ['a.example.com'], pool_id: 'pool-nope' }] });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'POOL_NOT_FOUND');
    const bad = await t.api.post(path, { ...base, sni_routes: [{ hostnames: ['*.*.example.com'], pool_id: apiPool }] });
    assert.equal(bad.status, 400);
    const onHttp = await t.api.post(path, { ...base, protocol: 'HTTP', sni_routes: [{ hostnames: ['a.example.com'], pool_id: apiPool }] });
    assert.equal(onHttp.status, 400);
  });
});
