/**
 * HTTP and HTTPS: a request whose answer must have an expected status (a list, or a regex as
 * Rackspace's statusRegex) and, when configured, a body matching a regex (Rackspace's bodyRegex).
 * At most 64 KiB of body is read: a health page is small, and a probe must not buffer a stream.
 *
 * Checks of one backend reuse one keep-alive connection (as Envoy's checker does): thousands of
 * backends checked every second would otherwise spend most of their cost on TCP handshakes. A
 * connection the backend closed is simply opened again by the next check.
 */
import type { Readable } from 'node:stream';
import { Client } from 'undici';
import type { HealthCheck } from '../../model/health-check.ts';
import type { Probe, ProbeResult, ProbeTarget } from '../probe.ts';

const MAX_BODY = 64 * 1024;
/** A connection pool unused this long belongs to a backend no longer checked: it is closed. */
const UNUSED_MS = 5 * 60_000;

interface Entry {
  client: Client;
  usedAt: number;
}

const clients = new Map<string, Entry>();
let lastSweep = Date.now();

function clientFor(target: ProbeTarget, check: HealthCheck): Client {
  const secure = check.protocol === 'HTTPS' || check.tls_enabled;
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  const key = `${secure ? 'https' : 'http'}://${host}:${target.port}|${check.tls_verify}|${check.host_header ?? ''}`;
  const now = Date.now();
  if (now - lastSweep > UNUSED_MS) {
    lastSweep = now;
    for (const [k, e] of clients) {
      if (now - e.usedAt > UNUSED_MS) {
        clients.delete(k);
        void e.client.close().catch(() => {});
      }
    }
  }
  let entry = clients.get(key);
  if (!entry) {
    const client = new Client(`${secure ? 'https' : 'http'}://${host}:${target.port}`, {
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { rejectUnauthorized: check.tls_verify, ...(check.host_header ? { servername: check.host_header } : {}) },
    });
    entry = { client, usedAt: now };
    clients.set(key, entry);
  }
  entry.usedAt = now;
  return entry.client;
}

/**
 * Reads a response body to its end (so the connection is reused), keeping it only when asked,
 * and cuts it past MAX_BODY. Plain events: an async iterator per check, or undici's dump()
 * (which destroys the stream and builds an error with a stack trace), cost more than the check.
 */
function readBody(body: Readable, keep: boolean): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (keep) chunks.push(chunk);
      if (size >= MAX_BODY) {
        body.destroy();
        resolve(chunks);
      }
    });
    body.once('end', () => resolve(chunks));
    body.once('error', (err) => (size >= MAX_BODY ? resolve(chunks) : reject(err)));
  });
}

/** The check's headers over Fulcrum's User-Agent, one value per name whatever its spelling. */
function requestHeaders(check: HealthCheck): Record<string, string> {
  const out: Record<string, string> = { 'user-agent': 'fulcrum-health-check' };
  for (const [name, value] of Object.entries(check.headers)) out[name.toLowerCase()] = value;
  if (check.host_header) out.host = check.host_header;
  return out;
}

function statusOk(check: HealthCheck, status: number): boolean {
  return check.expected_status_regex !== undefined ? new RegExp(check.expected_status_regex).test(String(status)) : check.expected_status_codes.includes(status);
}

export const httpProbe: Probe = async (target, check, signal): Promise<ProbeResult> => {
  try {
    const res = await clientFor(target, check).request({
      path: check.path,
      method: check.method,
      headers: requestHeaders(check),
      signal,
    });
    const status = res.statusCode;
    const ok = statusOk(check, status);
    const keep = check.expected_body_regex !== undefined;
    const chunks = await readBody(res.body, keep);
    if (!keep) return ok ? { ok: true, statusCode: status } : { ok: false, statusCode: status, error: `status ${status}` };
    const matched = new RegExp(check.expected_body_regex!).test(Buffer.concat(chunks).toString('utf8'));
    const passed = ok && matched;
    return { ok: passed, statusCode: status, bodyMatched: matched, ...(passed ? {} : { error: ok ? 'body did not match' : `status ${status}` }) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (signal.aborted) return { ok: false, error: 'timed out' };
    return { ok: false, error: e.code ?? e.message };
  }
};
