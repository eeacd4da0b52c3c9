/** inspectCertificate with an injected clock: what the API cannot show without waiting a month. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CertFactory } from '../helpers/certs.ts';
import { CertificateProblem, inspectCertificate } from '../../src/tls/certificate.ts';
import { SecretBox } from '../../src/tls/secret-box.ts';
import { lostNames, servesName } from '../../src/control/certificates.ts';

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

describe('servesName / lostNames (what a rotation must keep serving)', () => {
  const cases: [string[], string, boolean][] = [
    [['api.example.com'], 'api.example.com', true],
    [['api.example.com'], 'API.EXAMPLE.COM', true],
    [['*.example.com'], 'api.example.com', true], // a wildcard serves one label below it
    [['*.example.com'], 'a.b.example.com', false], // …and only one (RFC 6125 §6.4.3)
    [['*.example.com'], 'example.com', false], // not the apex
    [['*.example.com'], '*.example.com', true],
    [['api.example.com'], '*.example.com', false], // a wildcard is served only by the same wildcard
    [['*.api.example.com'], '*.example.com', false],
  ];
  for (const [names, name, served] of cases) {
    it(`[${names.join(', ')}] ${served ? 'serves' : 'does not serve'} ${name}`, () => assert.equal(servesName(names, name), served));
  }
  it('lostNames lists, in order, the current names the next certificate would not serve', () => {
    assert.deepEqual(lostNames(['a.example.com', '*.example.com', 'b.example.com'], ['*.example.com']), []);
    assert.deepEqual(lostNames(['example.com', '*.example.com', 'x.other.com'], ['x.example.com', 'x.other.com']), ['example.com', '*.example.com']);
  });
});
