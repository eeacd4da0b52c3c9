/**
 * The HTTP/1.1 forwarding path against RFC 9110 / 9112, seen from a client on a raw socket:
 * keep-alive on both sides, hop-by-hop and X-Forwarded-* / X-Request-ID headers, chunked bodies,
 * Expect: 100-continue, HEAD / 1xx / 204 / 304, request smuggling refused with 400, the balancer's
 * own 502 / 503 / 504, and retries on another backend only when that is safe.
 *
 * One Fulcrum serves the whole file; each test builds its own backends, pool and listener through
 * the API (setupLb) and closes what it started.
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { type LbOptions, type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { headerValues, RawClient, type RawResponse, rawExchange, rawRequest, startRawBackend } from '../helpers/raw-http.ts';

let fulcrum: TestFulcrum;

before(async () => {
  fulcrum = await startTestFulcrum();
});

after(async () => {
  await fulcrum?.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** A request id Fulcrum accepts from a client, and the shape of the ones it generates. */
const WELL_FORMED_ID = /^[A-Za-z0-9._:-]{1,128}$/;

interface Counted {
  /** TCP connections the backend accepted. */
  connections: number;
  /** Request heads the backend parsed (complete or not). */
  heads: number;
}

/** Counts connections and request heads on a backend server. */
function count(server: Server): Counted {
  const c: Counted = { connections: 0, heads: 0 };
  server.on('connection', () => c.connections++);
  server.on('request', () => c.heads++);
  return c;
}

async function backend(t: TestContext, name: string, options?: Parameters<typeof startBackend>[1]): Promise<TestBackend & { count: Counted }> {
  const b = await startBackend(name, options);
  t.after(() => b.close());
  return Object.assign(b, { count: count(b.server) });
}

function lb(backends: { port: number; name: string }[], options: Omit<LbOptions, 'fulcrum'> = {}): Promise<LbSetup> {
  return setupLb(backends, { ...options, fulcrum });
}

async function client(t: TestContext, port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  t.after(() => c.destroy());
  return c;
}

/** One request on a new connection; the connection is closed after the response. */
async function send(port: number, bytes: string | Buffer, opts: { head?: boolean } = {}): Promise<RawResponse> {
  const { client, res } = await rawExchange(port, bytes, opts);
  client.destroy();
  return res;
}

function get(path: string, headers: [string, string | number][] = []): Buffer {
  return rawRequest('GET', path, headers);
}

function describeRes(res: RawResponse): string {
  return `${res.head}\r\n\r\n${res.body.toString('latin1').slice(0, 300)}`;
}

/** Header fields of a request a backend saw, as [lower-case name, value] pairs. */
function pairs(rawHeaders: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!]);
  return out;
}

function valuesOf(rawHeaders: string[], name: string): string[] {
  return pairs(rawHeaders)
    .filter(([n]) => n === name)
    .map(([, v]) => v);
}

/** A balancer-generated error: the status, a short body naming the request id, the x-request-id header. */
function assertProblem(res: RawResponse, status: number, id?: string): string {
  assert.equal(res.status, status, describeRes(res));
  const rid = res.headers['x-request-id'];
  assert.ok(rid !== undefined && WELL_FORMED_ID.test(rid), `x-request-id header missing or malformed: ${describeRes(res)}`);
  if (id !== undefined) assert.equal(rid, id, 'the client’s well-formed request id is the one reported');
  const body = res.body.toString('utf8');
  assert.ok(body.includes(rid), `body should mention request id ${rid}: ${JSON.stringify(body)}`);
  assert.ok(res.body.length > 0 && res.body.length < 1024, `body should be short, got ${res.body.length} bytes`);
  return rid;
}

/** A port nothing listens on (it was free a moment ago): connecting to it is refused. */
const closedPort = () => freePort();

// ---------------------------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------------------------

describe('keep-alive', () => {
  it('answers 50 sequential requests on one client connection over pooled upstream connections (at most 2)', async (t) => {
    const b = await backend(t, 'ka', {
      handler: (req, res, name) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
        res.end(`url=${req.url}`);
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    for (let i = 0; i < 50; i++) {
      await c.write(get(`/ka/${i}`));
      const res = await c.final();
      assert.equal(res.status, 200, describeRes(res));
      assert.equal(res.body.toString(), `url=/ka/${i}`);
      assert.ok(!/close/i.test(res.headers.connection ?? ''), `request ${i}: Fulcrum closed a keep-alive connection: ${res.head}`);
    }
    assert.equal(c.eof, false, 'the client connection is still open');
    assert.equal(b.seen.length, 50);
    assert.deepEqual(
      b.seen.map((r) => r.url),
      Array.from({ length: 50 }, (_, i) => `/ka/${i}`),
    );
    assert.ok(b.count.connections <= 2, `50 sequential requests should reuse a pooled upstream connection, backend saw ${b.count.connections} connections`);
  });

  it('reuses pooled upstream connections across different client connections', async (t) => {
    const b = await backend(t, 'ka2');
    const s = await lb([b]);
    for (let i = 0; i < 20; i++) {
      const res = await send(s.port, get(`/c/${i}`));
      assert.equal(res.status, 200, describeRes(res));
    }
    assert.equal(b.seen.length, 20);
    assert.ok(b.count.connections <= 2, `20 client connections, one at a time, should share pooled upstream connections; backend saw ${b.count.connections}`);
  });

  it('answers pipelined requests in order (RFC 9112 §9.3.2)', async (t) => {
    const b = await backend(t, 'pipe', {
      handler: (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`url=${req.url}`);
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(Buffer.concat([get('/p/0'), get('/p/1'), rawRequest('POST', '/p/2', [['Content-Length', 3]], 'abc'), get('/p/3')]));
    for (let i = 0; i < 4; i++) {
      const res = await c.final();
      assert.equal(res.status, 200, describeRes(res));
      assert.equal(res.body.toString(), `url=/p/${i}`);
    }
    assert.equal(b.seen[2]!.body.toString(), 'abc');
  });

  it('closes the client connection after the response when the client sent Connection: close', async (t) => {
    const b = await backend(t, 'close');
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(get('/bye', [['Connection', 'close']]));
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'close');
    assert.match(res.headers.connection ?? '', /close/i);
    assert.ok(await c.closedByServer(), 'Fulcrum should close the connection after answering Connection: close');
    // The upstream connection is Fulcrum's own: the backend was not asked to close it.
    assert.ok(!/close/i.test(b.seen[0]!.headers.connection ?? ''), `backend saw Connection: ${b.seen[0]!.headers.connection}`);
  });
});

describe('keep-alive around errors and disconnects', () => {
  it('after a 503 to a POST whose body was never read, the next request on the connection is parsed correctly', async (t) => {
    const b = await backend(t, 'ka-err');
    const s = await lb([b], { backendFields: [{ admin_status: 'DISABLED' }] });
    const c = await client(t, s.port);
    // The body looks like a request: if it were parsed as one, the next response would be out of step.
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    await c.write(rawRequest('POST', '/first', [['Content-Length', smuggled.length], ['X-Request-ID', 'rid-first']], smuggled));
    const first = await c.final();
    assertProblem(first, 503, 'rid-first');
    if (!/close/i.test(first.headers.connection ?? '')) {
      await c.write(get('/second', [['X-Request-ID', 'rid-second']]));
      assertProblem(await c.final(), 503, 'rid-second');
      assert.equal(c.pending.length, 0, `stray response bytes: ${JSON.stringify(c.pending.toString('latin1'))}`);
    }
    assert.equal(b.seen.length, 0);
  });

  it('a client that disconnects abandons its upstream request and frees the backend slot', async (t) => {
    const b = await backend(t, 'gone', { stream: () => {} }); // holds every request
    const s = await lb([b], { backendFields: [{ max_connections: 1 }] });
    const arrived = once(b.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const c = await client(t, s.port);
    await c.write(get('/leaving'));
    const [upstreamReq] = await arrived;
    const upstreamClosed = new Promise((resolve) => upstreamReq.socket.once('close', resolve));
    c.destroy();
    await upstreamClosed;
    // The slot is free: the next request reaches the backend instead of a 503.
    const next = once(b.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const pending = send(s.port, get('/next'));
    const [, res] = await Promise.race([next, pending.then((r) => assert.fail(`the next request got ${describeRes(r)} instead of reaching the backend`))]);
    res.end('next');
    assert.equal((await pending).status, 200);
  });
});

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

describe('headers', () => {
  it('drops hop-by-hop request fields and the fields Connection names (RFC 9110 §7.6.1)', async (t) => {
    const b = await backend(t, 'hop');
    const s = await lb([b]);
    const res = await send(
      s.port,
      get('/hop', [
        ['Connection', 'keep-alive, X-Secret'],
        ['X-Secret', '1'],
        ['Keep-Alive', 'timeout=30, max=7'],
        ['TE', 'trailers'],
        ['Proxy-Connection', 'keep-alive'],
        ['Trailer', 'X-Checksum'],
        ['Upgrade', 'h2c'],
        ['X-Kept', 'yes'],
      ]),
    );
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(b.seen.length, 1);
    const seen = pairs(b.seen[0]!.rawHeaders);
    const names = seen.map(([n]) => n);
    for (const hop of ['x-secret', 'keep-alive', 'te', 'proxy-connection', 'trailer', 'upgrade', 'transfer-encoding']) {
      assert.ok(!names.includes(hop), `backend received hop-by-hop field ${hop}: ${JSON.stringify(seen)}`);
    }
    for (const v of valuesOf(b.seen[0]!.rawHeaders, 'connection')) {
      assert.ok(!/x-secret/i.test(v), `the client's Connection header reached the backend: ${v}`);
    }
    assert.deepEqual(valuesOf(b.seen[0]!.rawHeaders, 'x-kept'), ['yes']);
  });

  it('drops hop-by-hop response fields and the fields Connection names', async (t) => {
    // A raw backend, so the response carries exactly these fields (node:http would refuse some).
    const responses = [
      'HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n' +
        'Trailer: X-Checksum\r\nUpgrade: h2c\r\nX-Public: ok\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi',
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: 2\r\nKeep-Alive: timeout=5, max=100\r\nX-Public: ok\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    ];
    let answered = 0;
    const raw = await startRawBackend((socket, received) => {
      let heads = 0;
      socket.on('data', () => {
        const total = received().toString('latin1').split('\r\n\r\n').length - 1;
        for (; heads < total; heads++) socket.write(responses[answered++ % responses.length]!);
      });
    });
    t.after(() => raw.close());
    const s = await lb([{ name: 'hop-res', port: raw.port }], { listener: { timeouts: { idle_ms: 42_000 } } });
    const c = await client(t, s.port);
    for (let i = 0; i < 2; i++) {
      await c.write(get(`/hop-res/${i}`));
      const res = await c.final();
      assert.equal(res.status, 200, describeRes(res));
      assert.equal(res.body.toString(), 'hi');
      assert.equal(res.headers['x-public'], 'ok');
      for (const hop of ['x-internal', 'proxy-connection', 'trailer', 'upgrade']) {
        assert.equal(res.headers[hop], undefined, `response ${i}: client received backend hop-by-hop field ${hop}: ${res.head}`);
      }
      // Fulcrum may announce its own keep-alive on its own connection, never the backend's.
      for (const v of headerValues(res, 'keep-alive')) assert.ok(!/timeout=5\b/.test(v), `response ${i}: the backend's Keep-Alive reached the client: ${res.head}`);
      for (const v of headerValues(res, 'connection')) assert.ok(!/x-internal/i.test(v), `response ${i}: the backend's Connection reached the client: ${res.head}`);
    }
    assert.equal(c.eof, false, 'the client connection is still open');
  });

  it('appends to X-Forwarded-For and sets X-Forwarded-Proto, -Host and -Port, replacing forged ones', async (t) => {
    const b = await backend(t, 'xff');
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(
      get('/xf', [
        ['Host', 'app.example:8443'],
        ['X-Forwarded-For', '203.0.113.7'],
        ['X-Forwarded-Proto', 'https'],
        ['X-Forwarded-Host', 'evil.example'],
        ['X-Forwarded-Port', '1'],
      ]),
    );
    assert.equal((await c.final()).status, 200);
    await c.write(get('/xf-none', [['Host', 'other.example']]));
    assert.equal((await c.final()).status, 200);
    await c.write(
      get('/xf-two', [
        ['X-Forwarded-For', '198.51.100.1'],
        ['X-Forwarded-For', '198.51.100.2, 198.51.100.3'],
      ]),
    );
    assert.equal((await c.final()).status, 200);

    const [first, none, two] = b.seen;
    const one = (r: typeof first, name: string) => {
      const v = valuesOf(r!.rawHeaders, name);
      assert.equal(v.length, 1, `${r!.url}: expected exactly one ${name}, got ${JSON.stringify(v)}`);
      return v[0];
    };
    assert.equal(one(first, 'x-forwarded-for'), '203.0.113.7, 127.0.0.1');
    assert.equal(one(first, 'x-forwarded-proto'), 'http');
    assert.equal(one(first, 'x-forwarded-host'), 'app.example:8443');
    assert.equal(one(first, 'x-forwarded-port'), String(s.port));
    assert.equal(one(first, 'host'), 'app.example:8443', 'Host is passed through unchanged');

    assert.equal(one(none, 'x-forwarded-for'), '127.0.0.1');
    assert.equal(one(none, 'x-forwarded-host'), 'other.example');
    assert.equal(one(none, 'x-forwarded-proto'), 'http');
    assert.equal(one(none, 'x-forwarded-port'), String(s.port));

    assert.equal(one(two, 'x-forwarded-for'), '198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1');
  });

  it('keeps a well-formed X-Request-ID, generates one when absent, replaces a malformed one', async (t) => {
    const b = await backend(t, 'rid');
    const s = await lb([b]);
    const c = await client(t, s.port);
    const malformed = ['has space', 'x'.repeat(200), '<script>', 'a/b'];
    await c.write(get('/kept', [['X-Request-ID', 'client-id_1.2:3']]));
    await c.final();
    await c.write(get('/gen-1'));
    await c.final();
    await c.write(get('/gen-2'));
    await c.final();
    for (const [i, bad] of malformed.entries()) {
      await c.write(get(`/bad-${i}`, [['X-Request-ID', bad]]));
      assert.equal((await c.final()).status, 200);
    }
    await c.write(
      get('/dup', [
        ['X-Request-ID', 'one'],
        ['X-Request-ID', 'two'],
      ]),
    );
    assert.equal((await c.final()).status, 200);

    const ids = b.seen.map((r) => {
      const v = valuesOf(r.rawHeaders, 'x-request-id');
      assert.equal(v.length, 1, `${r.url}: expected exactly one X-Request-ID upstream, got ${JSON.stringify(v)}`);
      return v[0]!;
    });
    assert.equal(ids[0], 'client-id_1.2:3', 'a well-formed id is kept');
    for (const id of ids) assert.match(id, WELL_FORMED_ID);
    assert.notEqual(ids[1], ids[2], 'generated ids are unique');
    for (const [i, bad] of malformed.entries()) assert.notEqual(ids[3 + i], bad, `malformed id ${JSON.stringify(bad)} was forwarded`);
    const dup = ids[3 + malformed.length]!;
    assert.ok(dup !== 'one' && dup !== 'two' && dup !== 'one, two', `two X-Request-ID fields should count as malformed, got ${dup}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Message bodies, Expect, HEAD, 1xx, 204, 304
// ---------------------------------------------------------------------------------------------

/** `body` as chunked coding, in chunks of 1..max bytes; the last-chunk and an optional trailer. */
function chunked(body: Buffer, max: number, trailer = ''): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  let n = 1;
  while (pos < body.length) {
    const size = Math.min(body.length - pos, 1 + ((n * 7919) % max));
    parts.push(Buffer.from(`${size.toString(16)}${n % 5 === 0 ? ';ext=1' : ''}\r\n`), body.subarray(pos, pos + size), Buffer.from('\r\n'));
    pos += size;
    n++;
  }
  parts.push(Buffer.from(`0\r\n${trailer}\r\n`));
  return Buffer.concat(parts);
}

describe('message bodies', () => {
  it('delivers a chunked request body to the backend intact', async (t) => {
    const b = await backend(t, 'chunk-in', {
      handler: (_req, res, _name, body) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(String(body.length));
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    // A small body written piece by piece, with a chunk extension and a trailer field.
    await c.write('POST /small HTTP/1.1\r\nHost: fulcrum.test\r\nTransfer-Encoding: chunked\r\n\r\n');
    await c.write('5\r\nhello\r\n');
    await c.write('1;name=value\r\n \r\n');
    await c.write('6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n');
    const small = await c.final();
    assert.equal(small.status, 200, describeRes(small));
    assert.equal(small.body.toString(), '12');
    // 256 KiB of random bytes in chunks of odd sizes, on the same connection.
    const big = randomBytes(256 * 1024);
    await c.write(Buffer.concat([Buffer.from('PUT /big HTTP/1.1\r\nHost: fulcrum.test\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(big, 8191)]));
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(b.seen.length, 2);
    assert.equal(b.seen[0]!.body.toString(), 'hello world!');
    assert.ok(b.seen[1]!.body.equals(big), `backend got ${b.seen[1]!.body.length} bytes, not the 262144 sent`);
    for (const r of b.seen) assert.ok(!(r.headers['content-length'] !== undefined && r.headers['transfer-encoding'] !== undefined), 'upstream framing is ambiguous');
  });

  it('delivers a chunked response to the client intact, and keeps the connection', async (t) => {
    const payload = randomBytes(200 * 1024);
    const b = await backend(t, 'chunk-out', {
      stream: (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no length: chunked
        let pos = 0;
        let n = 0;
        const pump = () => {
          while (pos < payload.length) {
            const size = Math.min(payload.length - pos, 1 + ((++n * 104729) % 9000));
            const ok = res.write(payload.subarray(pos, pos + size));
            pos += size;
            if (!ok) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(get('/stream'));
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.ok(!res.closeDelimited, 'the response should be framed (chunked or Content-Length), not end with the connection');
    assert.equal(res.body.length, payload.length);
    assert.ok(res.body.equals(payload), 'response body differs from what the backend sent');
    await c.write(get('/stream'));
    const again = await c.final();
    assert.ok(again.body.equals(payload));
  });

  it('answers Expect: 100-continue with 100 Continue, then forwards the body', async (t) => {
    const b = await backend(t, 'expect', {
      handler: (_req, res, _name, body) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`got ${body.toString()}`);
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write('POST /expect HTTP/1.1\r\nHost: fulcrum.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n');
    const interim = await c.next();
    assert.equal(interim.status, 100, `expected 100 Continue before sending the body, got ${describeRes(interim)}`);
    await c.write('hello world');
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'got hello world');
    assert.equal(b.seen.length, 1);
    assert.equal(b.seen[0]!.body.toString(), 'hello world');
    // The connection stays usable.
    await c.write(get('/after'));
    assert.equal((await c.final()).status, 200);
  });

  it('answers HEAD with the backend’s Content-Length and no body', async (t) => {
    const b = await backend(t, 'head', {
      handler: (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1234 });
        res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(rawRequest('HEAD', '/h'));
    const head = await c.final({ head: true });
    assert.equal(head.status, 200, describeRes(head));
    assert.equal(head.headers['content-length'], '1234', `HEAD must keep the Content-Length a GET would have: ${head.head}`);
    assert.equal(head.headers['transfer-encoding'], undefined);
    // Any stray body bytes would now be parsed as the next response and fail here.
    await c.write(get('/h'));
    const full = await c.final();
    assert.equal(full.status, 200, describeRes(full));
    assert.equal(full.body.length, 1234);
    assert.equal(b.seen[0]!.method, 'HEAD');
  });

  it('passes 204 and 304 without a body and keeps the connection usable', async (t) => {
    const b = await backend(t, 'nobody', {
      handler: (req, res) => {
        if (req.url === '/204') {
          res.writeHead(204, { 'x-kind': 'no-content' });
          res.end();
        } else if (req.url === '/304') {
          res.writeHead(304, { etag: '"v1"', 'x-kind': 'not-modified' });
          res.end();
        } else if (req.url === '/304-length') {
          // RFC 9110 §8.6: a 304 may carry the Content-Length the 200 would have had.
          res.writeHead(304, { etag: '"v1"', 'content-length': 1234 });
          res.end();
        } else {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`ok ${req.url}`);
        }
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(get('/204'));
    const r204 = await c.final();
    assert.equal(r204.status, 204, describeRes(r204));
    assert.equal(r204.headers['x-kind'], 'no-content');
    assert.equal(r204.headers['transfer-encoding'], undefined, `204 must not carry Transfer-Encoding: ${r204.head}`);
    assert.equal(r204.headers['content-length'], undefined, `204 must not carry Content-Length: ${r204.head}`);

    await c.write(get('/304', [['If-None-Match', '"v1"']]));
    const r304 = await c.final();
    assert.equal(r304.status, 304, describeRes(r304));
    assert.equal(r304.headers.etag, '"v1"');
    assert.equal(r304.headers['transfer-encoding'], undefined, `304 must not carry Transfer-Encoding: ${r304.head}`);

    await c.write(get('/304-length', [['If-None-Match', '"v1"']]));
    const r304l = await c.final();
    assert.equal(r304l.status, 304, describeRes(r304l));

    await c.write(get('/next'));
    const next = await c.final();
    assert.equal(next.status, 200, describeRes(next));
    assert.equal(next.body.toString(), 'ok /next');
    assert.equal(c.pending.length, 0, `stray bytes after the responses: ${JSON.stringify(c.pending.toString('latin1'))}`);
  });

  it('a close-delimited backend response reaches the client framed, and the client connection stays usable', async (t) => {
    const raw = await startRawBackend((socket) =>
      socket.once('data', () => socket.end('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body ends when the connection does')),
    );
    t.after(() => raw.close());
    const s = await lb([{ name: 'http10', port: raw.port }]);
    const c = await client(t, s.port);
    for (let i = 0; i < 2; i++) {
      await c.write(get(`/close-delimited/${i}`));
      const res = await c.final();
      assert.equal(res.status, 200, describeRes(res));
      assert.ok(!res.closeDelimited, `response ${i} should be framed for a keep-alive client: ${res.head}`);
      assert.equal(res.body.toString(), 'the body ends when the connection does');
    }
    assert.equal(raw.connections, 2);
  });

  it('forwards 103 Early Hints before the final response', async (t) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const b = await backend(t, 'hints', {
      stream: (req, res) => {
        req.resume();
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        // The final response waits until the client has seen the hint: hints must not wait for it.
        void gate.then(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('final');
        });
      },
    });
    t.after(release);
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write(get('/hints'));
    const first = await c.next();
    assert.equal(first.status, 103, describeRes(first));
    assert.match(first.headers.link ?? '', /<\/style\.css>; rel=preload; as=style/);
    release();
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'final');
    await c.write(get('/hints'));
    assert.equal((await c.final()).status, 200, 'the connection stays usable after 1xx');
  });

  // Known limitation: undici, which Fulcrum forwards through, treats a 100 it did not ask for as a
  // protocol error and closes the connection. Fulcrum never sends Expect upstream, so only a
  // backend that sends 100 unprompted meets this; it stays listed until undici tolerates it.
  it('tolerates an unsolicited 100 Continue from the backend (RFC 9110 §15.2)', { todo: 'undici closes on an unsolicited 100' }, async (t) => {
    const b = await backend(t, 'cont', {
      handler: (_req, res) => {
        res.writeContinue();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('after 100');
      },
    });
    const s = await lb([b]);
    const res = await send(s.port, get('/cont'));
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'after 100');
  });

  it('tolerates 102 Processing from the backend', async (t) => {
    const b = await backend(t, 'proc', {
      handler: (_req, res) => {
        res.writeProcessing();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('after 102');
      },
    });
    const s = await lb([b]);
    const res = await send(s.port, get('/proc'));
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'after 102');
  });
});

// ---------------------------------------------------------------------------------------------
// Request smuggling: 400, never forwarded
// ---------------------------------------------------------------------------------------------

const H = 'Host: fulcrum.test\r\n';
const SMUGGLING: [string, string][] = [
  ['Content-Length and Transfer-Encoding', `POST /s HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX`],
  ['Transfer-Encoding and Content-Length', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX`],
  ['duplicate Content-Length (same value)', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`],
  ['duplicate Content-Length (different values)', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`],
  ['Content-Length list of different values', `POST /s HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`],
  ['non-numeric Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\nhello`],
  ['negative Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\nhello`],
  ['signed Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`],
  ['hexadecimal Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`],
  ['Content-Length with a space inside', `POST /s HTTP/1.1\r\n${H}Content-Length: 1 0\r\n\r\nhelloworld`],
  ['overflowing Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\nhello`],
  ['whitespace between Content-Length and colon', `POST /s HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\nhello`],
  ['non-hex chunk size', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`],
  ['negative chunk size', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n`],
  ['overflowing chunk size', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n`],
  ['Transfer-Encoding not ending in chunked', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
  ['unknown Transfer-Encoding', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`],
  ['oversized head (64 KiB header field)', `GET /s HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`],
  ['oversized head (2000 header fields)', `GET /s HTTP/1.1\r\n${H}${Array.from({ length: 2000 }, (_, i) => `X-F${i}: ${'v'.repeat(20)}\r\n`).join('')}\r\n`],
];

describe('request smuggling is refused with 400 and never reaches a backend', () => {
  for (const [name, bytes] of SMUGGLING) {
    it(name, async (t) => {
      // A backend and listener of its own, so no other case's traffic can blur the count.
      const b = await backend(t, 'smuggle');
      const s = await lb([b]);
      const { client: c, res } = await rawExchange(s.port, bytes);
      try {
        assert.equal(res.status, 400, `${name}: ${describeRes(res)}`);
        assert.ok(res.headers['x-request-id'] !== undefined, `400 carries an x-request-id: ${res.head}`);
        assert.ok(await c.closedByServer(), 'the connection is closed after a framing error (RFC 9112 §6.3)');
      } finally {
        c.destroy();
      }
      // A valid request after it: once it is answered, anything forwarded before it would have arrived too.
      const sentinel = await send(s.port, get('/sentinel'));
      assert.equal(sentinel.status, 200, describeRes(sentinel));
      assert.equal(b.count.heads, 1, `the backend received ${b.count.heads - 1} request head(s) besides the sentinel`);
      assert.deepEqual(
        b.seen.map((r) => `${r.method} ${r.url}`),
        ['GET /sentinel'],
      );
    });
  }

  it('a bad chunk size after the body began: 400 to the client, the backend never sees a complete request', async (t) => {
    const mid = await backend(t, 'mid', { handler: (_req, res) => res.end('complete') });
    const ms = await lb([mid]);
    const c = await client(t, ms.port);
    const arrived = once(mid.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    await c.write(`POST /mid HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`);
    const [upstreamReq] = await arrived;
    upstreamReq.on('error', () => {}); // the backend's request is expected to be aborted
    const upstreamClosed = new Promise((resolve) => upstreamReq.once('close', resolve)); // events.once would reject on 'error'
    await c.write('zz\r\nworld\r\n0\r\n\r\n');
    const res = await c.final();
    assert.equal(res.status, 400, describeRes(res));
    await upstreamClosed;
    assert.equal(upstreamReq.complete, false, 'the backend received a complete (truncated) request');
    assert.equal(mid.seen.length, 0, `the backend handled ${JSON.stringify(mid.seen.map((r) => r.body.toString()))}`);
  });
});

describe('Host and request-target (RFC 9112 §3)', () => {
  const refused = async (t: TestContext, bytes: string) => {
    const b = await backend(t, 'host');
    const s = await lb([b]);
    const res = await send(s.port, bytes);
    const sentinel = await send(s.port, get('/sentinel'));
    assert.equal(sentinel.status, 200, describeRes(sentinel));
    return { res, seen: b.seen.map((r) => `${r.method} ${r.url}`) };
  };

  it('a request without Host is refused with 400 and not forwarded', async (t) => {
    const { res, seen } = await refused(t, 'GET /no-host HTTP/1.1\r\n\r\n');
    assert.equal(res.status, 400, describeRes(res));
    assert.deepEqual(seen, ['GET /sentinel']);
  });

  it('a request with two Host fields is refused with 400 and not forwarded', async (t) => {
    const { res, seen } = await refused(t, 'GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n');
    assert.equal(res.status, 400, describeRes(res));
    assert.deepEqual(seen, ['GET /sentinel']);
  });

  it('a request with an invalid Host value is refused with 400 and not forwarded', async (t) => {
    const { res, seen } = await refused(t, 'GET /bad-host HTTP/1.1\r\nHost: bad host\r\n\r\n');
    assert.equal(res.status, 400, describeRes(res));
    assert.deepEqual(seen, ['GET /sentinel']);
  });

  it('an absolute-form request target is accepted and forwarded', async (t) => {
    const b = await backend(t, 'abs');
    const s = await lb([b]);
    const res = await send(s.port, 'GET http://app.example/abs?x=1 HTTP/1.1\r\nHost: app.example\r\n\r\n');
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(b.seen.length, 1);
    assert.match(b.seen[0]!.url, /\/abs\?x=1$/);
  });

  it('OPTIONS * (asterisk-form) is answered by Fulcrum itself, not as a backend failure', async (t) => {
    const b = await backend(t, 'star');
    const s = await lb([b]);
    const res = await send(s.port, 'OPTIONS * HTTP/1.1\r\nHost: app.example\r\n\r\n');
    assert.equal(res.status, 200, `OPTIONS * got ${describeRes(res)}`);
    assert.match(String(res.headers.allow), /OPTIONS/);
    assert.deepEqual(b.seen, [], 'a question about the server is not a backend request');
  });

  it('an HTTP/1.0 client gets no chunked coding (RFC 9112 §7.1) and the connection closes', async (t) => {
    const b = await backend(t, 'ten', {
      stream: (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part one, ');
        res.end('part two');
      },
    });
    const s = await lb([b]);
    const c = await client(t, s.port);
    await c.write('GET /ten HTTP/1.0\r\nHost: app.example\r\n\r\n');
    const res = await c.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.ok(!res.chunked, `chunked coding sent to an HTTP/1.0 client: ${res.head}`);
    assert.equal(res.body.toString(), 'part one, part two');
    assert.ok(await c.closedByServer(), 'an HTTP/1.0 request without keep-alive closes the connection');
  });
});

// ---------------------------------------------------------------------------------------------
// 502 / 503 / 504
// ---------------------------------------------------------------------------------------------

describe('502 Bad Gateway when the chosen backend fails and no other can take the request', () => {
  it('connection refused (a closed port)', async () => {
    const s = await lb([{ name: 'dead', port: await closedPort() }]);
    assertProblem(await send(s.port, get('/', [['X-Request-ID', 'rid-refused-1']])), 502, 'rid-refused-1');
    assertProblem(await send(s.port, get('/')), 502);
  });

  it('connection reset (the backend destroys the socket)', async (t) => {
    const b = await backend(t, 'reset', { handler: (req) => req.socket.destroy() });
    const s = await lb([b]);
    assertProblem(await send(s.port, get('/', [['X-Request-ID', 'rid-reset-1']])), 502, 'rid-reset-1');
    assert.equal(b.seen.length, 1, 'the only backend was tried once');
  });

  it('malformed response (a TCP backend that writes garbage)', async (t) => {
    const raw = await startRawBackend((socket) => socket.once('data', () => socket.end('SURPRISE! this is not HTTP at all\r\n\r\n')));
    t.after(() => raw.close());
    const s = await lb([{ name: 'garbage', port: raw.port }]);
    assertProblem(await send(s.port, get('/', [['X-Request-ID', 'rid-garbage-1']])), 502, 'rid-garbage-1');
    assert.ok(raw.received[0]?.toString('latin1').startsWith('GET / HTTP/1.1'), 'the request reached the raw backend');
  });

  it('a response with both Content-Length and Transfer-Encoding is not forwarded with a wrong length', async (t) => {
    const raw = await startRawBackend((socket) =>
      socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')),
    );
    t.after(() => raw.close());
    const s = await lb([{ name: 'cl-te', port: raw.port }]);
    const c = await client(t, s.port);
    await c.write(get('/cl-te', [['X-Request-ID', 'rid-cl-te']]));
    const res = await c.final();
    // RFC 9112 §6.3: treat it as an error (502), or drop Content-Length and forward the chunked body.
    if (res.status === 502) assertProblem(res, 502, 'rid-cl-te');
    else {
      assert.equal(res.status, 200, describeRes(res));
      assert.equal(res.body.toString(), 'hello');
      assert.notEqual(res.headers['content-length'], '100', `forwarded the backend's Content-Length: ${res.head}`);
    }
  });

  it('a response cut short after its head reaches the client as a cut, not a clean message', async (t) => {
    const raw = await startRawBackend((socket) =>
      socket.once('data', (req: Buffer) => {
        if (req.toString('latin1').startsWith('GET /chunked')) socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
        setImmediate(() => socket.destroy());
      }),
    );
    t.after(() => raw.close());
    const s = await lb([{ name: 'cut', port: raw.port }]);
    for (const path of ['/length', '/chunked']) {
      const c = await client(t, s.port);
      await c.write(get(path));
      await assert.rejects(c.final(), /connection (ended|closed)/, `${path}: the client must not receive a complete response`);
    }
  });
});

describe('503 Service Unavailable when no backend is usable', () => {
  it('after every backend is disabled through the API', async (t) => {
    const b1 = await backend(t, 'd1');
    const b2 = await backend(t, 'd2');
    const s = await lb([b1, b2]);
    assert.equal((await send(s.port, get('/before'))).status, 200);
    for (const id of s.backendIds) {
      const r = await s.api.patch(`/api/v1/pools/${s.poolId}/backends/${id}`, { admin_status: 'DISABLED' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    assertProblem(await send(s.port, get('/after', [['X-Request-ID', 'rid-disabled']])), 503, 'rid-disabled');
    assertProblem(await send(s.port, rawRequest('POST', '/after', [['Content-Length', 5]], 'hello')), 503);
    assert.equal(b1.seen.length + b2.seen.length, 1, 'only the request before disabling reached a backend');
  });

  it('while every backend drains', async (t) => {
    const b1 = await backend(t, 'dr1');
    const b2 = await backend(t, 'dr2');
    const s = await lb([b1, b2]);
    for (const id of s.backendIds) {
      const r = await s.api.post(`/api/v1/pools/${s.poolId}/backends/${id}/drain`, { timeout_seconds: 600 });
      assert.equal(r.status, 202, JSON.stringify(r.body));
    }
    assertProblem(await send(s.port, get('/drain', [['X-Request-ID', 'rid-draining']])), 503, 'rid-draining');
    assert.equal(b1.seen.length + b2.seen.length, 0);
  });

  it('when the pool has no backends', async () => {
    const s = await lb([]);
    assertProblem(await send(s.port, get('/empty')), 503);
  });

  it('when every backend is at max_connections', async (t) => {
    const b = await backend(t, 'full', { stream: () => {} }); // holds every request
    const s = await lb([b], { backendFields: [{ max_connections: 1 }] });
    const arrived = once(b.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const first = await client(t, s.port);
    await first.write(get('/held'));
    const [, heldRes] = await arrived;
    assertProblem(await send(s.port, get('/overflow', [['X-Request-ID', 'rid-full']])), 503, 'rid-full');
    assert.equal(b.seen.length, 1, 'the overflow request did not reach the full backend');
    heldRes.writeHead(200, { 'content-type': 'text/plain' });
    heldRes.end('released');
    const res = await first.final();
    assert.equal(res.status, 200, describeRes(res));
    assert.equal(res.body.toString(), 'released');
    // With the slot free again the backend takes requests.
    const next = once(b.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const again = client(t, s.port).then(async (c) => {
      await c.write(get('/after'));
      return c.final();
    });
    const [, nextRes] = await next;
    nextRes.end('ok');
    assert.equal((await again).status, 200);
  });
});

describe('504 Gateway Timeout', () => {
  it('when the backend does not answer within timeouts.backend_ms, and the upstream request is abandoned', async (t) => {
    const b = await backend(t, 'slow', { stream: (req) => req.resume() }); // never answers
    const s = await lb([b], { listener: { timeouts: { backend_ms: 300 } } });
    const arrived = once(b.server, 'request') as Promise<[IncomingMessage, ServerResponse]>;
    const started = Date.now();
    const pending = send(s.port, get('/slow', [['X-Request-ID', 'rid-slow']]));
    const [upstreamReq] = await arrived;
    const upstreamClosed = new Promise((resolve) => upstreamReq.socket.once('close', resolve));
    const res = await pending;
    const elapsed = Date.now() - started;
    assertProblem(res, 504, 'rid-slow');
    t.diagnostic(`504 after ${elapsed} ms`);
    assert.ok(elapsed >= 250 && elapsed < 5000, `504 after ${elapsed} ms; backend_ms is 300`);
    assert.equal(b.seen.length, 1, 'a timed-out request is not re-sent');
    await upstreamClosed; // Fulcrum gave up on the upstream exchange
  });
});

describe('backend_ms between body chunks', () => {
  it('a backend that goes silent in the middle of its body is cut after backend_ms; the client sees a cut, not a clean end', async (t) => {
    const b = await backend(t, 'stall', {
      stream: (req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' }); // chunked: only a clean end finishes it
        res.write('first part;');
        // ... and then nothing, until the test ends.
      },
    });
    const s = await lb([b], { listener: { timeouts: { backend_ms: 300 } } });
    const started = Date.now();
    const c = await client(t, s.port);
    const received: Buffer[] = [];
    c.socket.on('data', (d: Buffer) => received.push(d));
    const closed = once(c.socket, 'close');
    await c.write(get('/stall'));
    await closed;
    const elapsed = Date.now() - started;
    const text = Buffer.concat(received).toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /first part;/);
    assert.doesNotMatch(text, /\r\n0\r\n\r\n$/, 'no terminating chunk: the message is visibly cut');
    assert.ok(elapsed >= 250 && elapsed < 2000, `cut after ${elapsed} ms; backend_ms is 300`);
  });
});

describe('504 Gateway Timeout: precision', () => {
  it('a backend that answers later than backend_ms gets 504, not its late answer', async (t) => {
    // backend_ms 300; the backend answers after 700 ms. A timer honouring backend_ms fires at ~300 ms.
    const b = await backend(t, 'late', {
      stream: (req, res) => {
        req.resume();
        const timer = setTimeout(() => res.end('late answer'), 700);
        res.once('close', () => clearTimeout(timer));
      },
    });
    const s = await lb([b], { listener: { timeouts: { backend_ms: 300 } } });
    const started = Date.now();
    const res = await send(s.port, get('/late', [['X-Request-ID', 'rid-late']]));
    const elapsed = Date.now() - started;
    assert.equal(res.status, 504, `after ${elapsed} ms (backend_ms 300, backend answers at 700 ms): ${describeRes(res)}`);
    assertProblem(res, 504, 'rid-late');
    assert.ok(elapsed < 600, `504 after ${elapsed} ms; backend_ms is 300`);
  });
});

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

describe('retries', () => {
  it('a pool with one dead and one live backend answers every request 200', async (t) => {
    const live = await backend(t, 'live');
    const s = await lb([{ name: 'dead', port: await closedPort() }, live]);
    const c = await client(t, s.port);
    for (let i = 0; i < 20; i++) {
      await c.write(get(`/r/${i}`));
      const res = await c.final();
      assert.equal(res.status, 200, `request ${i}: ${describeRes(res)}`);
      assert.equal(res.body.toString(), 'live');
    }
    for (let i = 0; i < 6; i++) {
      await c.write(rawRequest('POST', `/p/${i}`, [['Content-Length', 6]], `body-${i}`));
      const res = await c.final();
      assert.equal(res.status, 200, `POST ${i} (connection refused: nothing was sent, so it is safe to retry): ${describeRes(res)}`);
    }
    assert.equal(live.seen.length, 26);
    assert.deepEqual(
      live.seen.filter((r) => r.method === 'POST').map((r) => r.body.toString()),
      Array.from({ length: 6 }, (_, i) => `body-${i}`),
      'each POST reached the live backend exactly once, body intact',
    );
  });

  it('retries: 0 means a refused connection is not retried', async (t) => {
    const live = await backend(t, 'live0');
    const s = await lb([{ name: 'dead0', port: await closedPort() }, live], { pool: { retries: 0 } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await send(s.port, get(`/z/${i}`))).status);
    assert.ok(statuses.includes(502), `with retries 0 a pick of the dead backend answers 502; got ${statuses.join(',')}`);
    assert.ok(statuses.includes(200), `the live backend still answers; got ${statuses.join(',')}`);
  });

  it('a POST whose backend resets after reading the body gets 502 and is not re-sent', async (t) => {
    const resetter = await backend(t, 'resetter', { handler: (req) => req.socket.destroy() });
    const other = await backend(t, 'other');
    const s = await lb([resetter, other]);
    const results = new Map<string, RawResponse>();
    for (let i = 0; i < 6 && resetter.seen.length === 0; i++) {
      const tag = `order-${i}`;
      results.set(tag, await send(s.port, rawRequest('POST', `/orders/${tag}`, [['Content-Length', tag.length], ['X-Request-ID', `rid-${tag}`]], tag)));
    }
    assert.equal(resetter.seen.length, 1, 'round robin sent one POST to the resetting backend');
    const hit = resetter.seen[0]!.body.toString();
    assert.equal(hit, resetter.seen[0]!.url.slice('/orders/'.length), 'the resetting backend read the whole body');
    assertProblem(results.get(hit)!, 502, `rid-${hit}`);
    assert.ok(!other.seen.some((r) => r.body.toString() === hit), `the POST ${hit} was re-sent to the other backend after the first one read it`);
    for (const [tag, res] of results) if (tag !== hit) assert.equal(res.status, 200, `${tag}: ${describeRes(res)}`);
  });

  it('a GET whose backend resets after reading it is retried on another backend', async (t) => {
    const resetter = await backend(t, 'resetter-get', { handler: (req) => req.socket.destroy() });
    const other = await backend(t, 'other-get');
    const s = await lb([resetter, other]);
    const results = new Map<string, RawResponse>();
    for (let i = 0; i < 6 && resetter.seen.length === 0; i++) {
      results.set(`/items/${i}`, await send(s.port, get(`/items/${i}`)));
    }
    assert.equal(resetter.seen.length, 1, 'round robin sent one GET to the resetting backend');
    const hit = resetter.seen[0]!.url;
    const res = results.get(hit)!;
    assert.equal(res.status, 200, `the GET ${hit} should have been retried: ${describeRes(res)}`);
    assert.equal(res.body.toString(), 'other-get');
    assert.ok(other.seen.some((r) => r.url === hit), 'the other backend answered the retried GET');
  });

  it('a request is tried at most 1 + retries times', async (t) => {
    // Four backends that accept the request and reset the connection; the pool keeps retries at its default, 2.
    const resetters = await Promise.all(Array.from({ length: 4 }, () => startRawBackend((socket) => socket.once('data', () => socket.resetAndDestroy()))));
    t.after(() => Promise.all(resetters.map((r) => r.close())));
    const s = await lb(resetters.map((r, i) => ({ name: `rst-${i}`, port: r.port })));
    const attempts = () => resetters.reduce((n, r) => n + r.connections, 0);
    assertProblem(await send(s.port, get('/tried', [['X-Request-ID', 'rid-tried']])), 502, 'rid-tried');
    assert.equal(attempts(), 3, 'a GET: the first attempt and 2 retries, each on a different backend');
    assert.equal(resetters.filter((r) => r.connections > 0).length, 3, 'each retry goes to another backend');
    const before = attempts();
    assertProblem(await send(s.port, rawRequest('POST', '/tried', [['Content-Length', 5]], 'hello')), 502);
    assert.equal(attempts() - before, 1, 'a POST the backend read is not re-sent');
  });
});
