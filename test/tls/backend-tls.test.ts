/**
 * TLS from Fulcrum to backends: a pool's backend_tls (and a backend's own tls) — SNI, verification
 * against a CA bundle or not at all, WebSocket tunnels over TLS — and HTTP/2 to backends, which
 * carries gRPC end to end: a unary call (with its error status in trailers) and a bidirectional
 * stream from a gRPC client through an HTTPS listener, over h2 with TLS and over cleartext h2.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import grpc from '@grpc/grpc-js';
import WebSocket, { WebSocketServer } from 'ws';
import { CertFactory, type Pem } from '../helpers/certs.ts';
import { freePort, startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';
import { uploadCert } from '../helpers/tls.ts';

let t: TestFulcrum;
let certs: CertFactory;
let ca: Pem;
let backendCa: Pem;
let frontCert: string;

before(async () => {
  t = await startTestFulcrum();
  certs = new CertFactory();
  ca = certs.ca('Front CA');
  backendCa = certs.ca('Backend CA');
  frontCert = await uploadCert(t.api, 'front-localhost', certs.leaf(['localhost'], { ca }), ca.cert);
});
after(async () => {
  await t.close();
  certs.remove();
});

/** An HTTPS backend that answers with the SNI name it was asked for; WebSocket echo too. */
async function httpsBackend(pem: Pem): Promise<{ server: HttpsServer; port: number; close(): Promise<void> }> {
  const server = createHttpsServer({ cert: pem.cert, key: pem.key }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`tls backend, sni=${(req.socket as TLSSocket).servername || '-'}, proto=${req.headers['x-forwarded-proto']}`);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`tls-echo:${m.toString()}`)));
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Pool, backend, LB and a listener (HTTP unless `listener` says otherwise) through the API. */
async function front(name: string, backendPort: number, pool: Record<string, unknown>, backend: Record<string, unknown> = {}, listener: Record<string, unknown> = { protocol: 'HTTP' }) {
  const p = await t.api.post('/api/v1/pools', { name: `${name}-pool`, ...pool });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  const b = await t.api.post(`/api/v1/pools/${p.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: backendPort, ...backend });
  assert.equal(b.status, 201, JSON.stringify(b.body));
  const lb = await t.api.post('/api/v1/load-balancers', { name: `${name}-lb` });
  const port = await freePort();
  const l = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, { name, bind_address: '127.0.0.1', port, default_pool_id: p.body.pool_id, ...listener });
  assert.equal(l.status, 201, JSON.stringify(l.body));
  return { port, poolId: p.body.pool_id as string, serverId: b.body.server_id as string };
}

describe('TLS to backends', () => {
  it('speaks TLS with the SNI name asked for, verifying against the pool CA bundle', async () => {
    const backend = await httpsBackend(certs.leaf(['api.internal'], { ca: backendCa }));
    try {
      const { port } = await front('tls-sni', backend.port, { backend_tls: { enabled: true, sni_hostname: 'api.internal', ca_pem: backendCa.cert } });
      const r = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), 'tls backend, sni=api.internal, proto=http');
    } finally {
      await backend.close();
    }
  });

  it('refuses a backend whose certificate does not verify (502, naming why); a backend may turn verification off', async () => {
    const backend = await httpsBackend(certs.leaf(['self.internal']));
    try {
      const { port, poolId, serverId } = await front('tls-verify', backend.port, { backend_tls: { enabled: true, sni_hostname: 'self.internal' }, retries: 0 });
      const r = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(r.status, 502);
      assert.match(await r.text(), /failed \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
      const patched = await t.api.patch(`/api/v1/pools/${poolId}/backends/${serverId}`, { tls: { verify: false } });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const ok = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'tls backend, sni=self.internal, proto=http');
    } finally {
      await backend.close();
    }
  });

  it('tunnels WebSocket to a TLS backend', async () => {
    const backend = await httpsBackend(certs.leaf(['ws.internal'], { ca: backendCa }));
    try {
      const { port } = await front('tls-ws', backend.port, { backend_tls: { enabled: true, sni_hostname: 'ws.internal', ca_pem: backendCa.cert } });
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      const reply = new Promise<string>((resolve) => ws.once('message', (m) => resolve(m.toString())));
      ws.send('hi');
      assert.equal(await reply, 'tls-echo:hi');
      ws.close();
    } finally {
      await backend.close();
    }
  });

  it('refuses a CA bundle that is not PEM, on pools and backends', async () => {
    const pool = await t.api.post('/api/v1/pools', { name: 'bad-ca', backend_tls: { enabled: true, ca_pem: 'nope' } });
    assert.equal(pool.status, 400);
    assert.ok(JSON.stringify(pool.body.error.details).includes('backend_tls.ca_pem'));
    const ok = await t.api.post('/api/v1/pools', { name: 'good-ca' });
    const b = await t.api.post(`/api/v1/pools/${ok.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: 1, tls: { enabled: true, ca_pem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' } });
    assert.equal(b.status, 400);
    assert.ok(JSON.stringify(b.body.error.details).includes('tls.ca_pem'));
  });
});

// ── gRPC through an HTTPS listener, HTTP/2 to the backend ─────────────────────────────────────

const identity = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const EchoService: grpc.ServiceDefinition = {
  unary: { path: '/fulcrum.test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: identity.serialize, requestDeserialize: identity.deserialize, responseSerialize: identity.serialize, responseDeserialize: identity.deserialize },
  chat: { path: '/fulcrum.test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: identity.serialize, requestDeserialize: identity.deserialize, responseSerialize: identity.serialize, responseDeserialize: identity.deserialize },
};
const EchoClient = grpc.makeGenericClientConstructor(EchoService, 'Echo');

async function grpcBackend(name: string, credentials: grpc.ServerCredentials): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  server.addService(EchoService, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const text = call.request.toString();
      if (text === 'missing') return callback({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      const seen = `${call.metadata.get('x-forwarded-proto')[0] ?? '-'}`;
      callback(null, Buffer.from(`${name}:${text}:${seen}`));
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (m: Buffer) => call.write(Buffer.from(`${name}:${m.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  return { port, close: () => server.forceShutdown() };
}

function unary(client: grpc.Client, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    (client as unknown as { unary(m: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void }).unary(Buffer.from(text), (err, r) => (err ? reject(err) : resolve(r!.toString())));
  });
}

/** A bidirectional stream where each message is sent only after the echo of the previous one arrived. */
async function pingPong(client: grpc.Client, messages: string[]): Promise<string[]> {
  const call = (client as unknown as { chat(): grpc.ClientDuplexStream<Buffer, Buffer> }).chat();
  const replies: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    call.on('end', () => resolve());
    call.on('error', reject);
  });
  for (const m of messages) {
    const reply = new Promise<string>((resolve) => call.once('data', (d: Buffer) => resolve(d.toString())));
    call.write(Buffer.from(m));
    replies.push(await reply);
  }
  call.end();
  call.on('data', () => {});
  await ended;
  return replies;
}

describe('gRPC through an HTTPS listener', () => {
  for (const mode of ['h2 over TLS', 'cleartext h2'] as const) {
    it(`carries a unary call, its error status and a bidirectional stream (${mode} to the backend)`, async () => {
      const backendPem = certs.leaf(['grpc.internal'], { ca: backendCa });
      const tls = mode === 'h2 over TLS';
      const backend = await grpcBackend(
        tls ? 'tls' : 'h2c',
        tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(backendPem.cert), private_key: Buffer.from(backendPem.key) }]) : grpc.ServerCredentials.createInsecure(),
      );
      const backendTls = tls ? { enabled: true, http2: true, sni_hostname: 'grpc.internal', ca_pem: backendCa.cert } : { http2: true };
      const { port } = await front(`grpc-${tls ? 'tls' : 'h2c'}`, backend.port, { backend_tls: backendTls }, {}, { protocol: 'HTTPS', tls: { certificate_ids: [frontCert] } });
      const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca.cert)), { 'grpc.ssl_target_name_override': 'localhost' });
      try {
        assert.equal(await unary(client, 'hello'), `${tls ? 'tls' : 'h2c'}:hello:https`);
        await assert.rejects(unary(client, 'missing'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && err.details === 'no such thing');
        assert.deepEqual(await pingPong(client, ['one', 'two', 'three']), ['one', 'two', 'three'].map((m) => `${tls ? 'tls' : 'h2c'}:${m}`));
      } finally {
        client.close();
        backend.close();
      }
    });
  }
});
