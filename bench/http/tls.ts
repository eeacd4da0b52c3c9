// TLS for the tls-* scenarios: a certificate made fresh for every run, and a probe that watches the
// handshakes wrk makes with a peer, to show whether they are full or resumed ones.
//
// The certificate is generated with the `openssl` command into the run's state dir (bench/.tmp,
// gitignored, wiped at the start of every run), so no key is ever part of the repository.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { HOST } from './net.ts';
import { runGroup, log } from './procs.ts';
import type { Tools } from './tools.ts';
import type { HaproxyTls } from './configs.ts';

/** The name the leaf certificate is issued for; wrk connects to 127.0.0.1, which is an IP SAN of it. */
export const TLS_NAME = 'bench.fulcrum.test';

export interface TlsFiles extends HaproxyTls {
  /** The bench CA's certificate (PEM): clients verify both peers against it. */
  caPem: string;
  /** The leaf certificate, its private key (PKCS#8) and the chain sent after it (the CA). */
  certPem: string;
  keyPem: string;
  chainPem: string;
}

/**
 * A bench CA and an ECDSA P-256 leaf for TLS_NAME and 127.0.0.1 signed by it, made with `openssl`.
 * Both peers serve this leaf with the CA as its chain, so they send the same bytes in a handshake.
 */
export function makeCertificates(tools: Tools, stateDir: string): TlsFiles {
  const dir = join(stateDir, 'tls');
  const f = (name: string) => join(dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 }); // keys inside
  const ssl = (...args: string[]) => execFileSync(tools.openssl, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p256 = ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  ssl(...p256, '-out', f('ca.key'));
  ssl('req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', '30', '-subj', '/CN=Fulcrum Bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('ca.pem'));
  ssl(...p256, '-out', f('leaf.key'));
  ssl('req', '-new', '-key', f('leaf.key'), '-subj', `/CN=${TLS_NAME}`, '-out', f('leaf.csr'));
  writeFileSync(
    f('leaf.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=DNS:${TLS_NAME},IP:${HOST}`,
      '',
    ].join('\n'),
  );
  // A random serial instead of -CAcreateserial, which would leave a serial file to keep track of.
  ssl('x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '30', '-sha256', '-extfile', f('leaf.ext'), '-out', f('leaf.pem'));
  const caPem = readFileSync(f('ca.pem'), 'utf8');
  const certPem = readFileSync(f('leaf.pem'), 'utf8');
  const keyPem = readFileSync(f('leaf.key'), 'utf8');
  const combinedFile = f('haproxy.pem');
  writeFileSync(combinedFile, `${certPem.trim()}\n${caPem.trim()}\n${keyPem.trim()}\n`, { mode: 0o600 });
  for (const k of ['ca.key', 'leaf.key']) chmodSync(f(k), 0o600);
  // HAProxy's ticket keys (see haproxyConf): 80 bytes each (AES-256), at least 3 of them (TLS_TICKETS_NO).
  const ticketKeysFile = f('haproxy-ticket.keys');
  const ticketKeys = [0, 1, 2].map(() => randomBytes(80).toString('base64'));
  writeFileSync(ticketKeysFile, `${ticketKeys.join('\n')}\n`, { mode: 0o600 });
  log(`tls: ECDSA P-256 certificate for ${TLS_NAME} and IP ${HOST}, signed by a bench CA, in ${dir}`);
  return { caPem, certPem, keyPem, chainPem: caPem, combinedFile, ticketKeysFile };
}

// ---- resumption probe ------------------------------------------------------------------------

/** What a probe saw: one entry per TLS connection that got as far as the ServerHello. */
export interface HandshakeCount {
  /** Connections whose ServerHello the probe read. */
  handshakes: number;
  /** ClientHellos that offered to resume (a TLS 1.3 pre_shared_key, or a non-empty TLS 1.2 session ticket). */
  offered: number;
  /** ServerHellos that accepted (TLS 1.3 pre_shared_key; TLS 1.2 the client's session id echoed). */
  resumed: number;
  /** Negotiated parameters, counted: "TLSv1.3 TLS_AES_256_GCM_SHA384 x25519" → n. */
  params: Record<string, number>;
}

const SUITES: Record<number, string> = {
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0xc02b: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  0xc02c: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  0xcca9: 'ECDHE-ECDSA-CHACHA20-POLY1305',
};
const GROUPS: Record<number, string> = { 0x0017: 'P-256', 0x0018: 'P-384', 0x001d: 'x25519', 0x001e: 'x448', 0x11ec: 'X25519MLKEM768' };

interface Hello {
  sessionId: Buffer;
  /** extension type → its data */
  ext: Map<number, Buffer>;
  version: number;
  suite: number;
}

/**
 * Parses a ClientHello (type 1) or ServerHello (type 2) from the first TLS record of a stream.
 * Returns undefined until the whole record is there, null when it is not such a hello.
 */
function parseHello(buf: Buffer, type: 1 | 2): Hello | undefined | null {
  if (buf.length < 5) return undefined;
  if (buf[0] !== 22) return null; // not a handshake record
  const end = 5 + buf.readUInt16BE(3);
  if (buf.length < end) return undefined;
  if (buf[5] !== type) return null;
  let p = 9; // record header (5) + handshake header (4)
  const version = buf.readUInt16BE(p);
  p += 2 + 32; // legacy_version, random
  const sessionId = buf.subarray(p + 1, p + 1 + buf[p]!);
  p += 1 + buf[p]!;
  let suite = 0;
  if (type === 1) {
    p += 2 + buf.readUInt16BE(p); // cipher_suites
    p += 1 + buf[p]!; // compression_methods
  } else {
    suite = buf.readUInt16BE(p);
    p += 3; // cipher_suite, compression_method
  }
  const ext = new Map<number, Buffer>();
  if (p + 2 <= end) {
    const extEnd = Math.min(end, p + 2 + buf.readUInt16BE(p));
    for (p += 2; p + 4 <= extEnd; ) {
      const len = buf.readUInt16BE(p + 2);
      ext.set(buf.readUInt16BE(p), buf.subarray(p + 4, p + 4 + len));
      p += 4 + len;
    }
  }
  return { sessionId, ext, version, suite };
}

const EXT_SESSION_TICKET = 35;
const EXT_PRE_SHARED_KEY = 41;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_KEY_SHARE = 51;

/** A TCP relay in front of `targetPort` that reads (never changes) the two hellos of each connection. */
function startRelay(targetPort: number, count: HandshakeCount): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client: Socket) => {
    const upstream = createConnection({ host: HOST, port: targetPort });
    sockets.add(client).add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    client.on('error', kill);
    upstream.on('error', kill);
    client.pipe(upstream);
    upstream.pipe(client);
    let clientHello: Hello | undefined;
    let cbuf = Buffer.alloc(0);
    const onClient = (chunk: Buffer) => {
      cbuf = Buffer.concat([cbuf, chunk]);
      const h = parseHello(cbuf, 1);
      if (h === undefined) return;
      client.off('data', onClient);
      if (!h) return;
      clientHello = h;
      const ticket = h.ext.get(EXT_SESSION_TICKET);
      if (h.ext.has(EXT_PRE_SHARED_KEY) || (ticket && ticket.length > 0)) count.offered++;
    };
    let sbuf = Buffer.alloc(0);
    const onServer = (chunk: Buffer) => {
      sbuf = Buffer.concat([sbuf, chunk]);
      const h = parseHello(sbuf, 2);
      if (h === undefined) return;
      upstream.off('data', onServer);
      if (!h) return;
      count.handshakes++;
      const sv = h.ext.get(EXT_SUPPORTED_VERSIONS);
      const tls13 = sv !== undefined && sv.length >= 2 && sv.readUInt16BE(0) === 0x0304;
      // TLS 1.3 echoes the client's (random) legacy session id on every handshake: only the PSK says "resumed".
      // TLS 1.2 echoes a session id only when it resumes that session (by id or by ticket, RFC 5077).
      const resumed = tls13
        ? h.ext.has(EXT_PRE_SHARED_KEY)
        : h.sessionId.length > 0 && clientHello !== undefined && h.sessionId.equals(clientHello.sessionId);
      if (resumed) count.resumed++;
      const ks = h.ext.get(EXT_KEY_SHARE);
      const group = ks && ks.length >= 2 ? (GROUPS[ks.readUInt16BE(0)] ?? `group 0x${ks.readUInt16BE(0).toString(16)}`) : '';
      const version = tls13 ? 'TLSv1.3' : h.version === 0x0303 ? 'TLSv1.2' : `0x${h.version.toString(16)}`;
      const key = [version, SUITES[h.suite] ?? `0x${h.suite.toString(16)}`, group].filter(Boolean).join(' ');
      count.params[key] = (count.params[key] ?? 0) + 1;
    };
    client.on('data', onClient);
    upstream.on('data', onServer);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: HOST, port: 0 }, () => {
      const a = server.address();
      resolve({ server, port: typeof a === 'object' && a ? a.port : 0, sockets });
    });
  });
}

/**
 * Runs wrk as tls-hs does (`Connection: close`, a new connection per request), but with 8
 * connections for one second and through the relay, and counts the handshakes the peer resumed.
 * The relay costs throughput, which does not matter here: only the handshakes' kind is read.
 */
export async function probeResumption(tools: Tools, targetPort: number, rawFile: string): Promise<HandshakeCount> {
  const count: HandshakeCount = { handshakes: 0, offered: 0, resumed: 0, params: {} };
  const { server, port, sockets } = await startRelay(targetPort, count);
  try {
    await runGroup('wrk-tls-probe', tools.wrk, ['-t1', '-c8', '-d1s', '--timeout', '5s', '-H', 'Connection: close', `https://${HOST}:${port}/`], {
      logFile: rawFile,
    });
  } finally {
    server.close();
    for (const s of sockets) s.destroy(); // wrk has exited: nothing is in flight any more
  }
  return count;
}
