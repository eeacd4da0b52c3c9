/**
 * The PROXY protocol on live listeners (docs/load-balancers-and-listeners.md "PROXY protocol from
 * clients", docs/pools.md "PROXY protocol to backends"): headers accepted from trusted peers on
 * HTTP, HTTPS and TCP listeners, the carried address used as the client's (X-Forwarded-For, access
 * list, IP_HASH, headers sent on), refusals counted by reason, and headers sent to backends of
 * TCP and HTTP listeners as a backend that parses them sees them.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { proxyHeaderV1, proxyHeaderV2 } from '../../src/dataplane/proxy-protocol.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { startBackend, type TestBackend } from '../helpers/http-lb.ts';
import {
  connectTcp,
  type CountingServer,
  expectCut,
  type ProxyBackend,
  readResponse,
  refusedCount,
  roundTrip,
  startEchoServer,
  startProxyBackend,
  waitCut,
} from '../helpers/net-probes.ts';
import { RawClient, type RawResponse, rawRequest } from '../helpers/raw-http.ts';
import { uploadCert } from '../helpers/tls.ts';
import { guardEventLoop } from '../helpers/loop-watchdog.ts';

const CARRIED = { address: '203.0.113.7', port: 40000 };
const TRUST_LOOPBACK = { enabled: true, trusted_cidrs: ['127.0.0.1/32'] };
/** A v2 header with the LOCAL command (§2.2): no addresses, the balancer in front speaking for itself. */
const V2_LOCAL = Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]), Buffer.from([0x20, 0x00, 0x00, 0x00])]);

let t: TestFulcrum;
let lbId: string;
let certs: CertFactory;
let ca: Pem;
let httpsCertId: string;
let web: TestBackend;
let echo: CountingServer;
const closers: (() => Promise<void> | void)[] = [];
// Fulcrum runs in this process: a data plane that spins (as it did on a header followed by data in
// one read) must fail this file in seconds, not take the machine's memory.
const watchdog = guardEventLoop('proxy-protocol.test.ts');
beforeEach((ctx) => watchdog.current(ctx.fullName));

before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('PROXY protocol CA');
  httpsCertId = await uploadCert(t.api, 'pp-https', certs.leaf(['localhost'], { ca }), ca.cert);
  web = await startBackend('web');
  echo = await startEchoServer();
  const lb = await t.api.post('/api/v1/load-balancers', { name: 'proxy-protocol' });
  assert.equal(lb.status, 201, JSON.stringify(lb.body));
  lbId = lb.body.lb_id;
});

after(async () => {
  for (const c of closers.reverse()) await c();
  await t.close();
  await web.close();
  await echo.close();
  certs.remove();
  watchdog.stop();
});

let names = 0;

async function makePool(ports: number[], fields: Record<string, unknown> = {}, backendFields: Record<string, unknown>[] = []): Promise<{ poolId: string; backendIds: string[] }> {
  const n = ++names;
  const p = await t.api.post('/api/v1/pools', { name: `pp-pool-${n}`, ...fields });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const backendIds: string[] = [];
  for (const [i, port] of ports.entries()) {
    const b = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { name: `pp-b${n}-${i}`, ip_address: '127.0.0.1', port, ...backendFields[i] });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    backendIds.push(b.body.server_id);
  }
  return { poolId: p.body.pool_id, backendIds };
}

async function listener(protocol: string, poolId: string, fields: Record<string, unknown> = {}): Promise<{ id: string; port: number; path: string }> {
  const port = await freePort();
  const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
    name: `pp-${protocol.toLowerCase()}-${++names}`,
    protocol,
    bind_address: '127.0.0.1',
    port,
    default_pool_id: poolId,
    ...fields,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.status, 'ACTIVE', JSON.stringify(res.body));
  return { id: res.body.listener_id, port, path: `/api/v1/load-balancers/${lbId}/listeners/${res.body.listener_id}` };
}

/** A new connection that writes `pieces` one write at a time, then a GET; the response. */
async function requestVia(port: number, pieces: Buffer[], path = '/'): Promise<{ client: RawClient; res: RawResponse }> {
  const client = await RawClient.connect(port);
  closers.push(() => void client.destroy());
  for (const p of pieces) await client.write(p);
  await client.write(rawRequest('GET', path));
  return { client, res: await client.final() };
}

function seenFor(path: string) {
  const seen = web.seen.filter((s) => s.url === path);
  assert.equal(seen.length, 1, `one request ${path} reached the backend: ${JSON.stringify(web.seen.map((s) => s.url))}`);
  return seen[0]!;
}

// Order: first what does not read a client's header (headers sent to backends), then refusals
// (nothing follows a header there), then accepted headers with data behind them: each block's
// results are reported even if a later one brings the accept path down.

/** Opens a client connection to a TCP listener, sends `payload` (after `preamble`, if any), and checks the echo. */
async function echoThrough(port: number, payload: Buffer, preamble?: Buffer): Promise<Socket> {
  const socket = await connectTcp(port);
  closers.push(() => void socket.destroy());
  if (preamble) socket.write(preamble);
  assert.ok((await roundTrip(socket, payload)).equals(payload), 'the payload came back untouched');
  return socket;
}

describe('PROXY protocol to backends behind a TCP listener', () => {
  let backend: ProxyBackend;
  before(async () => {
    backend = await startProxyBackend('echo');
    closers.push(() => backend.close());
  });
  const payload = Buffer.concat([Buffer.from('PROXY TCP4 not a header, just data\r\n'), Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff))]);

  for (const [label, version, poolFields, backendFields] of [
    ['pool proxy_protocol V1', 1, { proxy_protocol: 'V1' }, {}],
    ['pool proxy_protocol V2', 2, { proxy_protocol: 'V2' }, {}],
    ['backend send_proxy_v2: true (pool NONE)', 2, {}, { send_proxy_v2: true }],
  ] as const) {
    it(`${label}: the backend gets a v${version} header naming the client and the listener, then the client’s bytes untouched`, async () => {
      const { poolId } = await makePool([backend.port], poolFields, [backendFields]);
      const l = await listener('TCP', poolId);
      const before = backend.connections.length;
      const socket = await echoThrough(l.port, payload);
      assert.equal(backend.connections.length, before + 1);
      const conn = backend.connections.at(-1)!;
      assert.equal(conn.invalid, undefined, conn.invalid);
      assert.equal(conn.version, version);
      assert.deepEqual(conn.addresses, {
        kind: 'TCP4',
        sourceAddress: '127.0.0.1',
        sourcePort: socket.localPort,
        destinationAddress: '127.0.0.1',
        destinationPort: l.port,
      });
      assert.ok(conn.data.equals(payload), 'the bytes after the header are the client’s, untouched');
      socket.destroy();
    });
  }

});

describe('PROXY protocol to backends behind an HTTP listener', () => {
  it('each client connection gets its own backend connection with its own header, reused by its later requests', async () => {
    const backend = await startProxyBackend({
      http: (req, res, conn) => {
        req.resume();
        req.on('end', () => {
          const body = JSON.stringify({ conn: backend.connections.indexOf(conn), address: conn.addresses?.sourceAddress, port: conn.addresses?.sourcePort });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
      },
    });
    closers.push(() => backend.close());
    const { poolId } = await makePool([backend.port], { proxy_protocol: 'V2' });
    const l = await listener('HTTP', poolId);
    const ask = async (client: RawClient, path: string) => {
      await client.write(rawRequest('GET', path));
      const res = await client.final();
      assert.equal(res.status, 200, res.head);
      return JSON.parse(res.body.toString()) as { conn: number; address: string; port: number };
    };
    const a = await RawClient.connect(l.port);
    closers.push(() => void a.destroy());
    const b = await RawClient.connect(l.port);
    closers.push(() => void b.destroy());
    const a1 = await ask(a, '/a1');
    const a2 = await ask(a, '/a2');
    const b1 = await ask(b, '/b1');
    assert.deepEqual(a1, { conn: 0, address: '127.0.0.1', port: a.socket.localPort }, 'the first client’s header');
    assert.deepEqual(a2, a1, 'the second request of the first client reused its backend connection');
    assert.deepEqual(b1, { conn: 1, address: '127.0.0.1', port: b.socket.localPort }, 'the second client’s own connection and header');
    assert.equal(backend.connections.length, 2, 'two clients, two backend connections');
    assert.deepEqual(
      backend.connections.map((c) => [c.version, c.addresses?.sourcePort, c.addresses?.destinationAddress, c.addresses?.destinationPort]),
      [
        [2, a.socket.localPort, '127.0.0.1', l.port],
        [2, b.socket.localPort, '127.0.0.1', l.port],
      ],
    );
  });
});

describe('PROXY protocol from clients: refusals', () => {
  let l: { id: string; port: number; path: string };
  const to = () => ({ address: '127.0.0.1', port: l.port });
  before(async () => {
    const { poolId } = await makePool([web.port]);
    l = await listener('HTTP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
  });

  it('a plain request with no header is closed unanswered and counted as proxy_invalid', async () => {
    const before = web.seen.length;
    const { received } = await expectCut(l.port, rawRequest('GET', '/no-header'));
    assert.equal(received.length, 0, `no byte answered: ${JSON.stringify(received.toString('latin1'))}`);
    assert.equal(web.seen.length, before, 'nothing reached the backend');
    assert.equal(await refusedCount(t.api, l.id, 'proxy_invalid'), 1);
  });

  it('a header that never completes is closed after timeouts.client_ms and counted as proxy_timeout', async () => {
    const patched = await t.api.patch(l.path, { timeouts: { client_ms: 300 } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    try {
      const started = Date.now();
      const socket = await connectTcp(l.port);
      closers.push(() => void socket.destroy());
      socket.write(proxyHeaderV1(CARRIED, to()).subarray(0, 16)); // "PROXY TCP4 203.0"
      const { received, elapsedMs } = await waitCut(socket, started);
      assert.equal(received.length, 0);
      assert.ok(elapsedMs >= 280, `closed after ${elapsedMs} ms, not before client_ms (300)`);
      assert.ok(elapsedMs < 5_000, `closed after ${elapsedMs} ms: client_ms is 300`);
      assert.equal(await refusedCount(t.api, l.id, 'proxy_timeout'), 1);
      assert.equal(await refusedCount(t.api, l.id, 'proxy_invalid'), 1, 'a timeout is not counted as invalid');
    } finally {
      await t.api.patch(l.path, { timeouts: { client_ms: 60_000 } });
    }
  });

  it('a peer outside trusted_cidrs is closed at once, valid header or not, and counted as proxy_untrusted', async () => {
    const { poolId } = await makePool([web.port]);
    const other = await listener('HTTP', poolId, { accept_proxy_protocol: { enabled: true, trusted_cidrs: ['10.0.0.0/8'] } });
    const before = web.seen.length;
    const started = Date.now();
    const socket = await connectTcp(other.port);
    closers.push(() => void socket.destroy());
    // Nothing written: an untrusted peer is closed before a byte is read.
    const { received, elapsedMs } = await waitCut(socket, started);
    assert.equal(received.length, 0);
    assert.ok(elapsedMs < 2_000, `closed at once, not after a timeout (${elapsedMs} ms)`);
    const again = await expectCut(other.port, Buffer.concat([proxyHeaderV1(CARRIED, { address: '127.0.0.1', port: other.port }), rawRequest('GET', '/untrusted')]));
    assert.equal(again.received.length, 0);
    assert.equal(web.seen.length, before, 'nothing reached the backend');
    assert.equal(await refusedCount(t.api, other.id, 'proxy_untrusted'), 2);
  });

  it('TCP: no header is closed as proxy_invalid', async () => {
    const { poolId } = await makePool([echo.port]);
    const l = await listener('TCP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    const before = echo.connections;
    const cut = await expectCut(l.port, 'hello\n');
    assert.equal(cut.received.length, 0);
    assert.equal(echo.connections, before);
    assert.equal(await refusedCount(t.api, l.id, 'proxy_invalid'), 1);
  });
});

describe('PROXY protocol from clients on an HTTP listener', () => {
  let l: { id: string; port: number; path: string };
  const to = () => ({ address: '127.0.0.1', port: l.port });
  before(async () => {
    const { poolId } = await makePool([web.port]);
    l = await listener('HTTP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    assert.deepEqual((await t.api.get(l.path)).body.accept_proxy_protocol, TRUST_LOOPBACK);
  });

  it('a v1 header then a request on the same socket: the backend sees the carried address in X-Forwarded-For', async () => {
    const { res } = await requestVia(l.port, [proxyHeaderV1(CARRIED, to())], '/v1');
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/v1').headers['x-forwarded-for'], '203.0.113.7');
  });

  it('a header and the request in one write (one segment, as a balancer in front sends them)', async () => {
    const client = await RawClient.connect(l.port);
    closers.push(() => void client.destroy());
    await client.write(Buffer.concat([proxyHeaderV1(CARRIED, to()), rawRequest('GET', '/one-write')]));
    const res = await client.final();
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/one-write').headers['x-forwarded-for'], '203.0.113.7');
  });

  it('a v2 header likewise', async () => {
    const { res } = await requestVia(l.port, [proxyHeaderV2(CARRIED, to())], '/v2');
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/v2').headers['x-forwarded-for'], '203.0.113.7');
  });

  it('a header that arrives in several writes, the request in the same write as its tail', async () => {
    const v2 = proxyHeaderV2({ address: '198.51.100.23', port: 5555 }, to());
    const v1 = proxyHeaderV1({ address: '198.51.100.24', port: 5556 }, to());
    const a = await requestVia(l.port, [v2.subarray(0, 5), v2.subarray(5, 13), v2.subarray(13, 20), v2.subarray(20)], '/split-v2');
    assert.equal(a.res.status, 200, a.res.head);
    assert.equal(seenFor('/split-v2').headers['x-forwarded-for'], '198.51.100.23');
    const client = await RawClient.connect(l.port);
    closers.push(() => void client.destroy());
    await client.write(v1.subarray(0, 7));
    await client.write(v1.subarray(7, 20));
    await client.write(Buffer.concat([v1.subarray(20), rawRequest('GET', '/split-v1')]));
    const res = await client.final();
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/split-v1').headers['x-forwarded-for'], '198.51.100.24');
  });

  it('a LOCAL v2 header keeps the peer’s own address (127.0.0.1)', async () => {
    const { res } = await requestVia(l.port, [V2_LOCAL], '/local');
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/local').headers['x-forwarded-for'], '127.0.0.1');
  });

});

describe('the carried address is the client’s', () => {
  it('drives the access list: DENY 203.0.113.0/24 refuses a header carrying 203.0.113.7, one carrying 198.51.100.1 passes', async () => {
    const { poolId } = await makePool([web.port]);
    const l = await listener('HTTP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    const acl = await t.api.post(`${l.path}/access-list`, { network_items: [{ address: '203.0.113.0/24', type: 'DENY' }] });
    assert.equal(acl.status, 200, JSON.stringify(acl.body));
    const to = { address: '127.0.0.1', port: l.port };
    const before = web.seen.length;
    const cut = await expectCut(l.port, Buffer.concat([proxyHeaderV1(CARRIED, to), rawRequest('GET', '/denied')]));
    assert.equal(cut.received.length, 0);
    assert.equal(web.seen.length, before);
    assert.equal(await refusedCount(t.api, l.id, 'access_list'), 1);
    const { res } = await requestVia(l.port, [proxyHeaderV2({ address: '198.51.100.1', port: 1234 }, to)], '/allowed');
    assert.equal(res.status, 200, res.head);
    assert.equal(seenFor('/allowed').headers['x-forwarded-for'], '198.51.100.1');
  });

  it('drives IP_HASH: one carried address keeps its backend, different carried addresses from the same peer spread', async () => {
    const backends = await Promise.all(['hash-a', 'hash-b', 'hash-c'].map((n) => startBackend(n)));
    for (const b of backends) closers.push(() => b.close());
    const { poolId } = await makePool(backends.map((b) => b.port), { algorithm: 'IP_HASH' });
    const l = await listener('HTTP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    const to = { address: '127.0.0.1', port: l.port };
    const via = async (address: string): Promise<string> => {
      const { client, res } = await requestVia(l.port, [proxyHeaderV1({ address, port: 40000 }, to)]);
      client.destroy();
      assert.equal(res.status, 200, res.head);
      return res.body.toString();
    };
    const same = new Set<string>();
    for (let i = 0; i < 20; i++) same.add(await via('203.0.113.7'));
    assert.equal(same.size, 1, `203.0.113.7 always lands on one backend: ${[...same].join(', ')}`);
    const spread = new Set<string>();
    for (let i = 1; i <= 50; i++) spread.add(await via(`198.51.100.${i}`));
    assert.ok(spread.size >= 2, `50 carried addresses from one peer cover at least 2 backends: ${[...spread].join(', ')}`);
  });

  it('with a PROXY header accepted from the client, the header sent on names the carried client', async () => {
    const backend = await startProxyBackend('echo');
    closers.push(() => backend.close());
    const payload = Buffer.from('after the header\n');
    const { poolId } = await makePool([backend.port], { proxy_protocol: 'V2' });
    const l = await listener('TCP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    const socket = await echoThrough(l.port, payload, proxyHeaderV1(CARRIED, { address: '192.0.2.10', port: 8443 }));
    const conn = backend.connections.at(-1)!;
    assert.equal(conn.version, 2);
    assert.deepEqual(conn.addresses, {
      kind: 'TCP4',
      sourceAddress: '203.0.113.7',
      sourcePort: 40000,
      destinationAddress: '127.0.0.1',
      destinationPort: l.port,
    });
    assert.ok(conn.data.equals(payload));
    socket.destroy();
  });
});

describe('PROXY protocol from clients on TCP and HTTPS listeners', () => {
  it('TCP: a v1 header is taken off; the bytes after it reach the backend untouched', async () => {
    const { poolId } = await makePool([echo.port]);
    const l = await listener('TCP', poolId, { accept_proxy_protocol: TRUST_LOOPBACK });
    const socket = await connectTcp(l.port);
    closers.push(() => void socket.destroy());
    const before = echo.connections;
    const payload = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
    socket.write(proxyHeaderV1(CARRIED, { address: '127.0.0.1', port: l.port }));
    assert.ok((await roundTrip(socket, payload)).equals(payload), 'the payload came back as sent');
    assert.equal(echo.connections, before + 1);
    assert.ok(echo.received.at(-1)!.equals(payload), 'the backend received exactly the client’s bytes, no header');
    socket.destroy();
  });

  it('HTTPS: a v2 header, then TLS on the same socket: the request is forwarded with the carried address', async () => {
    const { poolId } = await makePool([web.port]);
    const l = await listener('HTTPS', poolId, { tls: { certificate_ids: [httpsCertId] }, accept_proxy_protocol: TRUST_LOOPBACK });
    const raw = await connectTcp(l.port);
    closers.push(() => void raw.destroy());
    raw.write(proxyHeaderV2(CARRIED, { address: '127.0.0.1', port: l.port }));
    const tlsSocket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = connectTls({ socket: raw, servername: 'localhost', ca: ca.cert }, () => resolve(s));
      s.once('error', reject);
    });
    tlsSocket.write('GET /over-tls HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const res = await readResponse(tlsSocket);
    assert.equal(res.status, 200, res.head);
    const seen = seenFor('/over-tls');
    assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    tlsSocket.destroy();
  });
});
