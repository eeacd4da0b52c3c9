/**
 * The certificates API (seed 000 §5) with real certificates: parsed facts, refusals with reasons,
 * the private key never returned and stored sealed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assertError } from '../helpers/assertions.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

let t: TestFulcrum;
let certs: CertFactory;
let ca: Pem;
let leaf: Pem;
before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('Fulcrum Test CA');
  leaf = certs.leaf(['api.example.com', '*.api.example.com'], { ca });
});
after(async () => {
  await t.close();
  certs.remove();
});

describe('certificates API', () => {
  it('POST parses the certificate: domains, type, key type, issuer, validity, fingerprint; the key is never returned', async () => {
    const res = await t.api.post('/api/v1/certificates', {
      name: 'api-example-com-2026',
      domains: ['api.example.com', '*.api.example.com'],
      certificate_pem: leaf.cert,
      private_key_pem: leaf.key,
      chain_pem: ca.cert,
      auto_renew: true,
      notify_before_expiry_days: [30, 14, 7, 1],
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const c = res.body;
    assert.equal(c.cert_id, 'cert-api-example-com-2026');
    assert.deepEqual(c.domains, ['api.example.com', '*.api.example.com']);
    assert.equal(c.type, 'WILDCARD');
    assert.equal(c.key_type, 'ECDSA_P256');
    assert.equal(c.issuer, 'Fulcrum Test CA');
    assert.match(c.valid_from, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(Date.parse(c.valid_until) > Date.now());
    assert.match(c.fingerprint_sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(c.status, 'EXPIRING_SOON', 'valid 30 days: within the 30-day notice');
    assert.ok(c.days_until_expiry >= 29 && c.days_until_expiry <= 30);
    assert.deepEqual(c.in_use_by_listeners, []);
    const text = JSON.stringify(c) + JSON.stringify((await t.api.get(`/api/v1/certificates/${c.cert_id}`)).body) + JSON.stringify((await t.api.get('/api/v1/certificates')).body);
    assert.ok(!text.includes('PRIVATE KEY') && !text.includes('private_key'), 'no API answer carries the key');
  });

  it('stores the private key sealed (not in the database file) with a 0600 key file in the data dir', async () => {
    const keyBody = leaf.key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    for (const f of readdirSync(t.dataDir)) {
      const content = readFileSync(join(t.dataDir, f));
      assert.ok(!content.includes(keyBody.slice(0, 40)), `${f} does not hold the key in clear`);
    }
    assert.equal(statSync(join(t.dataDir, 'secret.key')).mode & 0o777, 0o600);
  });

  it('types and key types: a single name, several names, RSA', async () => {
    const single = certs.leaf(['www.example.com']);
    const multi = certs.leaf(['a.example.com', 'b.example.com'], { rsaBits: 2048 });
    const r1 = await t.api.post('/api/v1/certificates', { name: 'single', certificate_pem: single.cert, private_key_pem: single.key });
    assert.equal(r1.status, 201, JSON.stringify(r1.body));
    assert.equal(r1.body.type, 'SINGLE');
    assert.equal(r1.body.issuer, 'www.example.com', 'self-signed: its own issuer');
    const r2 = await t.api.post('/api/v1/certificates', { name: 'multi', certificate_pem: multi.cert, private_key_pem: multi.key });
    assert.equal(r2.status, 201, JSON.stringify(r2.body));
    assert.equal(r2.body.type, 'MULTI_DOMAIN');
    assert.equal(r2.body.key_type, 'RSA_2048');
  });

  it('refuses with 422 INVALID_CERTIFICATE and the reason: a key that does not match, a chain that does not verify, malformed PEM, names not covered', async () => {
    const other = certs.leaf(['other.example.com']);
    const wrongKey = await t.api.post('/api/v1/certificates', { name: 'bad-key', certificate_pem: leaf.cert, private_key_pem: other.key });
    assertError(wrongKey, 422, 'INVALID_CERTIFICATE');
    assert.match(wrongKey.body.error.message, /private key does not match/);
    assert.ok(!JSON.stringify(wrongKey.body).includes('PRIVATE KEY'), 'the refused key is not echoed');

    const strangerCa = certs.ca('Some Other CA');
    const badChain = await t.api.post('/api/v1/certificates', { name: 'bad-chain', certificate_pem: leaf.cert, private_key_pem: leaf.key, chain_pem: strangerCa.cert });
    assertError(badChain, 422, 'INVALID_CERTIFICATE');
    assert.match(badChain.body.error.message, /chain does not verify/);

    const malformed = await t.api.post('/api/v1/certificates', { name: 'junk', certificate_pem: '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----', private_key_pem: leaf.key });
    assertError(malformed, 422, 'INVALID_CERTIFICATE');
    assert.match(malformed.body.error.message, /not a valid PEM certificate/);
    assertError(await t.api.post('/api/v1/certificates', { name: 'nothing', certificate_pem: 'hello', private_key_pem: leaf.key }), 422, 'INVALID_CERTIFICATE');
    assertError(await t.api.post('/api/v1/certificates', { name: 'badkeypem', certificate_pem: leaf.cert, private_key_pem: 'nope' }), 422, 'INVALID_CERTIFICATE');

    const uncovered = await t.api.post('/api/v1/certificates', { name: 'uncovered', domains: ['shop.example.com'], certificate_pem: leaf.cert, private_key_pem: leaf.key });
    assertError(uncovered, 422, 'INVALID_CERTIFICATE');
    assert.deepEqual(uncovered.body.error.details.missing, ['shop.example.com']);
    assertError(await t.api.post('/api/v1/certificates', { name: 'x' }), 400, 'VALIDATION_ERROR');
  });

  it('GET lists with the summary block and expiring_within_days; DELETE removes; unknown ids are 404', async () => {
    const long = certs.leaf(['long.example.com'], { days: 400 });
    const made = await t.api.post('/api/v1/certificates', { name: 'long-lived', certificate_pem: long.cert, private_key_pem: long.key });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const all = await t.api.get('/api/v1/certificates');
    assert.equal(all.status, 200);
    assert.equal(all.body.summary.total, all.body.certificates.length);
    assert.equal(all.body.summary.active + all.body.summary.expiring_soon + all.body.summary.expired, all.body.summary.total);
    assert.ok(all.body.summary.active >= 1);
    const soon = await t.api.get('/api/v1/certificates?expiring_within_days=60');
    const ids = soon.body.certificates.map((c: { cert_id: string }) => c.cert_id);
    assert.ok(ids.includes('cert-api-example-com-2026'));
    assert.ok(!ids.includes(made.body.cert_id), 'a 400-day certificate is not expiring within 60 days');
    assert.equal(soon.body.summary.total, all.body.summary.total, 'the summary covers every certificate');

    const del = await t.api.delete(`/api/v1/certificates/${made.body.cert_id}`);
    assert.equal(del.status, 200);
    assert.equal(del.body.status, 'DELETED');
    assertError(await t.api.get(`/api/v1/certificates/${made.body.cert_id}`), 404, 'CERTIFICATE_NOT_FOUND');
    assertError(await t.api.delete('/api/v1/certificates/cert-nope'), 404, 'CERTIFICATE_NOT_FOUND');
  });
});
