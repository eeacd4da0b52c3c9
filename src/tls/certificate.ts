/**
 * What a certificate is, read from its PEM: names, type, key type, issuer, validity, fingerprint —
 * and whether it can be served at all: a key that matches, a chain that verifies, not expired.
 * Pure apart from node:crypto; the clock comes in.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';

export interface CertificateFacts {
  domains: string[];
  type: 'SINGLE' | 'WILDCARD' | 'MULTI_DOMAIN';
  key_type: string;
  issuer: string;
  subject: string;
  valid_from: number;
  valid_until: number;
  fingerprint_sha256: string;
}

/** A certificate that cannot be served, and why (422 INVALID_CERTIFICATE). */
export class CertificateProblem extends Error {}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new CertificateProblem(`${what} is not a valid PEM certificate (${(err as Error).message})`);
  }
}

/** The certificates of a PEM bundle (a CA bundle); throws CertificateProblem naming `what` when it holds none or one does not parse. */
export function readPemBundle(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new CertificateProblem(`${what} holds no PEM certificate`);
  return blocks.map((b, i) => parseCert(b, `${what} certificate ${i + 1}`));
}

function field(dn: string, name: string): string | undefined {
  return dn
    .split('\n')
    .find((l) => l.startsWith(`${name}=`))
    ?.slice(name.length + 1);
}

function keyType(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return `RSA_${d.modulusLength ?? 0}`;
    case 'ec': {
      const curves: Record<string, string> = { prime256v1: 'ECDSA_P256', secp384r1: 'ECDSA_P384', secp521r1: 'ECDSA_P521' };
      return curves[d.namedCurve ?? ''] ?? `ECDSA_${(d.namedCurve ?? 'UNKNOWN').toUpperCase()}`;
    }
    case 'ed25519':
      return 'ED25519';
    default:
      return (key.asymmetricKeyType ?? 'UNKNOWN').toUpperCase();
  }
}

/** Reads and checks a certificate, its private key and its chain; throws CertificateProblem with the reason. */
export function inspectCertificate(certificatePem: string, privateKeyPem: string, chainPem: string | undefined, now: number): CertificateFacts {
  const blocks = certificatePem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new CertificateProblem('certificate_pem holds no PEM certificate');
  const cert = parseCert(blocks[0]!, 'certificate_pem');
  // Intermediates may come in chain_pem, or after the leaf in certificate_pem.
  const chainBlocks = [...blocks.slice(1), ...((chainPem ?? '').match(PEM_BLOCK) ?? [])];
  if (chainPem !== undefined && chainPem.trim() !== '' && (chainPem.match(PEM_BLOCK) ?? []).length === 0) {
    throw new CertificateProblem('chain_pem holds no PEM certificate');
  }
  const chain = chainBlocks.map((b, i) => parseCert(b, `chain certificate ${i + 1}`));

  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new CertificateProblem(`private_key_pem is not a valid PEM private key (${(err as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) throw new CertificateProblem('the private key does not match the certificate');

  let child = cert;
  for (const [i, parent] of chain.entries()) {
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new CertificateProblem(`the chain does not verify: chain certificate ${i + 1} (${parent.subject.replace(/\n/g, ', ')}) did not issue ${i === 0 ? 'the certificate' : `chain certificate ${i}`}`);
    }
    child = parent;
  }

  const validFrom = Date.parse(cert.validFrom);
  const validUntil = Date.parse(cert.validTo);
  if (validUntil <= now) throw new CertificateProblem(`the certificate expired on ${new Date(validUntil).toISOString()}`);

  const cn = field(cert.subject, 'CN');
  const sans = (cert.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
  const domains = [...new Set([...(cn ? [cn.toLowerCase()] : []), ...sans])];
  return {
    domains,
    type: domains.some((d) => d.startsWith('*.')) ? 'WILDCARD' : domains.length > 1 ? 'MULTI_DOMAIN' : 'SINGLE',
    key_type: keyType(key),
    issuer: field(cert.issuer, 'CN') ?? field(cert.issuer, 'O') ?? cert.issuer.replace(/\n/g, ', '),
    subject: cert.subject.replace(/\n/g, ', '),
    valid_from: validFrom,
    valid_until: validUntil,
    fingerprint_sha256: cert.fingerprint256,
  };
}
