/**
 * TLS_PASSTHROUGH listeners: the ClientHello is read (never answered) to find the server name the
 * client asks for, the pool is chosen by that name (an exact route, then a `*.` wildcard one label
 * up, then the listener's default pool), and the connection is relayed to a backend of that pool
 * with every byte untouched, the ClientHello included. TLS stays end to end between the client and
 * the backend.
 */
import type { Socket } from 'node:net';
import type { PoolRuntime, SniTable } from '../../snapshot/snapshot.ts';
import { clientAddress } from '../http/headers.ts';
import { refuse, relay, type RelayDeps, type RelayView } from '../tcp/relay.ts';
import { parseClientHello } from './client-hello.ts';

/** RFC 8446 §6: a fatal alert, unrecognized_name(112), sent when no pool serves the name. */
const UNRECOGNIZED_NAME = Buffer.from([21, 3, 1, 0, 2, 2, 112]);

/** The pool for a server name: exact, then wildcard one label up; undefined when no route names it. */
export function sniPool(table: SniTable, name: string): PoolRuntime | null | undefined {
  const exact = table.exact.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  return dot > 0 ? table.wildcard.get(name.slice(dot + 1)) : undefined;
}

export function passthrough(deps: RelayDeps, view: RelayView, client: Socket): void {
  const listener = view.runtime.listener;
  const chunks: Buffer[] = [];
  let size = 0;
  client.on('error', () => client.destroy());
  // The ClientHello has client_ms to arrive whole.
  client.setTimeout(listener.timeouts.client_ms, () => refuse(deps, view, client, 'hello_timeout'));
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    const data = chunks.length === 1 ? chunk : Buffer.concat(chunks, size);
    if (chunks.length > 1) chunks.splice(0, chunks.length, data);
    const hello = parseClientHello(data);
    if (hello.kind === 'need-more') return;
    client.off('data', onData);
    client.setTimeout(0);
    if (hello.kind === 'not-tls') {
      refuse(deps, view, client, 'not_tls');
      return;
    }
    // The snapshot the connection started under: a later revision does not re-route it.
    const runtime = view.runtime;
    const routed = hello.serverName === null || runtime.sni === null ? undefined : sniPool(runtime.sni, hello.serverName);
    const pool = routed === undefined ? runtime.pool : routed;
    if (pool === null) {
      refuse(deps, view, client, 'no_route', 'none', UNRECOGNIZED_NAME);
      return;
    }
    relay(deps, view, pool, client, clientAddress(client.remoteAddress), data);
  };
  client.on('data', onData);
}
