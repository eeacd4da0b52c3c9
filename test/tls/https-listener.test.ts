/**
 * HTTPS listeners (issue 5, first step): TLS terminated with uploaded certificates, SNI choosing
 * the certificate (exact name, then wildcard, then the listener's first), requests forwarded with
 * X-Forwarded-Proto https, and a certificate in use that cannot be deleted.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { assertError } from '../helpers/assertions.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { startBackend, type TestBackend } from '../helpers/http-lb.ts';

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
