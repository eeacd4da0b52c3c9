/**
 * Access lists and connection throttles on live listeners (docs/access-control.md), seen from a
 * client: a refused connection is closed with no byte answered and reaches no backend (HTTP over
 * the throttle: a 503), every refusal is counted in `fulcrum_connections_refused_total` by reason,
 * and list and throttle changes apply to the next connection without touching open ones.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { connect as connectTls, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { assertError, fieldsOf } from '../helpers/assertions.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { startBackend, type TestBackend } from '../helpers/http-lb.ts';
import {
  captureClientHello,
  connectTcp,
  type CountingServer,
  expectCut,
  readResponse,
  refusedCount,
  roundTrip,
  startEchoServer,
  waitForMetric,
} from '../helpers/net-probes.ts';
import { RawClient, rawRequest } from '../helpers/raw-http.ts';
import { uploadCert } from '../helpers/tls.ts';

const PT_NAME = 'pt.example.com';

let t: TestFulcrum;
let lbId: string;
let certs: CertFactory;
let ca: Pem;
let httpsCertId: string;
let echo: CountingServer;
let web: TestBackend;
let webConnections = 0;
let tlsEcho: { port: number; connections: number; server: TlsServer };
let clientHello: Buffer;
const pools: Record<'TCP' | 'HTTP' | 'TLS', string> = { TCP: '', HTTP: '', TLS: '' };
const cleanups: (() => void)[] = [];

async function pool(name: string, port: number): Promise<string> {
  const p = await t.api.post('/api/v1/pools', { name });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const b = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { name: `${name}-backend`, ip_address: '127.0.0.1', port });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  return p.body.pool_id;
}

before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('Access Control CA');
  httpsCertId = await uploadCert(t.api, 'ac-https', certs.leaf(['localhost'], { ca }), ca.cert);
  echo = await startEchoServer();
  web = await startBackend('web');
  web.server.on('connection', () => webConnections++);
  const ptLeaf = certs.leaf([PT_NAME], { ca });
  const server = createTlsServer({ cert: ptLeaf.cert, key: ptLeaf.key }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  tlsEcho = { port: 0, connections: 0, server };
  server.on('connection', () => tlsEcho.connections++);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  tlsEcho.port = (server.address() as AddressInfo).port;
  clientHello = await captureClientHello(PT_NAME);
  pools.TCP = await pool('ac-tcp', echo.port);
  pools.HTTP = await pool('ac-http', web.port);
  pools.TLS = await pool('ac-tls', tlsEcho.port);
  const lb = await t.api.post('/api/v1/load-balancers', { name: 'access-control-traffic' });
  assert.equal(lb.status, 201, JSON.stringify(lb.body));
  lbId = lb.body.lb_id;
});

after(async () => {
  for (const c of cleanups) c();
  await t.close();
  await echo.close();
  await web.close();
  await new Promise<void>((resolve) => tlsEcho.server.close(() => resolve()));
  certs.remove();
});

let listenerCount = 0;

interface TestListener {
  id: string;
  port: number;
  acl: string;
  throttle: string;
}

async function listener(protocol: string, poolId: string, fields: Record<string, unknown> = {}, host = '127.0.0.1'): Promise<TestListener> {
  const port = await freePort(host);
  const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
    name: `ac-${protocol.toLowerCase()}-${++listenerCount}`,
    protocol,
    bind_address: host,
    port,
    default_pool_id: poolId,
    ...fields,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.status, 'ACTIVE', JSON.stringify(res.body));
  const base = `/api/v1/load-balancers/${lbId}/listeners/${res.body.listener_id}`;
  return { id: res.body.listener_id, port, acl: `${base}/access-list`, throttle: `${base}/connection-throttle` };
}

async function setList(l: TestListener, items: [string, 'ALLOW' | 'DENY'][]): Promise<void> {
  const res = await t.api.post(l.acl, { network_items: items.map(([address, type]) => ({ address, type })) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function setThrottle(l: TestListener, throttle: Record<string, number>): Promise<void> {
  const res = await t.api.put(l.throttle, throttle);
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

/** A working client connection of some listener kind. */
interface Session {
  /** Fails unless the connection still carries traffic end to end. */
  check(): Promise<void>;
  close(): void;
}

interface Kind {
  protocol: 'HTTP' | 'TCP' | 'TLS_PASSTHROUGH';
  pool(): string;
  /** Contacts the kind's backend has had so far (connections; for HTTP, connections plus requests, as upstream connections are reused). */
  backendContacts(): number;
  /** What a client of this kind writes first. */
  firstBytes(): Buffer;
  /** Opens a connection and checks it works. */
  open(port: number, host?: string): Promise<Session>;
}

async function tcpSession(port: number, host = '127.0.0.1'): Promise<Session & { socket: Socket }> {
  const socket = await connectTcp(port, host);
  cleanups.push(() => socket.destroy());
  let n = 0;
  const check = async () => {
    const line = `ping ${++n} from ${socket.localPort}\n`;
    assert.equal((await roundTrip(socket, line)).toString(), line, 'echoed through the listener');
  };
  await check();
  return { socket, check, close: () => socket.destroy() };
}

function tlsConnect(port: number, options: { servername: string; host?: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ host: options.host ?? '127.0.0.1', port, servername: options.servername, ca: ca.cert }, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', reject);
    cleanups.push(() => socket.destroy());
  });
}

const KINDS: Kind[] = [
  {
    protocol: 'HTTP',
    pool: () => pools.HTTP,
    backendContacts: () => webConnections + web.seen.length,
    firstBytes: () => rawRequest('GET', '/acl'),
    open: async (port, host) => {
      const client = await RawClient.connect(port, host);
      cleanups.push(() => client.destroy());
      const check = async () => {
        await client.write(rawRequest('GET', '/acl'));
        const res = await client.final();
        assert.equal(res.status, 200, res.head);
        assert.equal(res.body.toString(), 'web');
      };
      await check();
      return { check, close: () => client.destroy() };
    },
  },
  {
    protocol: 'TCP',
    pool: () => pools.TCP,
    backendContacts: () => echo.connections,
    firstBytes: () => Buffer.from('hello?\n'),
    open: (port, host) => tcpSession(port, host),
  },
  {
    protocol: 'TLS_PASSTHROUGH',
    pool: () => pools.TLS,
    backendContacts: () => tlsEcho.connections,
    firstBytes: () => clientHello,
    open: async (port, host) => {
      const socket = await tlsConnect(port, { servername: PT_NAME, host });
      let n = 0;
      const check = async () => {
        const line = `tls ping ${++n}\n`;
        assert.equal((await roundTrip(socket, line)).toString(), line, 'echoed end to end over TLS');
      };
      await check();
      return { check, close: () => socket.destroy() };
    },
  },
];

/** Connects, sends the kind's first bytes and asserts the listener cut it unanswered, with no backend contacted. */
async function assertRefused(kind: Kind, l: TestListener, reason: string, host = '127.0.0.1'): Promise<void> {
  const before = kind.backendContacts();
  const counted = await refusedCount(t.api, l.id, reason);
  const { received } = await expectCut(l.port, kind.firstBytes(), host);
  assert.equal(received.length, 0, `no byte answered, got ${JSON.stringify(received.toString('latin1').slice(0, 100))}`);
  assert.equal(kind.backendContacts(), before, 'nothing reached the backend');
  assert.equal(await refusedCount(t.api, l.id, reason), counted + 1, `counted with reason="${reason}"`);
}

for (const kind of KINDS) {
  describe(`access list on a ${kind.protocol} listener`, () => {
    let l: TestListener;
    before(async () => {
      l = await listener(kind.protocol, kind.pool());
    });

    it('without a list the client gets through', async () => {
      (await kind.open(l.port)).close();
    });

    it('a DENY of 127.0.0.1/32 closes the connection with no byte answered, reaches no backend, and is counted as access_list', async () => {
      assert.equal(await refusedCount(t.api, l.id, 'access_list'), 0, 'nothing refused yet');
      await setList(l, [['127.0.0.1/32', 'DENY']]);
      await assertRefused(kind, l, 'access_list');
      assert.equal(await refusedCount(t.api, l.id, 'access_list'), 1);
    });

    it('an allow-list (ALLOW 127.0.0.1, DENY 0.0.0.0/0) lets 127.0.0.1 in', async () => {
      await setList(l, [['127.0.0.1', 'ALLOW'], ['0.0.0.0/0', 'DENY']]);
      const before = kind.backendContacts();
      (await kind.open(l.port)).close();
      assert.ok(kind.backendContacts() > before, 'the backend was reached');
    });

    it('a narrower DENY outranks an ALLOW: DENY 127.0.0.0/8 with ALLOW 127.0.0.1 refuses 127.0.0.1', async () => {
      await setList(l, [['127.0.0.0/8', 'DENY'], ['127.0.0.1', 'ALLOW']]);
      await assertRefused(kind, l, 'access_list');
    });

    it('deleting the list lets the next connection in', async () => {
      const del = await t.api.delete(l.acl);
      assert.equal(del.status, 200, JSON.stringify(del.body));
      assert.deepEqual(del.body, { listener_id: l.id, deleted: 2 });
      (await kind.open(l.port)).close();
    });

    it('a connection opened before a DENY keeps working; only new connections are refused', async () => {
      const open = await kind.open(l.port);
      await setList(l, [['127.0.0.1/32', 'DENY']]);
      await assertRefused(kind, l, 'access_list');
      await open.check();
      await open.check();
      open.close();
      await t.api.delete(l.acl);
    });
  });
}

describe('access list and IPv6', () => {
  it('a listener bound to ::1 refuses a ::1 client under a ::/0 DENY, and 0.0.0.0/0 alone does not touch it', async () => {
    const tcp = KINDS.find((k) => k.protocol === 'TCP')!;
    const l = await listener('TCP', pools.TCP, {}, '::1');
    (await tcp.open(l.port, '::1')).close();
    await setList(l, [['::/0', 'DENY']]);
    await assertRefused(tcp, l, 'access_list', '::1');
    await setList(l, [['0.0.0.0/0', 'DENY']]);
    (await tcp.open(l.port, '::1')).close();
    assert.equal(await refusedCount(t.api, l.id, 'access_list'), 1, 'only the ::/0 refusal counted');
  });

  it('IPv4 clients of a listener with only a ::/0 DENY are not affected', async () => {
    const tcp = KINDS.find((k) => k.protocol === 'TCP')!;
    const l = await listener('TCP', pools.TCP);
    await setList(l, [['::/0', 'DENY']]);
    const s = await tcp.open(l.port);
    await s.check();
    s.close();
    assert.equal(await refusedCount(t.api, l.id, 'access_list'), 0);
  });
});

describe('connection throttle', () => {
  it('max_connections 2 on a TCP listener: a third simultaneous connection is closed, and gets in once one closes', async () => {
    const tcp = KINDS.find((k) => k.protocol === 'TCP')!;
    const l = await listener('TCP', pools.TCP);
    await setThrottle(l, { max_connections: 2 });
    const a = await tcpSession(l.port);
    const b = await tcpSession(l.port);
    await assertRefused(tcp, l, 'max_connections');
    await a.check();
    await b.check();
    const closed = new Promise((resolve) => a.socket.once('close', resolve));
    a.socket.end();
    await closed;
    // Nothing tells a client when the listener has counted the close; its active-connection gauge does.
    await waitForMetric(t.api, 'fulcrum_connections_active', { listener: l.id }, (v) => v === 1, 'the closed connection stops counting');
    const c = await tcpSession(l.port);
    await c.check();
    await b.check();
    assert.equal(await refusedCount(t.api, l.id, 'max_connections'), 1);
    b.close();
    c.close();
  });

  it('max_connections 2 on an HTTP listener: the third connection is answered 503 "too many connections from your address" and closed', async () => {
    const l = await listener('HTTP', pools.HTTP);
    await setThrottle(l, { max_connections: 2 });
    const http = KINDS.find((k) => k.protocol === 'HTTP')!;
    const a = await http.open(l.port);
    const b = await http.open(l.port);
    const requestsBefore = web.seen.length;
    const c = await RawClient.connect(l.port);
    cleanups.push(() => c.destroy());
    await c.write(rawRequest('GET', '/third'));
    const res = await c.final();
    assert.equal(res.status, 503, res.head);
    assert.match(res.body.toString(), /too many connections from your address/);
    assert.ok(await c.closedByServer(), 'the connection is closed after the 503');
    assert.equal(web.seen.length, requestsBefore, 'the backend saw nothing of it');
    assert.equal(await refusedCount(t.api, l.id, 'max_connections'), 1);
    await a.check();
    await b.check();
    a.close();
    b.close();
  });

  it('min_connections must be below max_connections: {min 2, max 2} is refused 400 naming min_connections', async () => {
    const l = await listener('TCP', pools.TCP);
    const res = await t.api.put(l.throttle, { min_connections: 2, max_connections: 2 });
    const err = assertError(res, 400, 'VALIDATION_ERROR');
    assert.ok(fieldsOf(err).includes('min_connections'), JSON.stringify(err.details));
    assert.equal((await t.api.get(l.throttle)).body.connection_throttle, null, 'nothing written');
  });

  it('min_connections: a connection leaving the client at most min_connections open is admitted with an empty bucket, and still takes a token', async () => {
    const tcp = KINDS.find((k) => k.protocol === 'TCP')!;
    const l = await listener('TCP', pools.TCP);
    await setThrottle(l, { min_connections: 1, max_connection_rate: 1, rate_interval_seconds: 86_400 });
    // 1st: 1 open ≤ min_connections, admitted; it takes the only token since one is left.
    const first = await tcpSession(l.port);
    // 2nd: 2 open > min_connections, and the bucket is empty because the exempt one took the token.
    await assertRefused(tcp, l, 'max_connection_rate');
    const closed = new Promise((resolve) => first.socket.once('close', resolve));
    first.socket.end();
    await closed;
    await waitForMetric(t.api, 'fulcrum_connections_active', { listener: l.id }, (v) => v === 0, 'the closed connection stops counting');
    // 3rd: 1 open again ≤ min_connections: admitted though the bucket is empty.
    const third = await tcpSession(l.port);
    // 4th, with the 3rd still open: over min_connections, no token.
    await assertRefused(tcp, l, 'max_connection_rate');
    await third.check();
    third.close();
    assert.equal(await refusedCount(t.api, l.id, 'max_connection_rate'), 2);
  });

  it('max_connection_rate 3 per 60 s: the 4th connection within the interval is refused as max_connection_rate', async () => {
    const tcp = KINDS.find((k) => k.protocol === 'TCP')!;
    const l = await listener('TCP', pools.TCP);
    await setThrottle(l, { max_connection_rate: 3, rate_interval_seconds: 60 });
    for (let i = 0; i < 3; i++) {
      const s = await tcpSession(l.port);
      const closed = new Promise((resolve) => s.socket.once('close', resolve));
      s.socket.end();
      await closed;
    }
    await assertRefused(tcp, l, 'max_connection_rate');
    assert.equal(await refusedCount(t.api, l.id, 'max_connection_rate'), 1);
    assert.equal(await refusedCount(t.api, l.id, 'max_connections'), 0);
  });

  it('an HTTPS connection over the throttle completes its handshake and its request gets 503', async () => {
    const l = await listener('HTTPS', pools.HTTP, { tls: { certificate_ids: [httpsCertId] } });
    await setThrottle(l, { max_connections: 1 });
    const first = await tlsConnect(l.port, { servername: 'localhost' });
    first.write('GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const ok = await readResponse(first);
    assert.equal(ok.status, 200, ok.head);
    const requestsBefore = web.seen.length;
    const second = await tlsConnect(l.port, { servername: 'localhost' }); // resolves on secureConnect: the handshake completed
    assert.equal(second.authorized, true, 'the listener presented its certificate');
    second.write('GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const refused = await readResponse(second);
    assert.equal(refused.status, 503, refused.head);
    assert.match(refused.body.toString(), /too many connections from your address/);
    assert.equal(web.seen.length, requestsBefore, 'the backend saw nothing of it');
    assert.equal(await refusedCount(t.api, l.id, 'max_connections'), 1);
    first.destroy();
    second.destroy();
  });
});
