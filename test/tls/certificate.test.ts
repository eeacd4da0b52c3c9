/** inspectCertificate with an injected clock: what the API cannot show without waiting a month. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CertFactory } from '../helpers/certs.ts';
import { CertificateProblem, inspectCertificate } from '../../src/tls/certificate.ts';
import { SecretBox } from '../../src/tls/secret-box.ts';

const certs = new CertFactory();
after(() => certs.remove());

describe('inspectCertificate', () => {
  it('refuses an expired certificate, naming when it expired', () => {
    const c = certs.leaf(['old.example.com'], { days: 1 });
    assert.ok(inspectCertificate(c.cert, c.key, undefined, Date.now()));
    assert.throws(() => inspectCertificate(c.cert, c.key, undefined, Date.now() + 3 * 86_400_000), (err: Error) => err instanceof CertificateProblem && /expired on \d{4}-/.test(err.message));
  });

  it('accepts intermediates after the leaf in certificate_pem', () => {
    const ca = certs.ca();
    const leaf = certs.leaf(['app.example.com'], { ca });
    const facts = inspectCertificate(leaf.cert + ca.cert, leaf.key, undefined, Date.now());
    assert.deepEqual(facts.domains, ['app.example.com']);
  });
});

describe('SecretBox', () => {
  it('seals and opens; another key cannot open; tampering is detected', () => {
    const box = new SecretBox('a-key-of-sixteen-chars');
    const sealed = box.seal('-----BEGIN PRIVATE KEY-----\nabc\n');
    assert.ok(sealed.startsWith('v1:') && !sealed.includes('abc'));
    assert.equal(box.open(sealed), '-----BEGIN PRIVATE KEY-----\nabc\n');
    assert.throws(() => new SecretBox('another-key-entirely').open(sealed));
    const tampered = sealed.slice(0, -4) + (sealed.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.throws(() => box.open(tampered));
  });
});
