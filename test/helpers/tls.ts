/**
 * TLS helpers for data plane tests: certificates uploaded through the API, and small clients for
 * HTTP/2 and HTTPS that report what the server presented and answered.
 */
import assert from 'node:assert/strict';
import { type ClientHttp2Session, connect as connectH2, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as connectTls, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { ApiClient } from './fulcrum.ts';
import type { Pem } from './certs.ts';

/** Uploads a certificate (with its chain) and returns its id. */
export async function uploadCert(api: ApiClient, name: string, pem: Pem, chain?: string): Promise<string> {
  const res = await api.post('/api/v1/certificates', { name, certificate_pem: pem.cert, private_key_pem: pem.key, ...(chain ? { chain_pem: chain } : {}) });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.cert_id as string;
}

export interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders;
}

/** One request on an HTTP/2 session; the whole answer. */
export function h2Request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      head = h;
      status = Number(h[':status']);
    });
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status, headers: head, body: Buffer.concat(chunks).toString('utf8'), trailers }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

/** An HTTP/2 session to a listener over TLS, verifying against `ca` with `servername`. */
export function h2Connect(port: number, ca: string, servername = 'localhost'): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connectH2(`https://127.0.0.1:${port}`, { ca, servername });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/** A TLS handshake alone: the negotiated protocol, the certificate shown, or the error. */
export function handshake(port: number, options: ConnectionOptions): Promise<{ socket: TLSSocket; alpn: string | false; cn: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const socket = connectTls({ host: '127.0.0.1', port, ...options }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ socket, alpn: socket.alpnProtocol ?? false, cn: String(cert.subject?.CN ?? ''), fingerprint: cert.fingerprint256 });
    });
    socket.once('error', reject);
  });
}

/** One HTTPS/1.1 request with its own connection; status, headers and body. */
export function httpsGet(
  port: number,
  options: { path?: string; servername?: string; ca: string; headers?: Record<string, string>; cert?: string; key?: string },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const servername = options.servername ?? 'localhost';
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: options.path ?? '/',
        servername,
        ca: options.ca,
        agent: false,
        headers: { host: servername, ...options.headers },
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
