// Loopback-only network helpers: port checks and a GET (plain or over TLS) that never keeps a connection open.
import { request } from 'node:http';
import { request as tlsRequest } from 'node:https';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const HOST = '127.0.0.1';

/** True if 127.0.0.1:port can be bound now (also false when a wildcard listener holds the port). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: HOST, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A port the kernel reports free now, avoiding `avoid` (it could be taken again before use; we check later). */
export async function freePort(avoid: readonly number[]): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen({ host: HOST, port: 0, exclusive: true }, () => {
        const addr = s.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (!avoid.includes(port)) return port;
  }
}

export interface Answer {
  status: number;
  body: string;
}

/**
 * One GET with `Connection: close`, so probes leave no idle connection in a proxy. With `ca`, over
 * TLS: the peer's certificate must chain to that CA and name 127.0.0.1 (as wrk reaches it).
 */
export function get(port: number, path = '/', timeoutMs = 2000, ca?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = { host: HOST, port, path, agent: false, headers: { connection: 'close' }, timeout: timeoutMs };
    const send = ca === undefined ? request : tlsRequest;
    const req = send({ ...options, ...(ca === undefined ? {} : { ca }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls GET / until `accept(answer)` holds. Gives up after `timeoutMs`, or at once when `alive()`
 * says the server process died. Returns the last answer (or throws with the last error).
 */
export async function waitFor(
  port: number,
  accept: (a: Answer) => boolean,
  opts: { timeoutMs: number; alive: () => boolean; what: string; ca?: string },
): Promise<Answer> {
  const until = Date.now() + opts.timeoutMs;
  let last: Answer | Error = new Error('no answer');
  while (Date.now() < until) {
    if (!opts.alive()) throw new Error(`${opts.what} exited while starting`);
    try {
      last = await get(port, '/', 1000, opts.ca);
      if (accept(last)) return last;
    } catch (err) {
      last = err as Error;
    }
    await sleep(100);
  }
  if (last instanceof Error) throw new Error(`${opts.what} did not answer on :${port} within ${opts.timeoutMs} ms: ${last.message}`);
  return last;
}
