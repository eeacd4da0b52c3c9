/**
 * Real certificates for tests, made with the openssl command (a CA, leaves it signs, self-signed
 * ones) in a temp dir. A machine without openssl fails the test that needs it, saying so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  cert: string;
  key: string;
}

export class CertFactory {
  readonly #dir = mkdtempSync(join(tmpdir(), 'fulcrum-certs-'));
  #n = 0;

  #openssl(args: string[]): void {
    try {
      execFileSync('openssl', args, { cwd: this.#dir, stdio: 'pipe' });
    } catch (err) {
      assert.fail(`the openssl command must be installed to make this test's certificates: ${(err as Error).message}`);
    }
  }

  #read(name: string): string {
    return readFileSync(join(this.#dir, name), 'utf8');
  }

  /** A private key: EC P-256 by default, or RSA with `bits`. */
  #key(name: string, rsaBits?: number): void {
    if (rsaBits) this.#openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${rsaBits}`, '-out', name]);
    else this.#openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name]);
  }

  /** A self-signed CA. */
  ca(cn = 'Fulcrum Test CA'): Pem {
    const n = ++this.#n;
    this.#key(`ca${n}.key`);
    this.#openssl(['req', '-x509', '-new', '-key', `ca${n}.key`, '-days', '30', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `ca${n}.pem`]);
    return { cert: this.#read(`ca${n}.pem`), key: this.#read(`ca${n}.key`) };
  }

  /** A leaf for `names` (the first is the CN), signed by `ca`, or self-signed without one. */
  leaf(names: string[], options: { ca?: Pem; rsaBits?: number; days?: number } = {}): Pem {
    const n = ++this.#n;
    this.#key(`leaf${n}.key`, options.rsaBits);
    const san = `subjectAltName=${names.map((d) => `DNS:${d}`).join(',')}`;
    if (!options.ca) {
      this.#openssl(['req', '-x509', '-new', '-key', `leaf${n}.key`, '-days', String(options.days ?? 30), '-subj', `/CN=${names[0]}`, '-addext', san, '-out', `leaf${n}.pem`]);
    } else {
      writeFileSync(join(this.#dir, `ca-for-${n}.pem`), options.ca.cert);
      writeFileSync(join(this.#dir, `ca-for-${n}.key`), options.ca.key);
      writeFileSync(join(this.#dir, `ext${n}.cnf`), `${san}\n`);
      this.#openssl(['req', '-new', '-key', `leaf${n}.key`, '-subj', `/CN=${names[0]}`, '-out', `leaf${n}.csr`]);
      this.#openssl(['x509', '-req', '-in', `leaf${n}.csr`, '-CA', `ca-for-${n}.pem`, '-CAkey', `ca-for-${n}.key`, '-CAcreateserial', '-days', String(options.days ?? 30), '-extfile', `ext${n}.cnf`, '-out', `leaf${n}.pem`]);
    }
    return { cert: this.#read(`leaf${n}.pem`), key: this.#read(`leaf${n}.key`) };
  }

  remove(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
