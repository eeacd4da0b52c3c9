/**
 * Connection logging (docs/load-balancers-and-listeners.md "Connection logging"): one line per
 * client connection, written when it closes, to a file under `<data_dir>/logs/`, as JSON or text,
 * with who, where to, how many bytes each way, how long and how it ended.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { assertError, fieldsOf, ISO_SECONDS } from '../helpers/assertions.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { connectTcp, type CountingServer, expectCut, roundTrip, startEchoServer, waitForLines } from '../helpers/net-probes.ts';
import { RawClient, rawRequest } from '../helpers/raw-http.ts';

const LINE_FIELDS = ['time', 'started_at', 'listener_id', 'protocol', 'client', 'client_port', 'backends', 'bytes_in', 'bytes_out', 'duration_ms', 'end'];

let t: TestFulcrum;
let lbId: string;
let echo: CountingServer;
/** Answers the first bytes it gets with "bye\n" and ends its side first. */
let greeter: CountingServer;
let webA: TestBackend;
let webB: TestBackend;
const closers: (() => void)[] = [];

before(async () => {
  t = await startTestFulcrum();
  echo = await startEchoServer();
  greeter = await startEchoServer((socket) => {
    socket.once('data', () => socket.end('bye\n'));
    return true;
  });
  webA = await startBackend('log-a');
  webB = await startBackend('log-b');
  const lb = await t.api.post('/api/v1/load-balancers', { name: 'connection-logging' });
  assert.equal(lb.status, 201, JSON.stringify(lb.body));
  lbId = lb.body.lb_id;
});

after(async () => {
  for (const c of closers) c();
  await t.close();
  await echo.close();
  await greeter.close();
  await webA.close();
  await webB.close();
});

let names = 0;

async function makePool(ports: number[]): Promise<{ poolId: string; backendIds: string[] }> {
  const n = ++names;
  const p = await t.api.post('/api/v1/pools', { name: `log-pool-${n}`, algorithm: 'ROUND_ROBIN' });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const backendIds: string[] = [];
  for (const [i, port] of ports.entries()) {
    const b = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { name: `log-b${n}-${i}`, ip_address: '127.0.0.1', port });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    backendIds.push(b.body.server_id);
  }
  return { poolId: p.body.pool_id, backendIds };
}

async function listener(protocol: string, poolId: string, logging: Record<string, unknown>): Promise<{ id: string; port: number; path: string }> {
  const port = await freePort();
  const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
    name: `log-${protocol.toLowerCase()}-${++names}`,
    protocol,
    bind_address: '127.0.0.1',
    port,
    default_pool_id: poolId,
    connection_logging: logging,
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.status, 'ACTIVE', JSON.stringify(res.body));
  return { id: res.body.listener_id, port, path: `/api/v1/load-balancers/${lbId}/listeners/${res.body.listener_id}` };
}

const logFile = (destination: string) => join(t.dataDir, 'logs', destination);

/** Parses a JSON line and checks its field set and time fields. */
function jsonLine(line: string): Record<string, any> {
  const entry = JSON.parse(line) as Record<string, any>;
  assert.deepEqual(Object.keys(entry).sort(), [...LINE_FIELDS].sort(), line);
  assert.match(entry.time, ISO_SECONDS);
  assert.match(entry.started_at, ISO_SECONDS);
  assert.ok(Date.parse(entry.started_at) <= Date.parse(entry.time), line);
  assert.ok(Number.isInteger(entry.duration_ms) && entry.duration_ms >= 0, line);
  assert.ok(Number.isInteger(entry.client_port) && entry.client_port > 0, line);
  return entry;
}

/** A TCP client that counts every byte it sends and receives. */
async function countingClient(port: number) {
  const socket = await connectTcp(port);
  closers.push(() => socket.destroy());
  const localPort = socket.localPort!; // gone once the socket closes
  const counts = { sent: 0, received: 0 };
  socket.on('data', (c: Buffer) => (counts.received += c.length));
  const send = (data: Buffer | string) => {
    counts.sent += Buffer.byteLength(data);
    return data;
  };
  return { socket, localPort, counts, send };
}

describe('connection logging on a TCP listener', () => {
  it('JSON: one line per connection at close, with the documented fields; end client_closed when the client ended first', async () => {
    const { poolId, backendIds } = await makePool([echo.port]);
    const l = await listener('TCP', poolId, { enabled: true, format: 'JSON', destination: 'conn/tcp.log' });
    const started = Date.now();
    const { socket, localPort, counts, send } = await countingClient(l.port);
    const first = Buffer.from('hello, backend\n');
    const second = Buffer.alloc(70_000, 0x61);
    // roundTrip counts its own bytes as received via the socket listener above; the writes are counted here.
    await roundTrip(socket, send(first) as Buffer);
    await roundTrip(socket, send(second) as Buffer);
    const closed = once(socket, 'close');
    socket.end();
    await closed;
    const elapsed = Date.now() - started;
    const [line, ...more] = await waitForLines(logFile('conn/tcp.log'), 1);
    assert.deepEqual(more, [], 'one line for one connection');
    const entry = jsonLine(line!);
    assert.equal(entry.listener_id, l.id);
    assert.equal(entry.protocol, 'TCP');
    assert.equal(entry.client, '127.0.0.1');
    assert.equal(entry.client_port, localPort);
    assert.deepEqual(entry.backends, backendIds);
    assert.equal(counts.sent, first.length + second.length);
    assert.equal(entry.bytes_in, counts.sent, 'bytes received from the client, exactly');
    assert.equal(entry.bytes_out, counts.received, 'bytes sent to the client, exactly');
    assert.ok(entry.duration_ms <= elapsed + 50, `duration_ms ${entry.duration_ms} within the ${elapsed} ms the client saw`);
    assert.equal(entry.end, 'client_closed');
  });

  it('JSON: end backend_closed when the backend ended first', async () => {
    const { poolId, backendIds } = await makePool([greeter.port]);
    const l = await listener('TCP', poolId, { enabled: true, format: 'JSON', destination: 'conn/tcp-backend.log' });
    const { socket, counts, send } = await countingClient(l.port);
    const closed = once(socket, 'close'); // the client ends its side too once it reads the backend's end
    socket.write(send('ping\n'));
    await closed;
    assert.equal(counts.received, 'bye\n'.length);
    const [line] = await waitForLines(logFile('conn/tcp-backend.log'), 1);
    const entry = jsonLine(line!);
    assert.equal(entry.listener_id, l.id);
    assert.deepEqual(entry.backends, backendIds);
    assert.equal(entry.bytes_in, 5);
    assert.equal(entry.bytes_out, 4);
    assert.equal(entry.end, 'backend_closed');
  });

  it('TEXT: "<time> <listener> TCP <client>:<port> -> <backends> in=… out=… duration_ms=… end=…"', async () => {
    const { poolId, backendIds } = await makePool([echo.port]);
    const l = await listener('TCP', poolId, { enabled: true, format: 'TEXT', destination: 'conn/tcp.txt' });
    const { socket, localPort, counts, send } = await countingClient(l.port);
    await roundTrip(socket, send('text format\n'));
    const closed = once(socket, 'close');
    socket.end();
    await closed;
    const [line] = await waitForLines(logFile('conn/tcp.txt'), 1);
    const m = /^(\S+) (\S+) TCP 127\.0\.0\.1:(\d+) -> (\S+) in=(\d+) out=(\d+) duration_ms=(\d+) end=(\S+)$/.exec(line!);
    assert.ok(m, `a TEXT line: ${JSON.stringify(line)}`);
    assert.match(m[1]!, ISO_SECONDS);
    assert.equal(m[2], l.id);
    assert.equal(Number(m[3]), localPort);
    assert.equal(m[4], backendIds[0]);
    assert.equal(Number(m[5]), counts.sent);
    assert.equal(Number(m[6]), counts.received);
    assert.equal(m[8], 'client_closed');
  });

  it('a connection refused by the access list has its line, end refused_access_list and no backend', async () => {
    const { poolId } = await makePool([echo.port]);
    const l = await listener('TCP', poolId, { enabled: true, format: 'JSON', destination: 'conn/refused.log' });
    const acl = await t.api.post(`${l.path}/access-list`, { network_items: [{ address: '127.0.0.1/32', type: 'DENY' }] });
    assert.equal(acl.status, 200, JSON.stringify(acl.body));
    const before = echo.connections;
    const cut = await expectCut(l.port);
    assert.equal(cut.received.length, 0);
    assert.equal(echo.connections, before);
    const [line] = await waitForLines(logFile('conn/refused.log'), 1);
    const entry = jsonLine(line!);
    assert.equal(entry.listener_id, l.id);
    assert.equal(entry.client, '127.0.0.1');
    assert.deepEqual(entry.backends, []);
    assert.equal(entry.bytes_in, 0);
    assert.equal(entry.bytes_out, 0);
    assert.equal(entry.end, 'refused_access_list');
  });
});

describe('connection logging on an HTTP listener', () => {
  it('a kept-alive connection’s line lists every backend it was forwarded to, and its bytes on the wire', async () => {
    const { poolId, backendIds } = await makePool([webA.port, webB.port]);
    const l = await listener('HTTP', poolId, { enabled: true, destination: 'conn/http.log' });
    const client = await RawClient.connect(l.port);
    closers.push(() => client.destroy());
    const localPort = client.socket.localPort!;
    let received = 0;
    client.socket.on('data', (c: Buffer) => (received += c.length));
    let sent = 0;
    const answeredBy = new Set<string>();
    for (const path of ['/one', '/two']) {
      const req = rawRequest('GET', path);
      sent += req.length;
      await client.write(req);
      const res = await client.final();
      assert.equal(res.status, 200, res.head);
      answeredBy.add(res.body.toString());
    }
    assert.deepEqual(answeredBy, new Set(['log-a', 'log-b']), 'round robin used both backends on one connection');
    const closed = once(client.socket, 'close');
    client.socket.end();
    await closed;
    const [line] = await waitForLines(logFile('conn/http.log'), 1);
    const entry = jsonLine(line!); // format defaults to JSON
    assert.equal(entry.listener_id, l.id);
    assert.equal(entry.protocol, 'HTTP');
    assert.equal(entry.client, '127.0.0.1');
    assert.equal(entry.client_port, localPort);
    assert.deepEqual([...entry.backends].sort(), [...backendIds].sort());
    assert.equal(entry.backends.length, 2);
    assert.equal(entry.bytes_in, sent);
    assert.equal(entry.bytes_out, received);
    assert.equal(entry.end, 'closed');
  });
});

describe('connection logging destination', () => {
  it('a destination with .. or an absolute path is refused 400 naming connection_logging.destination', async () => {
    const { poolId } = await makePool([echo.port]);
    for (const destination of ['../outside.log', 'conn/../../outside.log', '/tmp/fulcrum-absolute.log']) {
      const res = await t.api.post(`/api/v1/load-balancers/${lbId}/listeners`, {
        name: `log-bad-${++names}`,
        protocol: 'TCP',
        bind_address: '127.0.0.1',
        port: await freePort(),
        default_pool_id: poolId,
        connection_logging: { enabled: true, destination },
      });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      assert.ok(fieldsOf(err).includes('connection_logging.destination'), `${destination}: ${JSON.stringify(err.details)}`);
    }
    const l = await listener('TCP', poolId, { enabled: true, destination: 'conn/fine.log' });
    const patched = await t.api.patch(l.path, { connection_logging: { destination: '../escape.log' } });
    const err = assertError(patched, 400, 'VALIDATION_ERROR');
    assert.ok(fieldsOf(err).includes('connection_logging.destination'), JSON.stringify(err.details));
    assert.equal((await t.api.get(l.path)).body.connection_logging.destination, 'conn/fine.log', 'nothing written');
  });
});
