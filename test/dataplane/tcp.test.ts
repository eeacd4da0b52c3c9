/**
 * TCP listeners end to end: real clients of the machine's Redis and PostgreSQL through a listener,
 * a 1 GiB transfer with flat memory, half-close, balancing by connections, connect failures tried
 * on the next backend, the tunnel idle timeout, connection limits, drains, on_marked_down_action
 * SHUTDOWN_SESSIONS, and PROXY protocol headers sent to backends.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parseProxyHeader } from '../../src/dataplane/proxy-protocol.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let t: TestFulcrum;
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A TCP backend on loopback: `onSocket` gets each connection. */
async function tcpBackend(onSocket: (s: Socket) => void): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return { port: (server.address() as AddressInfo).port, server, sockets };
}

/** Echoes every byte, prefixed once by its name. */
const echo = (name: string) => (s: Socket) => {
  s.write(`${name}:`);
  s.pipe(s);
};

/** Pool with backends at `ports`, a load balancer and a TCP listener, through the API. */
async function tcpLb(name: string, ports: number[], pool: Record<string, unknown> = {}, listener: Record<string, unknown> = {}, backends: Record<string, unknown>[] = []) {
  const p = await t.api.post('/api/v1/pools', { name: `${name}-pool`, ...pool });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const ids: string[] = [];
  for (const [i, port] of ports.entries()) {
    const b = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { name: `${name}-${i + 1}`, ip_address: '127.0.0.1', port, ...backends[i] });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    ids.push(b.body.server_id);
  }
  const lb = await t.api.post('/api/v1/load-balancers', { name: `${name}-lb` });
  const port = await freePort();
  const l = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, { name, protocol: 'TCP', bind_address: '127.0.0.1', port, default_pool_id: p.body.pool_id, ...listener });
  assert.equal(l.status, 201, JSON.stringify(l.body));
  assert.equal(l.body.status, 'ACTIVE');
  return { port, poolId: p.body.pool_id as string, lbId: lb.body.lb_id as string, listenerId: l.body.listener_id as string, ids };
}

/** A client connection; `allowHalfOpen` keeps its sending side open after the other side ended. */
function open(port: number, allowHalfOpen = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads from `s` until `predicate(text)` holds. */
function readUntil(s: Socket, predicate: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (predicate(text)) {
        s.off('data', onData);
        resolve(text);
      }
    };
    s.on('data', onData);
    s.once('close', () => (predicate(text) ? resolve(text) : reject(new Error(`closed after ${JSON.stringify(text)}`))));
  });
}

/** Resolves when `s` has closed; reads (and drops) what is left so the close can be seen. */
const closed = (s: Socket) =>
  new Promise<void>((resolve) => {
    if (s.destroyed) return resolve();
    s.once('close', () => resolve());
    s.resume();
  });

async function backendView(poolId: string, id: string) {
  return (await t.api.get(`/api/v1/pools/${poolId}/backends/${id}`)).body;
}

describe('TCP listener with real peers', () => {
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  it("carries a Redis client's commands to the machine's Redis", async () => {
    const lb = await tcpLb('redis', [6379]);
    const redis = new Redis({ host: '127.0.0.1', port: lb.port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
    try {
      await redis.connect();
      const key = `fulcrum:test:${process.pid}:${Date.now()}`;
      assert.equal(await redis.set(key, 'through fulcrum', 'EX', 60), 'OK');
      assert.equal(await redis.get(key), 'through fulcrum');
      const pipeline = await redis.pipeline().incr(`${key}:n`).incr(`${key}:n`).expire(`${key}:n`, 60).exec();
      assert.deepEqual(pipeline?.map(([err, v]) => [err, v]), [[null, 1], [null, 2], [null, 1]]);
      await redis.del(key, `${key}:n`);
    } finally {
      redis.disconnect();
    }
  });

  it("carries a PostgreSQL client's session to the machine's PostgreSQL", async () => {
    const lb = await tcpLb('postgres', [5432]);
    const client = new pg.Client({ host: '127.0.0.1', port: lb.port, user: 'postgres', database: 'test' });
    await client.connect();
    try {
      const r = await client.query('SELECT $1::int + 1 AS n, current_database() AS db', [41]);
      assert.deepEqual(r.rows, [{ n: 42, db: 'test' }]);
      await client.query('BEGIN');
      await client.query('CREATE TEMP TABLE fulcrum_t (v text)');
      await client.query("INSERT INTO fulcrum_t VALUES ('a'), ('b')");
      assert.equal((await client.query('SELECT count(*)::int AS c FROM fulcrum_t')).rows[0].c, 2);
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });

  it('moves 1 GiB through with flat memory', { timeout: 120_000 }, async () => {
    const chunk = Buffer.alloc(256 * 1024, 7);
    const source = await tcpBackend((s) => {
      let sent = 0;
      const pump = () => {
        while (sent < GiB) {
          sent += chunk.length;
          if (!s.write(chunk)) return s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    const lb = await tcpLb('bulk', [source.port]);
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
    const client = await open(lb.port);
    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    await new Promise<void>((resolve) => client.once('end', () => resolve()));
    clearInterval(sampler);
    client.destroy();
    assert.equal(received, GiB);
    assert.ok(peak - baseline < 200 * MiB, `RSS grew by ${((peak - baseline) / MiB).toFixed(0)} MiB moving 1 GiB`);
  });
});

// Both ways of moving the bytes: in relay worker processes (the default on a multi-core machine)
// and in the main process.
for (const relayWorkers of [2, 0]) describe(`TCP listener behaviour (${relayWorkers === 0 ? 'relayed in process' : 'relayed in worker processes'})`, () => {
  before(async () => {
    t = await startTestFulcrum({ relayWorkers });
  });
  after(() => t.close());

  it('passes a half-close on: the client ends its side, the backend still answers', async () => {
    const b = await tcpBackend((s) => {
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString()));
      s.on('end', () => s.end(`you sent ${got.length} bytes`));
    });
    const lb = await tcpLb('halfclose', [b.port]);
    const c = await open(lb.port, true);
    c.end('hello there');
    const answer = await readUntil(c, (x) => x.includes('bytes'));
    assert.equal(answer, 'you sent 11 bytes');
    await closed(c);
  });

  it('LEAST_CONNECTIONS counts open connections; connections hold a slot while open', async () => {
    const a = await tcpBackend(echo('a'));
    const b = await tcpBackend(echo('b'));
    const lb = await tcpLb('least', [a.port, b.port], { algorithm: 'LEAST_CONNECTIONS' });
    const first = await open(lb.port);
    const firstName = (await readUntil(first, (x) => x.includes(':'))).slice(0, 1);
    const seen: string[] = [];
    const others: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await open(lb.port);
      others.push(s);
      seen.push((await readUntil(s, (x) => x.includes(':'))).slice(0, 1));
    }
    // With `first` held, the next goes to the other backend; then they alternate by count.
    assert.notEqual(seen[0], firstName);
    const counts = { a: 0, b: 0 } as Record<string, number>;
    for (const n of [firstName, ...seen]) counts[n]!++;
    assert.deepEqual(counts, { a: 2, b: 2 });
    assert.equal((await backendView(lb.poolId, lb.ids[0]!)).active_connections, 2);
    for (const s of [first, ...others]) s.destroy();
    await Promise.all([first, ...others].map(closed));
  });

  it('a backend that refuses is skipped for the next one', async () => {
    const gone = await tcpBackend(() => {});
    await new Promise<void>((resolve) => gone.server.close(() => resolve()));
    const live = await tcpBackend(echo('live'));
    const lb = await tcpLb('retry', [gone.port, live.port], { retries: 1 });
    for (let i = 0; i < 4; i++) {
      const s = await open(lb.port);
      assert.equal(await readUntil(s, (x) => x.includes(':')), 'live:');
      s.destroy();
    }
  });

  it('closes a tunnel idle for idle_ms, not one that is busy', async () => {
    const b = await tcpBackend(echo('idle'));
    const lb = await tcpLb('idle', [b.port], {}, { timeouts: { idle_ms: 300 } });
    const quiet = await open(lb.port);
    const started = Date.now();
    await closed(quiet);
    assert.ok(Date.now() - started >= 250, 'closed after the idle timeout');
    const busy = await open(lb.port);
    for (let i = 0; i < 6; i++) {
      busy.write(`ping${i}`);
      await readUntil(busy, (x) => x.includes(`ping${i}`));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(busy.destroyed, false, 'traffic every 100 ms keeps it open past 300 ms');
    busy.destroy();
  });

  it('connection_limit bounds the listener, max_connections the backend', async () => {
    const b = await tcpBackend(echo('lim'));
    const lb = await tcpLb('limits', [b.port], {}, { connection_limit: 2 });
    const one = await open(lb.port);
    const two = await open(lb.port);
    await readUntil(two, (x) => x.includes(':'));
    const three = await open(lb.port);
    let answered = 0;
    three.on('data', (d: Buffer) => (answered += d.length));
    await closed(three);
    assert.equal(answered, 0, 'the third was closed unanswered');
    one.destroy();
    two.destroy();
    await Promise.all([closed(one), closed(two)]);
    const lb2 = await tcpLb('maxconn', [b.port], {}, {}, [{ max_connections: 1 }]);
    const held = await open(lb2.port);
    await readUntil(held, (x) => x.includes(':'));
    const over = await open(lb2.port);
    let overAnswered = 0;
    over.on('data', (d: Buffer) => (overAnswered += d.length));
    await closed(over);
    assert.equal(overAnswered, 0, 'no backend below its max_connections: closed');
    held.destroy();
  });

  it('a drain lets open connections run to its timeout, then closes them', async () => {
    const b = await tcpBackend(echo('drain'));
    const lb = await tcpLb('drain', [b.port]);
    const s = await open(lb.port);
    await readUntil(s, (x) => x.includes(':'));
    const started = Date.now();
    const r = await t.api.post(`/api/v1/pools/${lb.poolId}/backends/${lb.ids[0]}/drain`, { timeout_seconds: 1 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    s.write('still here');
    assert.match(await readUntil(s, (x) => x.includes('still here')), /still here/);
    await closed(s);
    assert.ok(Date.now() - started >= 900, 'cut when the drain timed out, not before');
  });

  it('on_marked_down_action SHUTDOWN_SESSIONS closes a backend’s connections when it turns unhealthy; NONE leaves them', async () => {
    const b = await tcpBackend(echo('down'));
    const keep = await tcpLb('keep', [b.port]);
    const shut = await tcpLb('shut', [b.port], { on_marked_down_action: 'SHUTDOWN_SESSIONS' });
    assert.equal((await t.api.get(`/api/v1/pools/${shut.poolId}`)).body.on_marked_down_action, 'SHUTDOWN_SESSIONS');
    const kept = await open(keep.port);
    const cut = await open(shut.port);
    await Promise.all([readUntil(kept, (x) => x.includes(':')), readUntil(cut, (x) => x.includes(':'))]);
    for (const lb of [keep, shut]) {
      const o = await t.api.post(`/api/v1/pools/${lb.poolId}/backends/${lb.ids[0]}/health-override`, { status: 'UNHEALTHY', duration_seconds: 60 });
      assert.equal(o.status, 200, JSON.stringify(o.body));
    }
    await closed(cut);
    kept.write('alive');
    assert.match(await readUntil(kept, (x) => x.includes('alive')), /alive/);
    kept.destroy();
  });

  it('SHUTDOWN_SESSIONS does not cut the connection whose failed attempt marks a backend down: it is retried', async () => {
    const gone = await tcpBackend(() => {});
    await new Promise<void>((resolve) => gone.server.close(() => resolve()));
    const good = await tcpBackend(echo('good'));
    const lb = await tcpLb('down-retry', [gone.port, good.port], { retries: 2, on_marked_down_action: 'SHUTDOWN_SESSIONS' });
    for (let i = 0; i < 6; i++) {
      const s = await open(lb.port);
      assert.equal(await readUntil(s, (x) => x.includes(':')), 'good:', `connection ${i + 1}`);
      s.destroy();
      await closed(s);
    }
  });
});

describe('relay workers when things go wrong', () => {
  before(async () => {
    t = await startTestFulcrum({ relayWorkers: 1, shutdownTimeoutMs: 300 });
  });
  after(() => t.close());

  it('a worker killed before it took a connection: the client is closed and the slot given back', async () => {
    const b = await tcpBackend(echo('w'));
    const lb = await tcpLb('worker-dies', [b.port]);
    // Start the worker, then find it among this process's children (the test runs Fulcrum in process).
    const first = await open(lb.port);
    assert.equal(await readUntil(first, (x) => x.includes(':')), 'w:');
    const worker = (await import('node:child_process'))
      .execFileSync('pgrep', ['-P', String(process.pid), '-f', 'relay-worker.ts'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map(Number)[0]!;
    // A stopped worker cannot take hand-offs (a fault caused by signals: there is no other way).
    process.kill(worker, 'SIGSTOP');
    const stuck = await open(lb.port);
    // The hand-off is sent: the backend has the connection and counts it.
    for (let i = 0; i < 100 && (await backendView(lb.poolId, lb.ids[0]!)).active_connections < 2; i++) await new Promise((r) => setImmediate(r));
    process.kill(worker, 'SIGKILL');
    await Promise.all([closed(stuck), closed(first)]);
    for (let i = 0; i < 200 && (await backendView(lb.poolId, lb.ids[0]!)).active_connections !== 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await backendView(lb.poolId, lb.ids[0]!)).active_connections, 0, 'no slot left behind');
    // A new worker takes the next connection.
    const next = await open(lb.port);
    assert.equal(await readUntil(next, (x) => x.includes(':')), 'w:');
    next.destroy();
    await closed(next);
  });

  it('refuses a pool PATCH to HTTP/2 while one of its backends sends the PROXY protocol', async () => {
    const p = await t.api.post('/api/v1/pools', { name: 'pp-h2-patch' });
    assert.equal((await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: 9, proxy_protocol: 'V1' })).status, 201);
    const r = await t.api.patch(`/api/v1/pools/${p.body.pool_id}`, { backend_tls: { enabled: true, http2: true } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.ok(JSON.stringify(r.body.error.details).includes('backend_tls.http2'));
  });
});

describe('relayed connections at shutdown', () => {
  it('are cut at the deadline with their bytes and end logged', async () => {
    const f = await startTestFulcrum({ relayWorkers: 1, shutdownTimeoutMs: 200 });
    t = f;
    const b = await tcpBackend(echo('s'));
    const lb = await tcpLb('shutdown-log', [b.port], {}, { connection_logging: { destination: 'shutdown.log' } });
    const c = await open(lb.port);
    c.write('12345');
    await readUntil(c, (x) => x.includes('12345'));
    const dataDir = f.dataDir;
    const { readFileSync } = await import('node:fs');
    await f.fulcrum.stop();
    await closed(c);
    const entry = JSON.parse(readFileSync(`${dataDir}/logs/shutdown.log`, 'utf8').trim());
    assert.equal(entry.end, 'shutdown');
    assert.equal(entry.bytes_in, 5);
    assert.equal(entry.bytes_out, 7);
    await f.close();
  });
});

describe('PROXY protocol to TCP backends', () => {
  before(async () => {
    t = await startTestFulcrum();
  });
  after(() => t.close());

  for (const [field, version] of [[{ proxy_protocol: 'V1' }, 1], [{ send_proxy_v2: true }, 2]] as const) {
    it(`sends a v${version} header naming the client first, then the client's bytes untouched`, async () => {
      const headers: { header: ReturnType<typeof parseProxyHeader>; rest: Buffer }[] = [];
      const b = await tcpBackend((s) => {
        let data = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          data = Buffer.concat([data, d]);
          const h = parseProxyHeader(data);
          if (h.kind === 'header' && data.length >= h.length + 5) {
            headers.push({ header: h, rest: data.subarray(h.length) });
            s.end('ok');
          }
        });
      });
      const lb = await tcpLb(`pp-v${version}`, [b.port], field);
      const c = await open(lb.port);
      c.write('hello');
      await readUntil(c, (x) => x === 'ok');
      const [{ header, rest }] = headers as [(typeof headers)[0]];
      assert.equal(header.kind, 'header');
      if (header.kind !== 'header') return;
      assert.equal(header.version, version);
      assert.equal(header.addresses.sourceAddress, '127.0.0.1');
      assert.equal(header.addresses.sourcePort, c.localPort);
      assert.equal(header.addresses.destinationPort, lb.port);
      assert.equal(rest.toString(), 'hello');
    });
  }

  it('refuses send_proxy_v2 and proxy_protocol that disagree, and PROXY protocol with HTTP/2 to backends', async () => {
    const r = await t.api.post('/api/v1/pools', { name: 'pp-bad', proxy_protocol: 'V1', send_proxy_v2: true });
    assert.equal(r.status, 400);
    assert.ok(JSON.stringify(r.body.error.details).includes('send_proxy_v2'));
    const h2 = await t.api.post('/api/v1/pools', { name: 'pp-h2', proxy_protocol: 'V2', backend_tls: { http2: true } });
    assert.equal(h2.status, 400);
    assert.ok(JSON.stringify(h2.body.error.details).includes('proxy_protocol'));
  });
});
