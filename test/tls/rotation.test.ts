/**
 * Certificate rotation on a live HTTPS listener (issue 5): "Rotating a certificate serves new
 * handshakes within 1 s while existing connections continue untouched". A kept-alive connection
 * and a streaming response are opened before the rotation and used after it; new connections are
 * made right after the rotate call answers, and the time until one shows the new certificate is
 * measured.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import pino from 'pino';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { startFulcrum } from '../../src/app.ts';
import { ApiClient, TEST_TOKEN, tempDir, type TestFulcrum } from '../helpers/fulcrum.ts';
import { type LbSetup, setupLb, startBackend, type TestBackend } from '../helpers/http-lb.ts';

const NAME = 'rotate.example.com';
const HALF = 256 * 1024; // each half of the streamed body

let t: TestFulcrum;
/** Every log line Fulcrum writes, at the most verbose level: searched for key material. */
const logLines: string[] = [];
let certs: CertFactory;
let ca: Pem;
let backend: TestBackend;
/** Resolves the streaming response's second half; set when /stream is requested. */
let releaseStream: (() => void) | undefined;
/** The private keys this test handed to Fulcrum. */
const keys: string[] = [];

before(async () => {
  // startTestFulcrum, but with a logger this test can read.
  const dir = tempDir();
  const log = pino({ level: 'trace' }, { write: (line: string) => void logLines.push(line) });
  const fulcrum = await startFulcrum(
    { apiAddr: { host: '127.0.0.1', port: 0 }, dataDir: dir.path, logLevel: 'trace', adminToken: TEST_TOKEN, shutdownTimeoutMs: 5000, apiBodyLimitBytes: 1_048_576 },
    { log },
  );
  t = {
    fulcrum,
    api: new ApiClient(`http://127.0.0.1:${fulcrum.apiAddress.port}`),
    dataDir: dir.path,
    close: async () => {
      await fulcrum.stop();
      dir.remove();
    },
  };
  certs = new CertFactory();
  ca = certs.ca('Rotation Test CA');
  backend = await startBackend('app', {
    stream: (req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.url !== '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('app');
        return;
      }
      // Half the body now; the rest when the test says so (after the rotation).
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(HALF, 'a'));
      releaseStream = () => res.end(Buffer.alloc(HALF, 'b'));
    },
  });
});
after(async () => {
  await t.close();
  await backend.close();
  certs.remove();
});

interface Answer {
  status: number;
  body: Buffer;
  socket: TLSSocket;
  fingerprint: string;
}

/** GET over TLS (SNI and Host = NAME, chain verified against the test CA). `onHead` sees the answer start. */
function get(port: number, path: string, agent: Agent | false, onHead?: (res: IncomingMessage) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, servername: NAME, ca: ca.cert, headers: { host: NAME }, agent }, (res) => {
      const socket = res.socket as TLSSocket;
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), socket, fingerprint }));
      res.on('error', reject);
      onHead?.(res);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('certificate rotation on a live HTTPS listener', () => {
  let lb: LbSetup;
  let certId: string;
  let oldFingerprint: string;

  before(async () => {
    const leaf = certs.leaf([NAME], { ca });
    keys.push(leaf.key);
    const up = await t.api.post('/api/v1/certificates', { name: 'rotate-me', certificate_pem: leaf.cert, private_key_pem: leaf.key, chain_pem: ca.cert });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    certId = up.body.cert_id;
    oldFingerprint = up.body.fingerprint_sha256;
    lb = await setupLb([backend], { fulcrum: t, listener: { protocol: 'HTTPS', tls: { certificate_ids: [certId] } } });
  });

  it('new handshakes get the new certificate within 1 s; a held connection and a streaming response continue on the old one', async (ctx) => {
    const held = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(lb.port, '/', held);
      assert.equal(first.status, 200);
      assert.equal(first.body.toString(), 'app');
      assert.equal(first.fingerprint, oldFingerprint, 'the listener serves the uploaded certificate');

      // A long response, half delivered before the rotation.
      let firstChunk!: () => void;
      const started = new Promise<void>((resolve) => (firstChunk = resolve));
      const stream = get(lb.port, '/stream', false, (res) => res.once('data', () => firstChunk()));
      await started;

      const next = certs.leaf([NAME], { ca });
      keys.push(next.key);
      const newFingerprint = new X509Certificate(next.cert).fingerprint256;
      const rotated = await t.api.post(`/api/v1/certificates/${certId}/rotate`, { new_certificate_pem: next.cert, new_private_key_pem: next.key, new_chain_pem: ca.cert });
      const answeredAt = performance.now();
      assert.equal(rotated.status, 202, JSON.stringify(rotated.body));
      assert.equal(rotated.body.status, 'COMPLETED');
      assert.equal(rotated.body.new_cert_fingerprint, newFingerprint);
      assert.equal(rotated.body.old_cert_fingerprint, oldFingerprint);

      // New handshakes, one after another, until one shows the new certificate (or 1 s has passed).
      let seen = '';
      let attempts = 0;
      while (performance.now() - answeredAt < 1000) {
        attempts++;
        seen = (await get(lb.port, '/', false)).fingerprint;
        if (seen === newFingerprint) break;
      }
      const elapsed = performance.now() - answeredAt;
      assert.equal(seen, newFingerprint, `a new connection shows the new certificate (after ${attempts} attempts, ${elapsed.toFixed(0)} ms)`);
      assert.ok(elapsed < 1000, `switched within 1 s: ${elapsed.toFixed(0)} ms`);
      ctx.diagnostic(`new handshakes showed the new certificate ${elapsed.toFixed(1)} ms after the rotate call answered (${attempts} handshake(s))`);

      // The connection opened before the rotation: same socket, still the old certificate, still serving.
      const again = await get(lb.port, '/', held);
      assert.equal(again.status, 200);
      assert.equal(again.body.toString(), 'app');
      assert.equal(again.socket, first.socket, 'the same kept-alive connection');
      assert.equal(again.fingerprint, oldFingerprint, 'it keeps the certificate it negotiated');

      // The streaming response finishes intact across the rotation.
      releaseStream!();
      const streamed = await stream;
      assert.equal(streamed.status, 200);
      assert.equal(streamed.fingerprint, oldFingerprint);
      assert.ok(streamed.body.equals(Buffer.concat([Buffer.alloc(HALF, 'a'), Buffer.alloc(HALF, 'b')])), `the body arrives whole (${streamed.body.length} bytes)`);

      // The API shows the new material under the same id, and the record of the rotation.
      const shown = await t.api.get(`/api/v1/certificates/${certId}`);
      assert.equal(shown.body.fingerprint_sha256, newFingerprint);
      assert.equal(shown.body.previous_fingerprint_sha256, oldFingerprint);
      const record = await t.api.get(`/api/v1/certificates/${certId}/rotations/${rotated.body.rotation_id}`);
      assert.equal(record.status, 200);
      assert.equal(record.body.new_cert_fingerprint, newFingerprint);
    } finally {
      held.destroy();
    }
  });

  it('no log line carries a private key (logged at trace level through upload and rotation)', () => {
    assert.ok(logLines.length > 10, `the log was captured (${logLines.length} lines)`);
    const text = logLines.join('');
    assert.ok(!text.includes('PRIVATE KEY'));
    for (const k of keys) assert.ok(!text.includes(k.split('\n').filter((l) => l && !l.startsWith('-----')).join('').slice(0, 40)));
  });
});
