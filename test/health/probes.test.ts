/**
 * The protocol probes against real peers on 127.0.0.1: the machine's Redis, PostgreSQL and MySQL
 * (absent ones fail the test, saying which), a password-protected redis-server the test starts, an
 * ldapjs server, a gRPC server (grpc-js with a hand-written Health service), a DNS server on
 * node:dgram, and small TCP peers that answer wrongly or never. Every probe must settle with
 * 'timed out' when its signal aborts, and release its socket.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import grpc from '@grpc/grpc-js';
import ldap from 'ldapjs';
import { Ajv } from 'ajv';
import { checkHealthCheck, resolveHealthCheck } from '../../src/control/health-checks.ts';
import { HealthCheckInput, REDACTED, redactHealthCheck, type HealthCheck } from '../../src/model/health-check.ts';
import type { ProbeResult } from '../../src/health/probe.ts';
import { PROBES } from '../../src/health/probes/index.ts';
import { HEALTH_CHECK_PROTOCOLS } from '../../src/model/health-check.ts';

const HOST = '127.0.0.1';

function check(protocol: HealthCheck['protocol'], extra: Partial<HealthCheck> = {}): HealthCheck {
  return { ...resolveHealthCheck({ protocol }), ...extra };
}

function probe(protocol: HealthCheck['protocol'], port: number, extra: Partial<HealthCheck> = {}, ms = 5000): Promise<ProbeResult> {
  return PROBES[protocol]!({ host: HOST, port }, check(protocol, extra), AbortSignal.timeout(ms));
}

/** A service of this machine the test needs: a clear failure when it is not there. */
async function requireService(name: string, port: number): Promise<void> {
  const socket = connect({ host: HOST, port });
  try {
    await once(socket, 'connect');
  } catch (err) {
    assert.fail(`${name} must be running on ${HOST}:${port} for this test (${(err as NodeJS.ErrnoException).code})`);
  } finally {
    socket.destroy();
  }
}

async function listen(server: Server): Promise<number> {
  server.listen(0, HOST);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  server.close();
  await once(server, 'close');
  return port;
}

interface Peer {
  port: number;
  /** Resolves with each accepted socket's close, in order of acceptance. */
  closes: Promise<void>[];
  close(): Promise<void>;
}

/** A TCP peer that runs `onConnection` for each client (answers wrongly, or never). */
async function startPeer(onConnection: (socket: Socket) => void = () => {}): Promise<Peer> {
  const sockets = new Set<Socket>();
  const closes: Promise<void>[] = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    closes.push(once(socket, 'close').then(() => undefined));
    socket.on('error', () => {});
    socket.once('close', () => sockets.delete(socket));
    onConnection(socket);
    // A peer that does not read must still see the probe close: EOF is only noticed while reading.
    if (socket.listenerCount('data') === 0) socket.resume();
  });
  const port = await listen(server);
  return {
    port,
    closes,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** Reads from a socket until `done(bytes so far)` says the client's message is complete. */
function readUntil(socket: Socket, done: (buf: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!done(buf)) return;
      socket.off('data', onData);
      resolve(buf);
    };
    socket.on('data', onData);
  });
}

/**
 * The server side of an in-protocol TLS upgrade (PostgreSQL, MySQL). The client starts TLS right
 * after its request, so the ClientHello may arrive in the same read as the request: the bytes past
 * `used` are handed to TLS through a stream of their own rather than lost.
 */
function serverTls(plain: Socket, received: Buffer, used: number, options: { cert: string; key: string }): TLSSocket {
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      plain.write(chunk, callback);
    },
    final(callback) {
      plain.end();
      callback();
    },
  });
  if (received.length > used) stream.push(received.subarray(used));
  plain.on('data', (chunk: Buffer) => stream.push(chunk));
  plain.once('end', () => stream.push(null));
  const secure = new TLSSocket(stream, { isServer: true, ...options });
  secure.on('error', () => {});
  return secure;
}

describe('PROBES', () => {
  it('has a probe for every protocol a health check can name', () => {
    assert.deepEqual(Object.keys(PROBES).sort(), [...HEALTH_CHECK_PROTOCOLS].sort());
  });
});

describe('REDIS probe', () => {
  it('passes against the machine Redis (PING answered +PONG)', async () => {
    await requireService('Redis', 6379);
    assert.deepEqual(await probe('REDIS', 6379), { ok: true });
  });

  it('fails on a closed port', async () => {
    assert.deepEqual(await probe('REDIS', await closedPort()), { ok: false, error: 'connect ECONNREFUSED' });
  });

  it('fails against a TCP server that answers something else', async (t) => {
    const peer = await startPeer((s) => s.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n'));
    t.after(() => peer.close());
    assert.deepEqual(await probe('REDIS', peer.port), { ok: false, error: 'unexpected reply "HTTP/1.1 400 Bad Request"' });
  });

  it('fails against a server that closes without a line, and one that sends endless bytes without one', async (t) => {
    const quiet = await startPeer((s) => s.end('+PO'));
    const flood = await startPeer((s) => s.end(Buffer.alloc(8192, 0x41)));
    t.after(() => Promise.all([quiet.close(), flood.close()]));
    assert.deepEqual(await probe('REDIS', quiet.port), { ok: false, error: 'connection closed by server' });
    const r = await probe('REDIS', flood.port);
    assert.equal(r.ok, false);
    assert.match(r.error!, /^unexpected reply "AAAA/);
  });

  describe('with redis_password, against a redis-server started with requirepass', () => {
    let port: number;
    let stop: () => Promise<void>;
    before(async () => {
      port = await closedPort();
      const child = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--requirepass', 's3cret pass', '--save', '', '--appendonly', 'no'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const spawned = once(child, 'spawn').catch((err: Error) => assert.fail(`redis-server must be installed for this test: ${err.message}`));
      let out = '';
      const ready = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          if (out.includes('Ready to accept connections')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready: ${out}`)));
      });
      await spawned;
      await ready;
      stop = async () => {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      };
    });
    after(() => stop?.());

    it('passes with the right password (AUTH, then PING)', async () => {
      assert.deepEqual(await probe('REDIS', port, { redis_password: 's3cret pass' }), { ok: true });
    });

    it('fails with a wrong password, and without one, in the server’s words', async () => {
      const wrong = await probe('REDIS', port, { redis_password: 'nope' });
      assert.equal(wrong.ok, false);
      assert.match(wrong.error!, /^redis error: WRONGPASS/);
      assert.deepEqual(await probe('REDIS', port), { ok: false, error: 'redis error: NOAUTH Authentication required.' });
    });
  });
});

describe('PGSQL probe', () => {
  it('passes against the machine PostgreSQL (trust: AuthenticationOk … ReadyForQuery, then Terminate)', async () => {
    await requireService('PostgreSQL', 5432);
    assert.deepEqual(await probe('PGSQL', 5432), { ok: true });
  });

  it('passes, with the server’s words in error, when only the check’s login is refused', async () => {
    await requireService('PostgreSQL', 5432);
    const r = await probe('PGSQL', 5432, { pgsql_user: 'fulcrum_no_such_role' });
    assert.equal(r.ok, true);
    assert.match(r.error!, /28000 role "fulcrum_no_such_role" does not exist/);
    const db = await probe('PGSQL', 5432, { pgsql_database: 'fulcrum_no_such_db' });
    assert.equal(db.ok, true);
    assert.match(db.error!, /3D000 database "fulcrum_no_such_db" does not exist/);
  });

  it('sends a protocol 3.0 StartupMessage with user and database, and fails when the server cannot take connections (57P03)', async (t) => {
    let startup: Buffer | undefined;
    const peer = await startPeer(async (s) => {
      startup = await readUntil(s, (b) => b.length >= 4 && b.length >= b.readInt32BE(0));
      const fields = Buffer.from('SFATAL\0C57P03\0Mthe database system is starting up\0\0');
      const head = Buffer.alloc(5);
      head.write('E');
      head.writeInt32BE(4 + fields.length, 1);
      s.end(Buffer.concat([head, fields]));
    });
    t.after(() => peer.close());
    const r = await probe('PGSQL', peer.port, { pgsql_user: 'app', pgsql_database: 'shop' });
    assert.deepEqual(r, { ok: false, error: '57P03 the database system is starting up' });
    assert.equal(startup!.readInt32BE(4), 196608, 'protocol 3.0');
    assert.deepEqual(startup!.subarray(8).toString().split('\0'), ['user', 'app', 'database', 'shop', 'application_name', 'fulcrum-health-check', '', '']);
  });

  it('fails against a server that is not PostgreSQL, and when TLS is asked of one that refuses it', async (t) => {
    const http = await startPeer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const noTls = await startPeer(async (s) => {
      await readUntil(s, (b) => b.length >= 8);
      s.write('N');
    });
    t.after(() => Promise.all([http.close(), noTls.close()]));
    const r = await probe('PGSQL', http.port);
    assert.equal(r.ok, false);
    assert.match(r.error!, /^not a PostgreSQL reply/);
    assert.deepEqual(await probe('PGSQL', noTls.port, { tls_enabled: true }), { ok: false, error: 'server does not accept TLS' });
  });
});

describe('MYSQL probe', () => {
  it('passes on the machine MySQL’s greeting (protocol 10)', async () => {
    await requireService('MySQL', 3306);
    assert.deepEqual(await probe('MYSQL', 3306), { ok: true });
  });

  it('with mysql_user, logs in and quits cleanly (root has no password over TCP on this machine)', async () => {
    await requireService('MySQL', 3306);
    assert.deepEqual(await probe('MYSQL', 3306, { mysql_user: 'root' }), { ok: true }, 'root@127.0.0.1 must log in without a password');
  });

  it('with mysql_user the server refuses, passes with the server’s words (access denied, not a bad handshake)', async () => {
    await requireService('MySQL', 3306);
    const r = await probe('MYSQL', 3306, { mysql_user: 'fulcrum_no_such_user' });
    assert.equal(r.ok, true);
    assert.match(r.error!, /error 1045: Access denied for user 'fulcrum_no_such_user'/);
  });

  it('fails on an ERR packet instead of a greeting, and on a server that is not MySQL', async (t) => {
    const full = await startPeer((s) => {
      const payload = Buffer.concat([Buffer.from([0xff, 0x10, 0x04]), Buffer.from('Too many connections')]); // 1040
      const head = Buffer.from([payload.length, 0, 0, 0]);
      s.end(Buffer.concat([head, payload]));
    });
    const redisLike = await startPeer((s) => s.end('-ERR unknown command\r\n'));
    t.after(() => Promise.all([full.close(), redisLike.close()]));
    assert.deepEqual(await probe('MYSQL', full.port), { ok: false, error: 'error 1040: Too many connections' });
    const r = await probe('MYSQL', redisLike.port);
    assert.equal(r.ok, false);
    assert.match(r.error!, /^(not a MySQL greeting|connection closed by server)/);
  });
});

describe('LDAP probe (against an ldapjs server)', () => {
  let server: ldap.Server;
  let port: number;
  before(async () => {
    server = ldap.createServer();
    type BindResult = { status: number; diagnosticMessage: string; end(): void };
    server.bind('cn=health,dc=example,dc=org', (req: { credentials: string }, res: BindResult, next: () => void) => {
      // Set on the response itself: ldapjs 3 drops an error's message on the way to diagnosticMessage.
      if (req.credentials !== 'right') {
        res.status = 49;
        res.diagnosticMessage = 'bad password for health';
      }
      res.end();
      return next();
    });
    await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
    port = Number(new URL(server.url).port);
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('passes an anonymous bind (resultCode 0)', async () => {
    assert.deepEqual(await probe('LDAP', port), { ok: true });
  });

  it('passes a simple bind with the right password; fails with a wrong one, giving the code', async () => {
    assert.deepEqual(await probe('LDAP', port, { ldap_bind_dn: 'cn=health,dc=example,dc=org', ldap_password: 'right' }), { ok: true });
    const r = await probe('LDAP', port, { ldap_bind_dn: 'cn=health,dc=example,dc=org', ldap_password: 'wrong' });
    assert.deepEqual(r, { ok: false, error: 'result 49 invalidCredentials: bad password for health' });
  });

  it('fails against a server that is not LDAP', async (t) => {
    const peer = await startPeer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    t.after(() => peer.close());
    assert.deepEqual(await probe('LDAP', peer.port), { ok: false, error: 'not an LDAP reply "HT"' });
  });
});

/** Wire bytes of an IPv6 address (the test's own, independent of the probe's). */
function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = [...h, ...Array(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** A DNS server on UDP: answers A and AAAA from `zone`, NXDOMAIN for names it does not hold. */
async function startDns(zone: Record<string, { A?: string[]; AAAA?: string[] }>): Promise<{ port: number; socket: UdpSocket }> {
  const socket = createSocket('udp4');
  socket.on('message', (query, from) => {
    let at = 12;
    const labels: string[] = [];
    while (query[at] !== 0) {
      labels.push(query.toString('latin1', at + 1, at + 1 + query[at]!));
      at += 1 + query[at]!;
    }
    at += 1;
    const qtype = query.readUInt16BE(at);
    at += 4;
    const entry = zone[labels.join('.').toLowerCase()];
    const addresses = (qtype === 1 ? entry?.A : qtype === 28 ? entry?.AAAA : undefined) ?? [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // id
    header.writeUInt16BE(0x8180 | (entry ? 0 : 3), 2); // response, RD, RA; rcode 3 = NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(addresses.length, 6);
    const answers = addresses.map((a) => {
      const rdata = qtype === 1 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(rdata.length, 10);
      return Buffer.concat([rr, rdata]);
    });
    socket.send(Buffer.concat([header, query.subarray(12, at), ...answers]), from.port, from.address);
  });
  socket.bind(0, HOST);
  await once(socket, 'listening');
  return { port: socket.address().port, socket };
}

describe('DNS probe (against a node:dgram DNS server)', () => {
  let dns: { port: number; socket: UdpSocket };
  before(async () => {
    dns = await startDns({
      'app.test': { A: ['10.0.0.1', '10.0.0.2'] },
      'v6.test': { AAAA: ['2001:db8::1'] },
    });
  });
  after(() => dns.socket.close());

  it('passes when the name resolves', async () => {
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'app.test' }), { ok: true });
  });

  it('passes when the answer contains expected_address (A, and AAAA however the address is spelled)', async () => {
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'app.test', expected_address: '10.0.0.2' }), { ok: true });
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'v6.test', expected_address: '2001:0db8:0:0::1' }), { ok: true });
  });

  it('fails when the answer lacks expected_address', async () => {
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'app.test', expected_address: '10.0.0.9' }), {
      ok: false,
      error: 'expected 10.0.0.9, got 10.0.0.1, 10.0.0.2',
    });
  });

  it('fails on NXDOMAIN, and when the name has no record of the type asked', async () => {
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'missing.test' }), { ok: false, error: 'NXDOMAIN' });
    assert.deepEqual(await probe('DNS', dns.port, { dns_name: 'v6.test' }), { ok: false, error: 'no records of that type (NODATA)' });
  });
});

/** grpc.health.v1 by hand: the test's own encoding, independent of the probe's. */
const SERVING = 1;
const NOT_SERVING = 2;
const identity = (b: Buffer) => b;
const HealthService: grpc.ServiceDefinition = {
  check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

function decodeService(request: Buffer): string {
  if (request.length === 0) return '';
  assert.equal(request[0], 0x0a, 'field 1, length-delimited');
  assert.ok(request[1]! < 0x80, 'a short name has a one-byte length');
  return request.toString('utf8', 2, 2 + request[1]!);
}

async function startGrpc(services: grpc.ServiceDefinition | undefined, statuses: Record<string, number>, seen: string[]) {
  const server = new grpc.Server();
  if (services) {
    server.addService(services, {
      check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const service = decodeService(call.request);
        seen.push(service);
        const status = statuses[service];
        if (status === undefined) return callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
        callback(null, Buffer.from([0x08, status]));
      },
    });
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${HOST}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

describe('GRPC probe (against a grpc-js server)', () => {
  const seen: string[] = [];
  let health: { port: number; close: () => Promise<void> };
  before(async () => {
    health = await startGrpc(HealthService, { '': SERVING, 'shop.Cart': SERVING, 'shop.Db': NOT_SERVING }, seen);
  });
  after(() => health.close());

  it('passes when the server is SERVING (the empty service name: the whole server)', async () => {
    assert.deepEqual(await probe('GRPC', health.port), { ok: true, statusCode: 200 });
    assert.deepEqual(await probe('GRPC', health.port, { grpc_service: 'shop.Cart' }), { ok: true, statusCode: 200 });
    assert.deepEqual(seen.slice(-2), ['', 'shop.Cart'], 'the server read the service names the probe sent');
  });

  it('fails when the service is NOT_SERVING, and when the server does not know it (grpc-status 5)', async () => {
    assert.deepEqual(await probe('GRPC', health.port, { grpc_service: 'shop.Db' }), { ok: false, statusCode: 200, error: 'NOT_SERVING' });
    assert.deepEqual(await probe('GRPC', health.port, { grpc_service: 'shop.None' }), {
      ok: false,
      statusCode: 200,
      error: 'grpc-status 5 NOT_FOUND: unknown service shop.None',
    });
  });

  it('fails against a gRPC server without the health service (UNIMPLEMENTED), and a TCP server that is not HTTP/2', async (t) => {
    const bare = await startGrpc(undefined, {}, []);
    const peer = await startPeer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    t.after(() => Promise.all([bare.close(), peer.close()]));
    const r = await probe('GRPC', bare.port);
    assert.equal(r.ok, false);
    assert.match(r.error!, /^grpc-status 12 UNIMPLEMENTED/);
    const h1 = await probe('GRPC', peer.port);
    assert.equal(h1.ok, false);
    assert.match(h1.error!, /HTTP\/2|closed/);
  });
});

describe('HTTP probe', () => {
  it('passes on an expected status, or one matching expected_status_regex; the body regex must match too', async (t) => {
    const server = createHttpServer((req, res) => {
      if (req.url === '/204') return void res.writeHead(204).end();
      res.writeHead(req.url === '/ok' ? 200 : 500, { 'content-type': 'text/plain' });
      res.end(req.url === '/ok' ? '{"status":"ok"}' : 'broken');
    });
    t.after(() => server.close());
    const port = await listen(server as unknown as Server);
    assert.deepEqual(await probe('HTTP', port, { path: '/ok' }), { ok: true, statusCode: 200 });
    assert.deepEqual(await probe('HTTP', port, { path: '/204', expected_status_codes: [200, 204] }), { ok: true, statusCode: 204 });
    assert.equal((await probe('HTTP', port, { path: '/204', expected_status_regex: '^2\\d\\d$' })).ok, true);
    assert.deepEqual(await probe('HTTP', port, { path: '/bad' }), { ok: false, statusCode: 500, error: 'status 500' });
    assert.deepEqual(await probe('HTTP', port, { path: '/ok', expected_body_regex: '"status":"ok"' }), { ok: true, statusCode: 200, bodyMatched: true });
    assert.deepEqual(await probe('HTTP', port, { path: '/ok', expected_body_regex: 'nope' }), { ok: false, statusCode: 200, bodyMatched: false, error: 'body did not match' });
  });

  it('sends the method, path, headers and host header asked for', async (t) => {
    let seen: { method?: string; url?: string; host?: string; x?: string | string[] } = {};
    const server = createHttpServer((req, res) => {
      seen = { method: req.method, url: req.url, host: req.headers.host, x: req.headers['x-check'] };
      res.end();
    });
    t.after(() => server.close());
    const port = await listen(server as unknown as Server);
    const r = await probe('HTTP', port, { method: 'HEAD', path: '/status?deep=1', headers: { 'X-Check': 'yes' }, host_header: 'api.internal' });
    assert.equal(r.ok, true);
    assert.deepEqual(seen, { method: 'HEAD', url: '/status?deep=1', host: 'api.internal', x: 'yes' });
  });

  it('fails on a closed port, and times out against a server that never answers', async (t) => {
    const refused = await probe('HTTP', await closedPort());
    assert.equal(refused.ok, false);
    assert.match(refused.error ?? '', /ECONNREFUSED/);
    const silent = createServer(() => {}); // accepts, never answers
    t.after(() => silent.close());
    const port = await listen(silent);
    assert.deepEqual(await probe('HTTP', port, {}, 300), { ok: false, error: 'timed out' });
  });
});

describe('tls_enabled, against peers with a self-signed certificate', () => {
  let cert: string;
  let key: string;
  before(() => {
    const dir = mkdtempSync(join(tmpdir(), 'fulcrum-probe-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=health.test',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'pipe' });
      cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      key = readFileSync(join(dir, 'key.pem'), 'utf8');
    } catch (err) {
      assert.fail(`the openssl command must be installed to make this test's certificate: ${(err as Error).message}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('HTTPS: status and body checked over TLS; a certificate that does not verify fails when tls_verify is on', async (t) => {
    const server = createHttpsServer({ cert, key }, (req, res) => {
      res.writeHead(req.url === '/health' ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(req.url === '/health' ? 'healthy' : 'no');
    });
    t.after(() => server.close());
    const port = await listen(server as unknown as Server);
    assert.deepEqual(await probe('HTTPS', port, { path: '/health', tls_verify: false, expected_body_regex: '^healthy$' }), { ok: true, statusCode: 200, bodyMatched: true });
    const wrongStatus = await probe('HTTPS', port, { path: '/other', tls_verify: false });
    assert.equal(wrongStatus.ok, false);
    assert.equal(wrongStatus.error, 'status 503');
    const unverified = await probe('HTTPS', port, { path: '/health', tls_verify: true });
    assert.equal(unverified.ok, false);
    assert.match(unverified.error ?? '', /SELF_SIGNED|CERT|certificate/i);
  });

  it('REDIS: TLS from the first byte; a certificate that does not verify fails when tls_verify is on', async (t) => {
    const server = createTlsServer({ cert, key }, async (s) => {
      s.on('error', () => {});
      await readUntil(s, (b) => b.includes('PING\r\n'));
      s.write('+PONG\r\n');
    });
    server.on('tlsClientError', () => {});
    const port = await listen(server);
    t.after(() => server.close());
    assert.deepEqual(await probe('REDIS', port, { tls_enabled: true, tls_verify: false }), { ok: true });
    const r = await probe('REDIS', port, { tls_enabled: true });
    assert.equal(r.ok, false);
    assert.match(r.error!, /^tls /);
  });

  it('PGSQL: SSLRequest, \'S\', then the startup over TLS, ending with Terminate', async (t) => {
    let terminated!: () => void;
    const gotTerminate = new Promise<void>((resolve) => (terminated = resolve));
    const peer = await startPeer(async (plain) => {
      const request = await readUntil(plain, (b) => b.length >= 8);
      assert.equal(request.readInt32BE(4), 80877103, 'SSLRequest');
      plain.write('S');
      const s = serverTls(plain, request, 8, { cert, key });
      const startup = await readUntil(s, (b) => b.length >= 4 && b.length >= b.readInt32BE(0));
      assert.equal(startup.readInt32BE(4), 196608);
      const authOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
      const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
      s.write(Buffer.concat([authOk, ready]));
      const rest = await readUntil(s, (b) => b.length >= 5);
      assert.deepEqual([...rest], [0x58, 0, 0, 0, 4], 'Terminate');
      terminated();
      s.end();
    });
    t.after(() => peer.close());
    assert.deepEqual(await probe('PGSQL', peer.port, { tls_enabled: true, tls_verify: false }), { ok: true });
    await gotTerminate;
  });

  it('MYSQL: greeting, SSL request, then the login over TLS and COM_QUIT', async (t) => {
    const seen: { user?: string; flags?: number; seq?: number; quit?: boolean } = {};
    let quit!: () => void;
    const gotQuit = new Promise<void>((resolve) => (quit = resolve));
    const packetOf = (seq: number, payload: Buffer) => Buffer.concat([Buffer.from([payload.length & 0xff, payload.length >> 8, 0, seq]), payload]);
    const whole = (b: Buffer) => b.length >= 4 && b.length >= 4 + b.readUIntLE(0, 3);
    const peer = await startPeer(async (plain) => {
      const caps = Buffer.alloc(4);
      caps.writeUInt32LE(0x200 | 0x800 | 0x8000 | 0x80000); // PROTOCOL_41, SSL, SECURE_CONNECTION, PLUGIN_AUTH
      const greeting = Buffer.concat([
        Buffer.from([10]), Buffer.from('8.0.0-fake\0'), Buffer.alloc(4), Buffer.alloc(8, 1), Buffer.from([0]),
        caps.subarray(0, 2), Buffer.from([33, 2, 0]), caps.subarray(2, 4), Buffer.from([21]), Buffer.alloc(10),
        Buffer.alloc(12, 1), Buffer.from([0]), Buffer.from('mysql_native_password\0'),
      ]);
      plain.write(packetOf(0, greeting));
      const sslRequest = await readUntil(plain, whole);
      assert.equal(sslRequest[3], 1, 'the SSL request is packet 1');
      assert.ok(sslRequest.readUInt32LE(4) & 0x800, 'it asks for SSL');
      const s = serverTls(plain, sslRequest, 4 + sslRequest.readUIntLE(0, 3), { cert, key });
      const login = await readUntil(s, whole);
      seen.seq = login[3];
      seen.flags = login.readUInt32LE(4);
      seen.user = login.toString('utf8', 36, login.indexOf(0, 36));
      s.write(packetOf(2, Buffer.from([0, 0, 0, 2, 0, 0, 0]))); // OK
      const bye = await readUntil(s, whole);
      seen.quit = bye[4] === 0x01;
      quit();
    });
    t.after(() => peer.close());
    assert.deepEqual(await probe('MYSQL', peer.port, { mysql_user: 'health', tls_enabled: true, tls_verify: false }), { ok: true });
    await gotQuit;
    assert.deepEqual({ ...seen, flags: (seen.flags! & 0x800) !== 0 }, { user: 'health', seq: 2, flags: true, quit: true });
  });

  it('LDAP: LDAPS from the first byte', async (t) => {
    const server = ldap.createServer({ certificate: cert, key });
    await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    assert.deepEqual(await probe('LDAP', Number(new URL(server.url).port), { tls_enabled: true, tls_verify: false }), { ok: true });
  });

  it('GRPC: HTTP/2 over TLS', async (t) => {
    const server = new grpc.Server();
    server.addService(HealthService, { check: (_call: unknown, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.from([0x08, SERVING])) });
    const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(cert), private_key: Buffer.from(key) }]);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${HOST}:0`, credentials, (err, p) => (err ? reject(err) : resolve(p))));
    t.after(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
    assert.deepEqual(await probe('GRPC', port, { tls_enabled: true, tls_verify: false }), { ok: true, statusCode: 200 });
    const r = await probe('GRPC', port, { tls_enabled: true });
    assert.equal(r.ok, false);
    assert.match(r.error!, /^connect /, 'an unverified certificate fails the connection');
  });
});

describe('every probe times out cleanly against a peer that never answers', () => {
  for (const protocol of ['REDIS', 'PGSQL', 'MYSQL', 'LDAP', 'GRPC'] as const) {
    it(`${protocol}: 'timed out' when the signal aborts, and the connection is released`, async (t) => {
      const silent = await startPeer();
      t.after(() => silent.close());
      const t0 = performance.now();
      const r = await probe(protocol, silent.port, {}, 300);
      assert.deepEqual(r, { ok: false, error: 'timed out' });
      assert.ok(performance.now() - t0 < 2000, `settled after ${Math.round(performance.now() - t0)} ms`);
      assert.equal(silent.closes.length, 1, 'one connection');
      await silent.closes[0]; // the probe closed it: no socket outlives the check
    });
  }

  it('DNS: a UDP server that never answers', async (t) => {
    const socket = createSocket('udp4');
    socket.bind(0, HOST);
    await once(socket, 'listening');
    t.after(() => socket.close());
    const asked = once(socket, 'message');
    const t0 = performance.now();
    const r = await probe('DNS', socket.address().port, { dns_name: 'app.test', timeout_seconds: 10 }, 300);
    assert.deepEqual(r, { ok: false, error: 'timed out' });
    assert.ok(performance.now() - t0 < 2000, `settled after ${Math.round(performance.now() - t0)} ms`);
    await asked;
  });

  it('a signal already aborted settles at once', async () => {
    const signal = AbortSignal.abort();
    for (const protocol of ['REDIS', 'PGSQL', 'MYSQL', 'LDAP', 'GRPC', 'DNS'] as const) {
      const r = await PROBES[protocol]!({ host: HOST, port: 9 }, check(protocol, { dns_name: 'a.test' }), signal);
      assert.deepEqual(r, { ok: false, error: 'timed out' }, protocol);
    }
  });
});

describe('probe settings in the health check model', () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const valid = ajv.compile(HealthCheckInput);

  it('accepts the probe settings and refuses bad ones', () => {
    assert.ok(valid({ protocol: 'DNS', dns_name: 'api.example.com.', expected_address: '2001:db8::1' }), JSON.stringify(valid.errors));
    assert.ok(valid({ protocol: 'GRPC', grpc_service: '' }));
    assert.ok(valid({ protocol: 'PGSQL', pgsql_user: 'app', pgsql_database: 'shop' }));
    assert.ok(!valid({ protocol: 'PGSQL', pgsql_user: 'a\u0000b' }), 'a NUL would cut the startup message');
    assert.ok(!valid({ protocol: 'DNS', dns_name: 'bad name' }));
    assert.ok(!valid({ protocol: 'REDIS', redis_password: '' }));
  });

  it('DNS requires dns_name; expected_address must be an IP address', () => {
    assert.deepEqual(
      checkHealthCheck(resolveHealthCheck({ protocol: 'DNS' }), 'health_check.').map((p) => p.field),
      ['health_check.dns_name'],
    );
    assert.deepEqual(
      checkHealthCheck(resolveHealthCheck({ protocol: 'DNS', dns_name: 'a.test', expected_address: 'example.com' }), '').map((p) => p.field),
      ['expected_address'],
    );
    assert.deepEqual(checkHealthCheck(resolveHealthCheck({ protocol: 'DNS', dns_name: 'a.test', expected_address: '10.0.0.1' }), ''), []);
  });

  it('redactHealthCheck hides the secrets that are set and leaves the rest', () => {
    const hc = resolveHealthCheck({ protocol: 'REDIS', redis_password: 'hunter2' });
    const shown = redactHealthCheck(hc);
    assert.equal(shown.redis_password, REDACTED);
    assert.equal(shown.ldap_password, undefined);
    assert.equal(hc.redis_password, 'hunter2', 'the stored check is untouched');
    const plain = resolveHealthCheck({ protocol: 'TCP' });
    assert.equal(redactHealthCheck(plain), plain);
    assert.equal(redactHealthCheck(null), null);
  });
});
