/**
 * TLS_PASSTHROUGH listeners: the ClientHello is read (never answered) to find the server name the
 * client asks for, the pool is chosen by that name (an exact route, then a `*.` wildcard one label
 * up, then the listener's default pool), and the connection is relayed to a backend of that pool
 * with every byte untouched, the ClientHello included. TLS stays end to end between the client and
 * the backend.
 */
import type { Socket } from 'node:net';
import type { PoolRuntime, SniTable } from '../../snapshot/snapshot.ts';
import { peerAddress } from '../accept.ts';
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
  // What arrived so far, in a buffer that doubles as it fills: bytes dribbled one at a time cost
  // linear copying, not quadratic.
  let data = Buffer.allocUnsafe(2048);
  let size = 0;
  let decided = false;
  client.on('error', () => client.destroy());
  // The whole ClientHello has client_ms to arrive: a deadline, not an idle timer a byte resets.
  const deadline = setTimeout(() => {
    decided = true;
    client.off('data', onData);
    refuse(deps, view, client, 'hello_timeout');
  }, listener.timeouts.client_ms);
  const onData = (chunk: Buffer) => {
    if (size + chunk.length > data.length) {
      const grown = Buffer.allocUnsafe(Math.max(data.length * 2, size + chunk.length));
      data.copy(grown, 0, 0, size);
      data = grown;
    }
    chunk.copy(data, size);
    size += chunk.length;
    const seen = data.subarray(0, size);
    const hello = parseClientHello(seen);
    if (hello.kind === 'need-more') return;
    decided = true;
    client.off('data', onData);
    clearTimeout(deadline);
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
    relay(deps, view, pool, client, peerAddress(client), seen);
  };
  client.on('data', onData);
  client.resume();
  client.once('close', () => {
    clearTimeout(deadline);
    if (!decided) refuse(deps, view, client, 'client_closed');
  });
}
