/**
 * HTTP/2 to clients on HTTPS listeners: ALPN offers h2, and everything the HTTP data plane does
 * works over it — balancing per request (many streams on one connection spread over backends),
 * header rewriting with :authority standing for Host, bodies streaming both ways, trailers, the
 * balancer's own errors, and metrics.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ClientHttp2Session, constants } from 'node:http2';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { h2Connect, h2Request, handshake, uploadCert } from '../helpers/tls.ts';

let t: TestFulcrum;
let certs: CertFactory;
let ca: Pem;
let certId: string;
let backends: TestBackend[];
let lb: LbSetup;
let session: ClientHttp2Session;
/** Called when a backend's /hang request is abandoned (its connection closed under it). */
const abandoned = new Map<string, () => void>();

before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('H2 Test CA');
  certId = await uploadCert(t.api, 'h2-localhost', certs.leaf(['localhost'], { ca }), ca.cert);
  backends = await Promise.all(
    ['a', 'b', 'c'].map((name) =>
      startBackend(name, {
        handler: (req, res, n, body) => {
          if (req.url === '/echo') {
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-backend': n });
            res.end(body);
          } else if (req.url === '/big') {
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            const chunk = Buffer.alloc(64 * 1024, n);
            let left = 128; // 8 MiB
            const pump = () => {
              while (left > 0) {
                left--;
                if (!res.write(chunk)) return res.once('drain', pump);
              }
              res.end();
            };
            pump();
          } else if (req.url === '/hang') {
            // Never answers: the test resets the stream; the backend sees its request abandoned.
            res.once('close', () => abandoned.get(n)?.());
          } else if (req.url === '/bad-fields') {
            // Fields HTTP/2 cannot carry, in the head and in the trailers: dropped, never fatal.
            res.writeHead(200, [
              'content-type', 'text/plain', 'content-type', 'text/html', 'http2-settings', 'AAMAAABkAAQAAP__', 'trailer', 'x-sum',
            ]);
            res.write('fields');
            res.addTrailers([['Connection', 'close'], ['Keep-Alive', '5'], ['x-sum', '42']]);
            res.end();
          } else if (req.url === '/trailers') {
            res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
            res.write('with trailers');
            res.addTrailers({ 'x-checksum': 'abc123' });
            res.end();
          } else {
            res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': n, 'keep-alive': 'timeout=5' });
            res.end(n);
          }
        },
      }),
    ),
  );
  lb = await setupLb(backends, { fulcrum: t, listener: { protocol: 'HTTPS', tls: { certificate_ids: [certId] } } });
  session = await h2Connect(lb.port, ca.cert);
});
after(async () => {
  session?.close();
  await t.close();
  await Promise.all(backends.map((b) => b.close()));
  certs.remove();
});

describe('HTTP/2 on an HTTPS listener', () => {
  it('negotiates h2 by ALPN and forwards with :authority as Host and X-Forwarded-Proto https', async () => {
    const r = await h2Request(session, { ':path': '/hello?x=1', ':method': 'GET', ':authority': 'app.example.test', 'x-custom': 'yes', cookie: ['a=1', 'b=2'] });
    assert.equal(r.status, 200);
    assert.ok(['a', 'b', 'c'].includes(r.body));
    assert.equal(r.headers['x-backend'], r.body);
    assert.equal(r.headers['keep-alive'], undefined, 'connection-specific fields are not sent over h2');
    const seen = backends.find((b) => b.name === r.body)!.seen.at(-1)!;
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers.host, 'app.example.test');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-host'], 'app.example.test');
    assert.equal(seen.headers['x-custom'], 'yes');
    assert.equal(seen.headers.cookie, 'a=1; b=2', 'split h2 cookies are joined for HTTP/1.1 (RFC 9113 §8.2.3)');
    assert.ok(!Object.keys(seen.headers).some((k) => k.startsWith(':')), 'no pseudo-header reaches the backend');
  });

  it('balances many concurrent streams of one connection per request', async () => {
    const answers = await Promise.all(Array.from({ length: 300 }, () => h2Request(session, { ':path': '/' })));
    const counts: Record<string, number> = {};
    for (const a of answers) {
      assert.equal(a.status, 200);
      counts[a.body] = (counts[a.body] ?? 0) + 1;
    }
    assert.deepEqual(counts, { a: 100, b: 100, c: 100 }, 'round robin over the streams of one connection');
  });

  it('streams request and response bodies both ways, intact', async () => {
    const upload = Buffer.alloc(3 * 1024 * 1024 + 17, 'u');
    const echo = await h2Request(session, { ':path': '/echo', ':method': 'POST' }, upload);
    assert.equal(echo.status, 200);
    assert.equal(echo.body.length, upload.length);
    assert.equal(echo.body, upload.toString());
    const big = await h2Request(session, { ':path': '/big' });
    assert.equal(big.status, 200);
    assert.equal(big.body.length, 8 * 1024 * 1024);
  });

  it('passes trailers of a chunked HTTP/1.1 response on to the HTTP/2 client', async () => {
    const r = await h2Request(session, { ':path': '/trailers', te: 'trailers' });
    assert.equal(r.body, 'with trailers');
    assert.equal(r.trailers['x-checksum'], 'abc123');
  });

  it("answers the balancer's own errors over h2: 503 without backends, 502 when the backend is gone", async () => {
    const empty = await t.api.post('/api/v1/pools', { name: 'h2-empty' });
    const patched = await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { default_pool_id: empty.body.pool_id });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const r = await h2Request(session, { ':path': '/' });
    assert.equal(r.status, 503);
    assert.match(r.body, /^503 Service Unavailable: no usable backend \(request id req-/);
    assert.equal(r.headers['retry-after'], '1');

    const gone = await startBackend('gone');
    await gone.close();
    await t.api.post(`/api/v1/pools/${empty.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: gone.port });
    const bad = await h2Request(session, { ':path': '/' });
    assert.equal(bad.status, 502);
    assert.match(bad.body, /ECONNREFUSED/);
    await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { default_pool_id: lb.poolId });
  });

  it('a client that resets its stream abandons that request only: the backend request is cancelled, counted 499', async () => {
    const before = await requestsCounted('499');
    const cancelled = new Promise<void>((resolve) => {
      for (const b of backends) abandoned.set(b.name, resolve);
    });
    const stream = session.request({ ':path': '/hang' });
    stream.on('error', () => {});
    await new Promise<void>((resolve) => {
      // Reset once the request has reached a backend.
      const poll = () => (backends.some((b) => b.seen.at(-1)?.url === '/hang') ? resolve() : setImmediate(poll));
      poll();
    });
    stream.close(constants.NGHTTP2_CANCEL);
    await cancelled;
    assert.equal((await h2Request(session, { ':path': '/' })).status, 200, 'the connection carries on');
    assert.equal((await requestsCounted('499')) - before, 1);
  });

  it('drops response fields and trailers HTTP/2 cannot carry instead of failing (or crashing)', async () => {
    const r = await h2Request(session, { ':path': '/bad-fields', te: 'trailers' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'fields');
    assert.equal(r.headers['content-type'], 'text/plain', 'a repeated single-value field is kept once');
    assert.equal(r.headers['http2-settings'], undefined);
    assert.equal(r.trailers['x-sum'], '42');
    assert.equal(r.trailers.connection, undefined);
    assert.equal(r.trailers['keep-alive'], undefined);
    assert.equal((await h2Request(session, { ':path': '/' })).status, 200, 'Fulcrum is still serving');
  });

  it('an upload the backend answered early is stopped (RST_STREAM NO_ERROR), not left hanging', async () => {
    // A backend that answers before reading the upload, as a 401 or a 413 would.
    const early = await startBackend('early', {
      stream: (_req, res) => {
        res.writeHead(401, { 'content-type': 'text/plain' });
        res.end('no');
      },
    });
    const own = await setupLb([early], { fulcrum: t, listener: { protocol: 'HTTPS', tls: { certificate_ids: [certId] } } });
    const earlySession = await h2Connect(own.port, ca.cert);
    const stream = earlySession.request({ ':path': '/upload', ':method': 'POST' });
    let status = 0;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', () => {});
    stream.write(Buffer.alloc(16 * 1024, 'x')); // the rest never comes
    const code = await new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? -1)));
    assert.equal(status, 401);
    assert.equal(code, constants.NGHTTP2_NO_ERROR);
    earlySession.close();
    await early.close();
  });

  it('client_ms bounds an HTTP/2 request body: 408, and the backend slot is given back', async () => {
    const r = await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { timeouts: { client_ms: 300 } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    try {
      const stream = session.request({ ':path': '/echo', ':method': 'POST' });
      stream.write('a trickle that stops');
      stream.resume();
      const head = await new Promise<Record<string, unknown>>((resolve) => stream.once('response', resolve));
      assert.equal(head[':status'], 408);
      await new Promise<void>((resolve) => stream.once('close', () => resolve()));
      const metrics = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
      for (const line of metrics.split('\n').filter((l) => l.startsWith(`fulcrum_backend_active_connections{pool="${lb.poolId}"`))) {
        assert.match(line, / 0$/, line);
      }
    } finally {
      await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { timeouts: { client_ms: 60000 } });
    }
  });

  it('counts the bytes of HTTP/2 connections once, not once per stream', async () => {
    // A connection of its own: bytes of earlier tests' streams still in flight are not in the window.
    const fresh = await h2Connect(lb.port, ca.cert);
    await h2Request(fresh, { ':path': '/' });
    const before = await counter('fulcrum_bytes_out_total');
    const read = fresh.socket.bytesRead;
    for (let i = 0; i < 20; i++) await h2Request(fresh, { ':path': '/' });
    const counted = (await counter('fulcrum_bytes_out_total')) - before;
    const actual = fresh.socket.bytesRead - read;
    fresh.close();
    assert.ok(counted > 0 && counted <= actual * 1.1, `counted ${counted} bytes out, the client read ${actual}`);
  });

  it('routing rules apply to HTTP/2 requests: :authority as the host, transforms with field names in lower case, fixed responses', async () => {
    const rule = await t.api.post('/api/v1/routing-rules', {
      name: 'h2 rule',
      priority: 1,
      match: { hosts: ['localhost'], path_prefix: '/ruled' },
      action: { type: 'FORWARD', pool_id: lb.poolId },
      transforms: { add_response_headers: { 'X-Route': 'H2 ${method}' }, remove_response_headers: ['X-Backend'], url_rewrite: '^/ruled -> /' },
    });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    const fixed = await t.api.post('/api/v1/routing-rules', {
      name: 'h2 fixed',
      priority: 2,
      match: { path_exact: '/teapot' },
      action: { type: 'FIXED_RESPONSE', status_code: 418, content_type: 'text/plain', body: 'short and stout' },
      transforms: { add_response_headers: { 'X-Why': 'Teapot' } },
    });
    assert.equal(fixed.status, 201, JSON.stringify(fixed.body));
    try {
      const res = await h2Request(session, { ':path': '/ruled', ':authority': 'localhost' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-route'], 'H2 GET');
      assert.equal(res.headers['x-backend'], undefined);
      assert.ok(['a', 'b', 'c'].includes(res.body));
      const teapot = await h2Request(session, { ':path': '/teapot' });
      assert.equal(teapot.status, 418);
      assert.equal(teapot.body, 'short and stout');
      assert.equal(teapot.headers['x-why'], 'Teapot');
    } finally {
      await t.api.delete(`/api/v1/routing-rules/${rule.body.rule_id}`);
      await t.api.delete(`/api/v1/routing-rules/${fixed.body.rule_id}`);
    }
  });

  it('counts h2 requests in the metrics like any other', async () => {
    const before = await requestsCounted();
    await Promise.all(Array.from({ length: 10 }, () => h2Request(session, { ':path': '/' })));
    assert.equal((await requestsCounted()) - before, 10);
  });

  it('offers the ALPN protocols the listener names, in its order', async () => {
    const both = await handshake(lb.port, { servername: 'localhost', ca: ca.cert, ALPNProtocols: ['http/1.1', 'h2'] });
    assert.equal(both.alpn, 'h2', "the server's preference wins");
    both.socket.destroy();
    const h1 = await handshake(lb.port, { servername: 'localhost', ca: ca.cert, ALPNProtocols: ['http/1.1'] });
    assert.equal(h1.alpn, 'http/1.1');
    h1.socket.destroy();

    const only = await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { tls: { alpn: ['http/1.1'] } });
    assert.equal(only.status, 200, JSON.stringify(only.body));
    assert.deepEqual(only.body.tls.alpn, ['http/1.1']);
    assert.deepEqual(only.body.tls.certificate_ids, [certId], 'a tls PATCH merges');
    const downgraded = await handshake(lb.port, { servername: 'localhost', ca: ca.cert, ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(downgraded.alpn, 'http/1.1');
    downgraded.socket.destroy();
    await assert.rejects(handshake(lb.port, { servername: 'localhost', ca: ca.cert, ALPNProtocols: ['h2'] }), /no application protocol|ALPN/i);
    // The session opened before the change still works: connections keep what they negotiated.
    assert.equal((await h2Request(session, { ':path': '/' })).status, 200);
    await t.api.patch(`/api/v1/load-balancers/${lb.lbId}/listeners/${lb.listenerId}`, { tls: { alpn: ['h2', 'http/1.1'] } });
  });
});

async function counter(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{listener="${lb.listenerId}"}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

async function requestsCounted(code?: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`fulcrum_requests_total{listener="${lb.listenerId}"`)) continue;
    if (code !== undefined && !line.includes(`code="${code}"`)) continue;
    sum += Number(line.split(' ').at(-1));
  }
  return sum;
}
