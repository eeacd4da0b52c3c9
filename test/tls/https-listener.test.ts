/**
 * HTTPS listeners (issue 5, first step): TLS terminated with uploaded certificates, SNI choosing
 * the certificate (exact name, then wildcard, then the listener's first), requests forwarded with
 * X-Forwarded-Proto https, and a certificate in use that cannot be deleted.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { assertError } from '../helpers/assertions.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, tempDir, type TestFulcrum } from '../helpers/fulcrum.ts';
import { startBackend, type TestBackend } from '../helpers/http-lb.ts';
import { h2Connect, h2Request, handshake, httpsGet, uploadCert } from '../helpers/tls.ts';

let t: TestFulcrum;
let certs: CertFactory;
let ca: Pem;
let backend: TestBackend;
before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('HTTPS Test CA');
  backend = await startBackend('app');
});
after(async () => {
  await t.close();
  await backend.close();
  certs.remove();
});

/** GET over TLS with a given SNI name; what certificate the server showed, and the answer. */
function get(port: number, servername: string, anyName = false): Promise<{ cn: string; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // anyName: the chain is still verified against the CA, the name is not (the fallback certificate cannot match it).
    const identity = anyName ? { checkServerIdentity: () => undefined } : {};
    const req = request({ host: '127.0.0.1', port, path: '/', servername, ca: ca.cert, headers: { host: servername }, agent: false, ...identity }, (res) => {
      const cn = String((res.socket as TLSSocket).getPeerCertificate().subject.CN);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ cn, status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTPS listener', () => {
  it('terminates TLS, picks the certificate by SNI (exact, wildcard, then the first) and forwards with X-Forwarded-Proto https', async () => {
    const a = certs.leaf(['a.example.com'], { ca });
    const b = certs.leaf(['*.b.example.com'], { ca });
    const ca1 = await t.api.post('/api/v1/certificates', { name: 'a', certificate_pem: a.cert, private_key_pem: a.key, chain_pem: ca.cert });
    const cb = await t.api.post('/api/v1/certificates', { name: 'b', certificate_pem: b.cert, private_key_pem: b.key, chain_pem: ca.cert });
    assert.equal(ca1.status, 201, JSON.stringify(ca1.body));
    assert.equal(cb.status, 201, JSON.stringify(cb.body));
    const pool = await t.api.post('/api/v1/pools', { name: 'tls-pool' });
    await t.api.post(`/api/v1/pools/${pool.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backend.port });
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'tls-lb' });
    const port = await freePort();
    const listener = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
      name: 'https',
      protocol: 'HTTPS',
      bind_address: '127.0.0.1',
      port,
      default_pool_id: pool.body.pool_id,
      tls: { certificate_ids: [ca1.body.cert_id, cb.body.cert_id], min_version: 'TLS1_2' },
    });
    assert.equal(listener.status, 201, JSON.stringify(listener.body));
    assert.equal(listener.body.status, 'ACTIVE');

    assert.deepEqual(await get(port, 'a.example.com'), { cn: 'a.example.com', status: 200, body: 'app' });
    assert.equal((await get(port, 'x.b.example.com')).cn, '*.b.example.com', 'wildcard');
    const other = await get(port, 'unknown.example.org', true);
    assert.equal(other.cn, 'a.example.com', 'an unknown name gets the first certificate');
    assert.equal(other.status, 200);
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-port'], String(port));

    const inUse = await t.api.delete(`/api/v1/certificates/${ca1.body.cert_id}`);
    assertError(inUse, 409, 'CERTIFICATE_IN_USE');
    assert.deepEqual(inUse.body.error.details.listener_ids, [listener.body.listener_id]);
    const shown = (await t.api.get(`/api/v1/certificates/${cb.body.cert_id}`)).body;
    assert.deepEqual(shown.in_use_by_listeners, [listener.body.listener_id]);
  });

  it('refuses an HTTPS listener without certificates, with unknown ones, and tls on an HTTP listener', async () => {
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'tls-refusals' });
    const path = `/api/v1/load-balancers/${lb.body.lb_id}/listeners`;
    const port = await freePort();
    assertError(await t.api.post(path, { name: 'no-tls', protocol: 'HTTPS', bind_address: '127.0.0.1', port }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.post(path, { name: 'unknown', protocol: 'HTTPS', bind_address: '127.0.0.1', port, tls: { certificate_ids: ['cert-nope'] } }), 404, 'CERTIFICATE_NOT_FOUND');
    const single = certs.leaf(['plain.example.com']);
    const c = await t.api.post('/api/v1/certificates', { name: 'plain', certificate_pem: single.cert, private_key_pem: single.key });
    assertError(await t.api.post(path, { name: 'http-tls', protocol: 'HTTP', bind_address: '127.0.0.1', port, tls: { certificate_ids: [c.body.cert_id] } }), 400, 'VALIDATION_ERROR');
  });
});

/** A plain HTTP request with a Host of our choosing (fetch does not let one set Host). */
function plainRequest(port: number, method: string, path: string, host: string, body?: string): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('HTTPS listener settings', () => {
  /** A listener in front of `backend` with `tls` (and more), on a fresh port. */
  async function listen(name: string, fields: Record<string, unknown>): Promise<{ port: number; lbId: string; listenerId: string }> {
    const pool = await t.api.post('/api/v1/pools', { name: `${name}-pool` });
    await t.api.post(`/api/v1/pools/${pool.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backend.port });
    const lb = await t.api.post('/api/v1/load-balancers', { name: `${name}-lb` });
    const port = await freePort();
    const res = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
      name,
      protocol: 'HTTPS',
      bind_address: '127.0.0.1',
      port,
      default_pool_id: pool.body.pool_id,
      ...fields,
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.status, 'ACTIVE', JSON.stringify(res.body));
    return { port, lbId: lb.body.lb_id, listenerId: res.body.listener_id };
  }

  let localhost: string;
  before(async () => {
    localhost = await uploadCert(t.api, 'settings-localhost', certs.leaf(['localhost'], { ca }), ca.cert);
  });

  it('fills TLS defaults, and min_version TLS1_3 refuses a TLS 1.2 client', async () => {
    const { port, lbId, listenerId } = await listen('tls13', { tls: { certificate_ids: [localhost] } });
    const shown = (await t.api.get(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`)).body;
    assert.deepEqual(shown.tls, { certificate_ids: [localhost], min_version: 'TLS1_2', alpn: ['h2', 'http/1.1'], client_auth: 'NONE', client_subject_header: 'X-Client-Cert-Subject' });
    const old = await handshake(port, { servername: 'localhost', ca: ca.cert, maxVersion: 'TLSv1.2' });
    assert.equal(old.socket.getProtocol(), 'TLSv1.2');
    old.socket.destroy();
    const r = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { tls: { min_version: 'TLS1_3' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await assert.rejects(handshake(port, { servername: 'localhost', ca: ca.cert, maxVersion: 'TLSv1.2' }), /protocol version|alert/i);
    const now = await handshake(port, { servername: 'localhost', ca: ca.cert });
    assert.equal(now.socket.getProtocol(), 'TLSv1.3');
    now.socket.destroy();
    // A whole exchange, so the server has seen the client's Finished (TLS 1.3 lets the client finish first).
    assert.equal((await httpsGet(port, { ca: ca.cert })).status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${t.fulcrum.apiAddress.port}/metrics`)).text();
    assert.match(metrics, new RegExp(`fulcrum_tls_handshake_errors_total\\{listener="${listenerId}"\\} [1-9]`));
    assert.match(metrics, new RegExp(`fulcrum_tls_handshakes_total\\{listener="${listenerId}",version="TLSv1.3"\\} [1-9]`));
  });

  it('refuses settings that cannot work, naming the field', async () => {
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'settings-refusals' });
    const path = `/api/v1/load-balancers/${lb.body.lb_id}/listeners`;
    const base = { name: 'x', protocol: 'HTTPS', bind_address: '127.0.0.1', port: await freePort() };
    const cases: [Record<string, unknown>, string][] = [
      [{ tls: { certificate_ids: [localhost], ciphers: 'NOT-A-CIPHER' } }, 'tls.ciphers'],
      [{ tls: { certificate_ids: [localhost], client_auth: 'REQUIRED' } }, 'tls.client_ca_pem'],
      [{ tls: { certificate_ids: [localhost], client_auth: 'OPTIONAL', client_ca_pem: 'not a pem' } }, 'tls.client_ca_pem'],
      [{ tls: { certificate_ids: [localhost] }, hsts: { preload: true } }, 'hsts.preload'],
      [{ tls: { certificate_ids: [localhost] }, redirect_to_https: { enabled: true } }, 'redirect_to_https'],
      [{ tls: { certificate_ids: [localhost], alpn: ['h3'] } }, 'tls.alpn.0'],
      [{ tls: { certificate_ids: [localhost], client_subject_header: 'bad header' } }, 'tls.client_subject_header'],
    ];
    for (const [fields, field] of cases) {
      const res = await t.api.post(path, { ...base, ...fields });
      const err = assertError(res, 400, 'VALIDATION_ERROR');
      assert.ok(JSON.stringify(err.details).includes(field), `${field} in ${JSON.stringify(err.details)}`);
    }
    const http = { ...base, protocol: 'HTTP' };
    assert.ok(JSON.stringify(assertError(await t.api.post(path, { ...http, hsts: {} }), 400, 'VALIDATION_ERROR').details).includes('hsts'));
  });

  it('client_auth REQUIRED: no certificate, no handshake; a verified one reaches the backend as a subject header, a forged header never does', async () => {
    const clientCa = certs.ca('Client CA');
    const client = certs.leaf(['client-one.example.com'], { ca: clientCa });
    const stranger = certs.leaf(['stranger.example.com'], { ca: certs.ca('Other CA') });
    const { port } = await listen('mtls-required', {
      tls: { certificate_ids: [localhost], client_auth: 'REQUIRED', client_ca_pem: clientCa.cert, client_subject_header: 'X-Verified-Client' },
    });
    await assert.rejects(httpsGet(port, { ca: ca.cert }), /certificate|alert|socket hang up|ECONNRESET/i);
    await assert.rejects(httpsGet(port, { ca: ca.cert, cert: stranger.cert, key: stranger.key }), /certificate|alert|socket hang up|ECONNRESET/i);
    const ok = await httpsGet(port, { ca: ca.cert, cert: client.cert, key: client.key, headers: { 'x-verified-client': 'CN=forged' } });
    assert.equal(ok.status, 200);
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-verified-client'], 'CN=client-one.example.com');
  });

  it('client_auth OPTIONAL: no certificate passes without the header, an unverifiable one is answered 403', async () => {
    const clientCa = certs.ca('Optional Client CA');
    const client = certs.leaf(['client-two.example.com'], { ca: clientCa });
    const stranger = certs.leaf(['stranger-two.example.com']);
    const { port } = await listen('mtls-optional', { tls: { certificate_ids: [localhost], client_auth: 'OPTIONAL', client_ca_pem: clientCa.cert } });
    const anonymous = await httpsGet(port, { ca: ca.cert, headers: { 'x-client-cert-subject': 'CN=forged' } });
    assert.equal(anonymous.status, 200);
    assert.equal(backend.seen.at(-1)!.headers['x-client-cert-subject'], undefined, 'a forged subject is dropped');
    const verified = await httpsGet(port, { ca: ca.cert, cert: client.cert, key: client.key });
    assert.equal(verified.status, 200);
    assert.equal(backend.seen.at(-1)!.headers['x-client-cert-subject'], 'CN=client-two.example.com');
    const before = backend.seen.length;
    const refused = await httpsGet(port, { ca: ca.cert, cert: stranger.cert, key: stranger.key });
    assert.equal(refused.status, 403);
    assert.match(refused.body, /client certificate was not accepted: DEPTH_ZERO_SELF_SIGNED_CERT/);
    assert.equal(backend.seen.length, before, 'not forwarded');
  });

  it('client_auth turned to REQUIRED applies to requests of connections opened before: 403 without a certificate', async () => {
    const clientCa = certs.ca('Tightened CA');
    const { port, lbId, listenerId } = await listen('mtls-tightened', { tls: { certificate_ids: [localhost] } });
    const session = await h2Connect(port, ca.cert);
    try {
      assert.equal((await h2Request(session, { ':path': '/' })).status, 200);
      const r = await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { tls: { client_auth: 'REQUIRED', client_ca_pem: clientCa.cert } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const refused = await h2Request(session, { ':path': '/' });
      assert.equal(refused.status, 403);
      assert.match(refused.body, /this listener requires a client certificate/);
    } finally {
      session.close();
    }
  });

  it('a subject header configured on an HTTPS listener is dropped from requests through HTTP listeners too', async () => {
    await listen('mtls-header-owner', { tls: { certificate_ids: [localhost], client_subject_header: 'X-Mtls-Identity' } });
    const pool = await t.api.post('/api/v1/pools', { name: 'plain-path-pool' });
    await t.api.post(`/api/v1/pools/${pool.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backend.port });
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'plain-path' });
    const port = await freePort();
    await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, { name: 'plain', protocol: 'HTTP', bind_address: '127.0.0.1', port, default_pool_id: pool.body.pool_id });
    const r = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-mtls-identity': 'CN=forged', 'x-other': 'kept' } });
    assert.equal(r.status, 200);
    const seen = backend.seen.at(-1)!;
    assert.equal(seen.headers['x-mtls-identity'], undefined);
    assert.equal(seen.headers['x-other'], 'kept');
  });

  it('client_auth NONE drops a client-sent subject header too', async () => {
    const { port } = await listen('mtls-none', { tls: { certificate_ids: [localhost] } });
    assert.equal((await httpsGet(port, { ca: ca.cert, headers: { 'x-client-cert-subject': 'CN=forged' } })).status, 200);
    assert.equal(backend.seen.at(-1)!.headers['x-client-cert-subject'], undefined);
  });

  it('hsts adds Strict-Transport-Security to forwarded answers and to its own', async () => {
    const { port, lbId, listenerId } = await listen('hsts', {
      tls: { certificate_ids: [localhost] },
      hsts: { max_age_seconds: 63072000, include_subdomains: true, preload: true },
    });
    const ok = await httpsGet(port, { ca: ca.cert });
    assert.equal(ok.headers['strict-transport-security'], 'max-age=63072000; includeSubDomains; preload');
    const empty = await t.api.post('/api/v1/pools', { name: 'hsts-empty' });
    await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { default_pool_id: empty.body.pool_id, hsts: { preload: false, include_subdomains: false, max_age_seconds: 600 } });
    const own = await httpsGet(port, { ca: ca.cert });
    assert.equal(own.status, 503);
    assert.equal(own.headers['strict-transport-security'], 'max-age=600');
    await t.api.patch(`/api/v1/load-balancers/${lbId}/listeners/${listenerId}`, { hsts: null });
    assert.equal((await httpsGet(port, { ca: ca.cert })).headers['strict-transport-security'], undefined);
  });

  it('redirect_to_https on an HTTP listener answers with the HTTPS URL and forwards nothing', async () => {
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'redirects' });
    const pool = await t.api.post('/api/v1/pools', { name: 'redirect-pool' });
    await t.api.post(`/api/v1/pools/${pool.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backend.port });
    const port = await freePort();
    const created = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
      name: 'plain',
      protocol: 'HTTP',
      bind_address: '127.0.0.1',
      port,
      default_pool_id: pool.body.pool_id,
      redirect_to_https: { enabled: true },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(created.body.redirect_to_https, { enabled: true, status_code: 301, port: 443 });
    const before = backend.seen.length;
    const r = await plainRequest(port, 'GET', '/a/b?c=d', 'shop.example.com:80');
    assert.equal(r.status, 301);
    assert.equal(r.location, 'https://shop.example.com/a/b?c=d');
    const patched = await t.api.patch(`/api/v1/load-balancers/${lb.body.lb_id}/listeners/${created.body.listener_id}`, { redirect_to_https: { status_code: 308, port: 8443 } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const post = await plainRequest(port, 'POST', '/form', '[::1]:8080', 'x');
    assert.equal(post.status, 308, 'method and body kept by the client');
    assert.equal(post.location, 'https://[::1]:8443/form');
    assert.equal(backend.seen.length, before, 'nothing reached the backend');
    await t.api.patch(`/api/v1/load-balancers/${lb.body.lb_id}/listeners/${created.body.listener_id}`, { redirect_to_https: { enabled: false } });
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200, 'disabled: forwarded again');
  });
});

describe('HTTPS listener certificates over time', () => {
  it('re-pointing certificate_ids serves new handshakes at once while a held connection keeps going', async () => {
    const first = await uploadCert(t.api, 'repoint-one', certs.leaf(['repoint.example.com'], { ca }), ca.cert);
    const second = await uploadCert(t.api, 'repoint-two', certs.leaf(['repoint.example.com', 'www.repoint.example.com'], { ca }), ca.cert);
    const pool = await t.api.post('/api/v1/pools', { name: 'repoint-pool' });
    await t.api.post(`/api/v1/pools/${pool.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backend.port });
    const lb = await t.api.post('/api/v1/load-balancers', { name: 'repoint-lb' });
    const port = await freePort();
    const l = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
      name: 'repoint', protocol: 'HTTPS', bind_address: '127.0.0.1', port, default_pool_id: pool.body.pool_id, tls: { certificate_ids: [first] },
    });
    assert.equal(l.status, 201, JSON.stringify(l.body));
    const held = await handshake(port, { servername: 'repoint.example.com', ca: ca.cert, ALPNProtocols: ['http/1.1'] });
    const oldPrint = held.fingerprint;
    const ask = (): Promise<string> =>
      new Promise((resolve) => {
        let text = '';
        const onData = (d: Buffer) => {
          text += d.toString();
          if (text.endsWith('app\r\n0\r\n\r\n')) {
            held.socket.off('data', onData);
            resolve(text);
          }
        };
        held.socket.on('data', onData);
        held.socket.write('GET / HTTP/1.1\r\nHost: repoint.example.com\r\n\r\n');
      });
    assert.match(await ask(), /^HTTP\/1\.1 200/);

    const started = performance.now();
    const r = await t.api.patch(`/api/v1/load-balancers/${lb.body.lb_id}/listeners/${l.body.listener_id}`, { tls: { certificate_ids: [second] } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const fresh = await handshake(port, { servername: 'www.repoint.example.com', ca: ca.cert });
    assert.ok(performance.now() - started < 1000, 'within a second of the change');
    assert.notEqual(fresh.fingerprint, oldPrint);
    fresh.socket.destroy();
    // The held connection is the same socket, on the old certificate, and still answers.
    assert.match(await ask(), /^HTTP\/1\.1 200/);
    assert.equal(held.socket.getPeerCertificate().fingerprint256, oldPrint);
    held.socket.destroy();
    assertError(await t.api.delete(`/api/v1/certificates/${second}`), 409, 'CERTIFICATE_IN_USE');
    assert.equal((await t.api.delete(`/api/v1/certificates/${first}`)).status, 200, 'no longer served: deletable');
  });

  it('a listener whose private keys cannot be opened (another secret key) reports ERROR and why', async () => {
    const dir = tempDir();
    try {
      const one = await startTestFulcrum({ dataDir: dir.path, secretKey: 'the-first-secret-key' });
      const id = await uploadCert(one.api, 'sealed', certs.leaf(['localhost'], { ca }), ca.cert);
      const lb = await one.api.post('/api/v1/load-balancers', { name: 'sealed-lb' });
      const port = await freePort();
      const l = await one.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, { name: 'sealed', protocol: 'HTTPS', bind_address: '127.0.0.1', port, tls: { certificate_ids: [id] } });
      assert.equal(l.body.status, 'ACTIVE');
      await one.fulcrum.stop();
      const two = await startTestFulcrum({ dataDir: dir.path, secretKey: 'a-different-secret-key' });
      try {
        const shown = (await two.api.get(`/api/v1/load-balancers/${lb.body.lb_id}/listeners/${l.body.listener_id}`)).body;
        assert.equal(shown.status, 'ERROR');
        assert.match(shown.status_message, /private key of certificate 'cert-sealed' cannot be opened with this instance's secret key/);
        const ready = await fetch(`http://127.0.0.1:${two.fulcrum.apiAddress.port}/ready`);
        assert.equal(ready.status, 503, 'not ready while a listener cannot serve');
      } finally {
        await two.fulcrum.stop();
      }
    } finally {
      dir.remove();
    }
  });
});
