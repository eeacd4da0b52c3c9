/**
 * The certificates API (seed 000 §5) with real certificates: parsed facts, refusals with reasons,
 * the private key never returned and stored sealed; rotation and its records, PATCH, the pools a
 * certificate serves, and the certificate.expiring event.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertError, ISO_SECONDS } from '../helpers/assertions.ts';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import type { FulcrumEvent } from '../../src/observability/events.ts';

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

/** A self-signed certificate that expired in 2020: `openssl ca` takes explicit dates, `req -days` cannot go back. */
function expiredCertificate(name: string): Pem {
  const dir = mkdtempSync(join(tmpdir(), 'fulcrum-expired-'));
  try {
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'k.pem']);
    run(['req', '-new', '-key', 'k.pem', '-subj', `/CN=${name}`, '-out', 'r.csr']);
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '01\n');
    writeFileSync(join(dir, 'ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n');
    run(['ca', '-batch', '-notext', '-config', 'ca.cnf', '-selfsign', '-keyfile', 'k.pem', '-in', 'r.csr', '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-out', 'c.pem']);
    return { cert: readFileSync(join(dir, 'c.pem'), 'utf8'), key: readFileSync(join(dir, 'k.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The base64 body of a PEM key: what must never appear in an answer, whatever the framing. */
function keyBody(pem: string): string {
  return pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('').slice(0, 40);
}

async function upload(name: string, pem: Pem, extra: Record<string, unknown> = {}) {
  const res = await t.api.post('/api/v1/certificates', { name, certificate_pem: pem.cert, private_key_pem: pem.key, ...extra });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body;
}

describe('certificate rotation', () => {
  const answers: unknown[] = [];
  const keys: string[] = [];
  const remember = <T extends { body: unknown }>(res: T): T => {
    answers.push(res.body);
    return res;
  };

  it('rotates: 202 with the rotation, the material and facts replaced under the same id, version bumped, records listed newest first', async () => {
    const original = certs.leaf(['shop.example.com', '*.shop.example.com'], { ca });
    keys.push(original.key);
    const before = await upload('shop', original, { chain_pem: ca.cert, auto_renew: true });
    assert.equal(before.rotated_at, null);
    assert.equal(before.previous_fingerprint_sha256, null);

    const secondCa = certs.ca('Second Test CA');
    const next = certs.leaf(['shop.example.com', '*.shop.example.com', 'extra.example.com'], { ca: secondCa, rsaBits: 2048, days: 90 });
    keys.push(next.key);
    const res = remember(await t.api.post(`/api/v1/certificates/${before.cert_id}/rotate`, { new_certificate_pem: next.cert, new_private_key_pem: next.key, new_chain_pem: secondCa.cert }));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const r = res.body;
    assert.match(r.rotation_id, /^rotate-[a-z0-9]{5}$/);
    assert.equal(r.status, 'COMPLETED');
    assert.equal(r.old_cert_id, before.cert_id);
    assert.equal(r.cert_id, before.cert_id);
    assert.equal(r.new_cert_fingerprint, new X509Certificate(next.cert).fingerprint256);
    assert.equal(r.old_cert_fingerprint, before.fingerprint_sha256);
    assert.equal(r.rollout_progress_percent, 100);
    assert.equal(r.rollout_strategy, 'IMMEDIATE', 'the default');
    assert.equal(r.rollout_percent_per_minute, null, 'pacing does not apply to IMMEDIATE');
    for (const f of ['started_at', 'completed_at', 'estimated_completion']) assert.match(r[f], ISO_SECONDS, f);
    assert.equal(r.estimated_completion, r.completed_at);
    assert.ok(Date.parse(r.completed_at) >= Date.parse(r.started_at));
    assert.equal(typeof r.message, 'string');

    const after = remember(await t.api.get(`/api/v1/certificates/${before.cert_id}`));
    const c = after.body;
    assert.equal(c.version, before.version + 1);
    assert.equal(after.headers.get('etag'), `"${c.version}"`);
    assert.equal(c.fingerprint_sha256, r.new_cert_fingerprint);
    assert.equal(c.previous_fingerprint_sha256, before.fingerprint_sha256);
    assert.equal(c.rotated_at, r.completed_at);
    assert.deepEqual(c.domains, ['shop.example.com', '*.shop.example.com', 'extra.example.com']);
    assert.equal(c.key_type, 'RSA_2048');
    assert.equal(c.issuer, 'Second Test CA');
    assert.equal(c.certificate_pem, next.cert);
    assert.equal(c.chain_pem, secondCa.cert);
    assert.ok(Date.parse(c.valid_until) > Date.parse(before.valid_until), 'a 90-day certificate replaced a 30-day one');
    assert.equal(c.status, 'ACTIVE');
    assert.equal(c.name, 'shop', 'settings are kept');
    assert.equal(c.auto_renew, true);
    assert.equal(c.created_at, before.created_at);

    const record = remember(await t.api.get(`/api/v1/certificates/${before.cert_id}/rotations/${r.rotation_id}`));
    assert.equal(record.status, 200);
    const { message: _message, ...stored } = r;
    assert.deepEqual(record.body, stored, 'GET answers the record the rotate call answered');

    const third = certs.leaf(['extra.example.com', 'shop.example.com', '*.shop.example.com'], { ca });
    keys.push(third.key);
    const rolling = remember(await t.api.post(`/api/v1/certificates/${before.cert_id}/rotate`, { new_certificate_pem: third.cert, new_private_key_pem: third.key, rollout_strategy: 'ROLLING', rollout_percent_per_minute: 25 }));
    assert.equal(rolling.status, 202, JSON.stringify(rolling.body));
    assert.equal(rolling.body.status, 'COMPLETED', 'one instance: ROLLING completes at once');
    assert.equal(rolling.body.rollout_strategy, 'ROLLING');
    assert.equal(rolling.body.rollout_percent_per_minute, 25);
    assert.equal(rolling.body.old_cert_fingerprint, r.new_cert_fingerprint);
    assert.deepEqual((await t.api.get(`/api/v1/certificates/${before.cert_id}`)).body.domains, ['extra.example.com', 'shop.example.com', '*.shop.example.com'], 'the same names in another order');

    const list = remember(await t.api.get(`/api/v1/certificates/${before.cert_id}/rotations`));
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.rotations.map((x: { rotation_id: string }) => x.rotation_id), [rolling.body.rotation_id, r.rotation_id], 'newest first');
    assert.deepEqual(list.body.pagination, { page: 1, per_page: 50, total: 2, total_pages: 1 });
    const page2 = await t.api.get(`/api/v1/certificates/${before.cert_id}/rotations?per_page=1&page=2`);
    assert.deepEqual(page2.body.rotations.map((x: { rotation_id: string }) => x.rotation_id), [r.rotation_id]);
    assert.deepEqual((await t.api.get(`/api/v1/certificates/${before.cert_id}/rotations?per_page=1&page=3`)).body.rotations, []);

    const other = await upload('other-shop', certs.leaf(['other-shop.example.com']));
    assertError(await t.api.get(`/api/v1/certificates/${other.cert_id}/rotations/${r.rotation_id}`), 404, 'ROTATION_NOT_FOUND');
    const unknown = assertError(await t.api.get(`/api/v1/certificates/${before.cert_id}/rotations/rotate-nope0`), 404, 'ROTATION_NOT_FOUND');
    assert.deepEqual(unknown.details, { cert_id: before.cert_id, rotation_id: 'rotate-nope0' });
    assertError(await t.api.get('/api/v1/certificates/cert-nope/rotations'), 404, 'CERTIFICATE_NOT_FOUND');
    assertError(await t.api.get(`/api/v1/certificates/cert-nope/rotations/${r.rotation_id}`), 404, 'CERTIFICATE_NOT_FOUND');
  });

  it('a wildcard serves the exact names it covers: rotating a.wild.example.com to *.wild.example.com is accepted', async () => {
    const exact = await upload('wild-exact', certs.leaf(['a.wild.example.com']));
    const wild = certs.leaf(['*.wild.example.com']);
    keys.push(wild.key);
    const res = remember(await t.api.post(`/api/v1/certificates/${exact.cert_id}/rotate`, { new_certificate_pem: wild.cert, new_private_key_pem: wild.key }));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const back = certs.leaf(['wild.example.com']);
    const refused = remember(await t.api.post(`/api/v1/certificates/${exact.cert_id}/rotate`, { new_certificate_pem: back.cert, new_private_key_pem: back.key }));
    assertError(refused, 422, 'INVALID_CERTIFICATE');
    assert.deepEqual(refused.body.error.details.lost_domains, ['*.wild.example.com'], 'a wildcard is served only by the same wildcard');
  });

  it('refuses new material like an upload (422 with the reason), names lost (422), unknown certificates (404) and bad bodies (400), changing nothing', async () => {
    const current = certs.leaf(['pay.example.com', 'www.pay.example.com'], { ca });
    keys.push(current.key);
    const c = await upload('pay', current, { chain_pem: ca.cert });
    const path = `/api/v1/certificates/${c.cert_id}/rotate`;
    const good = certs.leaf(['pay.example.com', 'www.pay.example.com'], { ca });
    const stranger = certs.leaf(['pay.example.com', 'www.pay.example.com']);
    keys.push(good.key, stranger.key);

    const mismatched = assertError(remember(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: stranger.key })), 422, 'INVALID_CERTIFICATE');
    assert.equal(mismatched.details.reason, 'the private key does not match the certificate');

    const old = expiredCertificate('pay.example.com');
    keys.push(old.key);
    const expired = assertError(remember(await t.api.post(path, { new_certificate_pem: old.cert, new_private_key_pem: old.key })), 422, 'INVALID_CERTIFICATE');
    assert.match(expired.details.reason, /^the certificate expired on 2020-02-01T00:00:00/);

    const malformed = assertError(remember(await t.api.post(path, { new_certificate_pem: 'not a certificate', new_private_key_pem: good.key })), 422, 'INVALID_CERTIFICATE');
    assert.equal(malformed.details.reason, 'new_certificate_pem holds no PEM certificate', 'the reason names the field of this request');
    const badKey = assertError(remember(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: 'not a key' })), 422, 'INVALID_CERTIFICATE');
    assert.match(badKey.details.reason, /^new_private_key_pem is not a valid PEM private key/);
    const badChain = assertError(remember(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: good.key, new_chain_pem: certs.ca('Unrelated CA').cert })), 422, 'INVALID_CERTIFICATE');
    assert.match(badChain.details.reason, /^the chain does not verify/);

    const narrower = certs.leaf(['pay.example.com'], { ca });
    keys.push(narrower.key);
    const lost = assertError(remember(await t.api.post(path, { new_certificate_pem: narrower.cert, new_private_key_pem: narrower.key })), 422, 'INVALID_CERTIFICATE');
    assert.deepEqual(lost.details.lost_domains, ['www.pay.example.com']);
    assert.equal(lost.details.reason, 'names not covered: www.pay.example.com');
    assert.match(lost.message, /does not cover www\.pay\.example\.com/);
    assert.match(lost.message, /new certificate: upload it and point the listener at it/);

    assertError(remember(await t.api.post('/api/v1/certificates/cert-nope/rotate', { new_certificate_pem: good.cert, new_private_key_pem: good.key })), 404, 'CERTIFICATE_NOT_FOUND');
    assertError(await t.api.post(path, { new_certificate_pem: good.cert }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: good.key, rollout_strategy: 'SLOW' }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: good.key, rollout_percent_per_minute: 0 }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.post(path, { new_certificate_pem: good.cert, new_private_key_pem: good.key, certificate_pem: good.cert }), 400, 'VALIDATION_ERROR');

    const unchanged = (await t.api.get(`/api/v1/certificates/${c.cert_id}`)).body;
    assert.equal(unchanged.version, c.version);
    assert.equal(unchanged.fingerprint_sha256, c.fingerprint_sha256);
    assert.equal((await t.api.get(`/api/v1/certificates/${c.cert_id}/rotations`)).body.pagination.total, 0, 'no record for a refused rotation');
  });

  it('no answer carries a private key', () => {
    const text = JSON.stringify(answers);
    assert.ok(answers.length >= 10);
    assert.ok(!text.includes('PRIVATE KEY') && !text.includes('private_key_sealed'), 'no PEM key and no sealed key');
    for (const k of keys) assert.ok(!text.includes(keyBody(k)), 'no key material');
  });

  it('DELETE removes the certificate with its rotation records', async () => {
    const c = await upload('short-lived', certs.leaf(['gone.example.com']));
    const n = certs.leaf(['gone.example.com']);
    assert.equal((await t.api.post(`/api/v1/certificates/${c.cert_id}/rotate`, { new_certificate_pem: n.cert, new_private_key_pem: n.key })).status, 202);
    assert.equal((await t.fulcrum.store.list('certificate_rotation', { parentId: c.cert_id })).total, 1);
    const del = await t.api.delete(`/api/v1/certificates/${c.cert_id}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.rotations_deleted, 1);
    assert.equal((await t.fulcrum.store.list('certificate_rotation', { parentId: c.cert_id })).total, 0);
    assertError(await t.api.get(`/api/v1/certificates/${c.cert_id}/rotations`), 404, 'CERTIFICATE_NOT_FOUND');
  });
});

describe('certificate PATCH', () => {
  it('changes name, auto_renew and notice days; version and If-Match guard it; contents only through rotate', async () => {
    const c = await upload('patch-me', certs.leaf(['patch.example.com']));
    const path = `/api/v1/certificates/${c.cert_id}`;
    const res = await t.api.patch(path, { name: 'patched', auto_renew: true, notify_before_expiry_days: [20, 5], version: c.version });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.cert_id, c.cert_id, 'the id stays');
    assert.equal(res.body.name, 'patched');
    assert.equal(res.body.auto_renew, true);
    assert.deepEqual(res.body.notify_before_expiry_days, [20, 5]);
    assert.equal(res.body.version, c.version + 1);
    assert.equal(res.headers.get('etag'), `"${c.version + 1}"`);
    assert.equal(res.body.fingerprint_sha256, c.fingerprint_sha256);
    assert.ok(!JSON.stringify(res.body).includes('PRIVATE KEY'));

    const stale = assertError(await t.api.patch(path, { auto_renew: false }, { 'if-match': `"${c.version}"` }), 409, 'VERSION_CONFLICT');
    assert.deepEqual(stale.details, { resource_id: c.cert_id, expected_version: c.version, current_version: c.version + 1 });
    assertError(await t.api.patch(path, { auto_renew: false, version: c.version }), 409, 'VERSION_CONFLICT');
    const ok = await t.api.patch(path, { auto_renew: false }, { 'if-match': `"${c.version + 1}"` });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.auto_renew, false);

    const leaf2 = certs.leaf(['patch.example.com']);
    const contents = assertError(await t.api.patch(path, { certificate_pem: leaf2.cert }), 400, 'VALIDATION_ERROR');
    assert.ok(!JSON.stringify(contents).includes('BEGIN CERTIFICATE'), 'the refused value is not echoed');
    assertError(await t.api.patch(path, { domains: ['x.example.com'] }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.patch(path, {}), 400, 'VALIDATION_ERROR');
    assertError(await t.api.patch(path, { notify_before_expiry_days: [7, 7] }), 400, 'VALIDATION_ERROR');
    assertError(await t.api.patch('/api/v1/certificates/cert-nope', { name: 'x' }), 404, 'CERTIFICATE_NOT_FOUND');
  });
});

describe('in_use_by_pools', () => {
  it('lists the default pools of the listeners that serve the certificate, once each', async () => {
    const pem = certs.leaf(['pools.example.com']);
    const c = await upload('pools-cert', pem);
    const spare = await upload('pools-spare', certs.leaf(['spare.example.com']));
    const p1 = (await t.api.post('/api/v1/pools', { name: 'cert-pool-one' })).body.pool_id;
    const p2 = (await t.api.post('/api/v1/pools', { name: 'cert-pool-two' })).body.pool_id;
    const lb = (await t.api.post('/api/v1/load-balancers', { name: 'cert-pools-lb' })).body.lb_id;
    const listener = async (name: string, pool: string | undefined, ids: string[]) => {
      const res = await t.api.post(`/api/v1/load-balancers/${lb}/listeners`, {
        name,
        protocol: 'HTTPS',
        bind_address: '127.0.0.1',
        port: await freePort(),
        ...(pool ? { default_pool_id: pool } : {}),
        tls: { certificate_ids: ids },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body;
    };
    assert.deepEqual((await t.api.get(`/api/v1/certificates/${c.cert_id}`)).body.in_use_by_pools, []);
    await listener('a', p1, [c.cert_id]);
    const b = await listener('b', p1, [spare.cert_id, c.cert_id]);
    await listener('c', undefined, [c.cert_id]);
    await listener('d', p2, [spare.cert_id]);
    const shown = (await t.api.get(`/api/v1/certificates/${c.cert_id}`)).body;
    assert.deepEqual(shown.in_use_by_pools, [p1], 'p1 once; a listener without a default pool adds none; p2 serves another certificate');
    assert.equal(shown.in_use_by_listeners.length, 3);
    await t.api.patch(`/api/v1/load-balancers/${lb}/listeners/${b.listener_id}`, { default_pool_id: p2 });
    assert.deepEqual((await t.api.get(`/api/v1/certificates/${c.cert_id}`)).body.in_use_by_pools, [p1, p2]);
    const listed = (await t.api.get('/api/v1/certificates?per_page=500')).body.certificates.find((x: { cert_id: string }) => x.cert_id === spare.cert_id);
    assert.deepEqual(listed.in_use_by_pools, [p2], 'the list shows them too: listeners b and d, both on p2 now');
  });
});

describe('certificate.expiring events', () => {
  it('uploading a certificate with 5 days left puts one certificate.expiring event on fulcrum.events, for the 7-day threshold', async () => {
    const events: FulcrumEvent<'certificate.expiring'>[] = [];
    let got!: (e: FulcrumEvent<'certificate.expiring'>) => void;
    const arrived = new Promise<FulcrumEvent<'certificate.expiring'>>((resolve) => (got = resolve));
    const off = t.fulcrum.events.on('certificate.expiring', (e) => {
      if (e.data.name !== 'five-days') return;
      events.push(e);
      got(e);
    });
    try {
      const pem = certs.leaf(['soon.example.com'], { days: 5 });
      const c = await upload('five-days', pem);
      const e = await arrived;
      assert.equal(e.type, 'certificate.expiring');
      assert.match(e.at, ISO_SECONDS);
      assert.deepEqual(e.data, {
        cert_id: c.cert_id,
        name: 'five-days',
        domains: ['soon.example.com'],
        valid_until: c.valid_until,
        days_until_expiry: 4,
        threshold_days: 7,
        fingerprint_sha256: c.fingerprint_sha256,
      });
      assert.equal(events.length, 1, 'one event, not one per crossed threshold (30, 14 and 7 are all crossed)');
    } finally {
      off();
    }
  });
});
