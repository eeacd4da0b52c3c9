/**
 * Choosing a backend for one request: find the hash key the pool's algorithm wants (client IP,
 * a header, a cookie), then ask the pool's balancer.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Balancer } from '../../balancing/balancer.ts';
import type { PoolRuntime } from '../../snapshot/snapshot.ts';

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function hashKey(pool: PoolRuntime, req: { headers: IncomingHttpHeaders }, clientIp: string): string {
  const source = pool.hashKey;
  switch (source.kind) {
    case 'none':
      return '';
    case 'ip':
      return clientIp;
    case 'header': {
      const v = req.headers[source.name];
      return (Array.isArray(v) ? v[0] : v) ?? clientIp;
    }
    case 'cookie':
      return cookieValue(req.headers.cookie, source.name) ?? clientIp;
  }
}

/** Index of the chosen target in `pool.targets`, or -1 when none is usable. */
export function pickTarget(pool: PoolRuntime, req: { headers: IncomingHttpHeaders }, clientIp: string, avoid?: ReadonlySet<number>, balancer: Balancer = pool.balancer): number {
  return balancer.pick({ key: hashKey(pool, req, clientIp) }, avoid);
}
