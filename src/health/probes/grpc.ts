/**
 * GRPC: the standard health service, `grpc.health.v1.Health/Check`, for `grpc_service` (default
 * "", the server as a whole), over HTTP/2 — cleartext, or TLS with `tls_enabled`. Passes when the
 * call succeeds (`grpc-status` 0) and the answer is SERVING. The two messages are one field each,
 * so the protobuf is written and read by hand:
 *   HealthCheckRequest  { string service = 1; }
 *   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3
 */
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { isIPv6 } from 'node:net';
import type { Probe, ProbeResult } from '../probe.ts';

const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];
const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];
/** A HealthCheckResponse is a few bytes; more is not one. */
const MAX_RESPONSE = 64 * 1024;

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return out;
}

/** The request as one length-prefixed gRPC message (uncompressed). Proto3 omits an empty string. */
export function healthCheckRequest(service: string): Buffer {
  const name = Buffer.from(service);
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** Field 1 (varint) of a HealthCheckResponse; other fields are skipped, absent means 0. */
function servingStatus(message: Buffer): number {
  let at = 0;
  let status = 0;
  const readVarint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = message[at++];
      if (b === undefined) throw new Error('truncated');
      value += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return value;
    }
    throw new Error('bad varint');
  };
  while (at < message.length) {
    const key = readVarint();
    const wireType = key & 7;
    if (wireType === 0) {
      const v = readVarint();
      if (key >>> 3 === 1) status = v;
    } else if (wireType === 2) at += readVarint();
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else throw new Error(`wire type ${wireType}`);
  }
  if (at > message.length) throw new Error('truncated');
  return status;
}

/** Socket errors by code (ECONNRESET); HTTP/2's own by their words ("HTTP/2 Protocol error": not an HTTP/2 server). */
function describe(err: NodeJS.ErrnoException): string {
  return err.code?.startsWith('ERR_HTTP2') ? `HTTP/2 ${err.message}` : (err.code ?? err.message);
}

function judge(headers: IncomingHttpHeaders, trailers: IncomingHttpHeaders, body: Buffer): ProbeResult {
  const status = Number(headers[':status']);
  if (status !== 200) return { ok: false, statusCode: status, error: `status ${status}` };
  // A call that fails at once answers "trailers-only": grpc-status in the headers.
  const code = Number(trailers['grpc-status'] ?? headers['grpc-status']);
  if (Number.isNaN(code)) return { ok: false, statusCode: status, error: 'no grpc-status' };
  if (code !== 0) {
    const raw = trailers['grpc-message'] ?? headers['grpc-message'];
    const message = typeof raw === 'string' ? decodeURIComponent(raw) : '';
    return { ok: false, statusCode: status, error: `grpc-status ${code} ${GRPC_CODES[code] ?? ''}${message ? `: ${message}` : ''}`.trim() };
  }
  if (body.length < 5) return { ok: false, statusCode: status, error: 'no response message' };
  if (body[0] !== 0) return { ok: false, statusCode: status, error: 'compressed response (none was offered)' };
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) return { ok: false, statusCode: status, error: 'truncated response message' };
  let serving: number;
  try {
    serving = servingStatus(body.subarray(5, 5 + length));
  } catch (err) {
    return { ok: false, statusCode: status, error: `not a HealthCheckResponse (${(err as Error).message})` };
  }
  return serving === 1 ? { ok: true, statusCode: status } : { ok: false, statusCode: status, error: SERVING_STATUS[serving] ?? `serving status ${serving}` };
}

export const grpcProbe: Probe = (target, check, signal) =>
  new Promise<ProbeResult>((resolve) => {
    if (signal.aborted) return resolve({ ok: false, error: 'timed out' });
    const host = isIPv6(target.host) ? `[${target.host}]` : target.host;
    const secure = check.tls_enabled;
    let connected = false;
    let settled = false;
    const session: ClientHttp2Session = connect(`${secure ? 'https' : 'http'}://${host}:${target.port}`, {
      ...(secure ? { rejectUnauthorized: check.tls_verify, ...(check.host_header ? { servername: check.host_header } : {}) } : {}),
    });
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      session.destroy();
      resolve(result);
    };
    const onAbort = () => finish({ ok: false, error: 'timed out' });
    signal.addEventListener('abort', onAbort, { once: true });
    session.once('connect', () => (connected = true));
    session.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, error: `${connected ? '' : 'connect '}${describe(err)}` }));
    session.once('close', () => finish({ ok: false, error: 'connection closed by server' }));

    const stream = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
      [constants.HTTP2_HEADER_SCHEME]: secure ? 'https' : 'http',
      [constants.HTTP2_HEADER_AUTHORITY]: check.host_header ?? `${host}:${target.port}`,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${check.timeout_seconds}S`,
      'user-agent': 'fulcrum-health-check',
    });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    let size = 0;
    stream.once('response', (h) => (headers = h));
    stream.once('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_RESPONSE) finish({ ok: false, error: 'response too long' });
      else chunks.push(c);
    });
    let streamError: NodeJS.ErrnoException | undefined;
    stream.on('error', (err: NodeJS.ErrnoException) => (streamError ??= err));
    // Judged when the stream is done: after the trailers, which carry grpc-status.
    stream.once('close', () => {
      if (streamError) {
        // A session error also errors its streams; deferred, so the session's own (more telling) error wins.
        const err = streamError;
        setImmediate(() => finish({ ok: false, error: describe(err) }));
      } else if (headers[':status'] === undefined) finish({ ok: false, error: `stream reset (HTTP/2 error ${stream.rstCode})` });
      else finish(judge(headers, trailers, Buffer.concat(chunks)));
    });
    stream.end(healthCheckRequest(check.grpc_service ?? ''));
  });
